// EXPECT: Mirrored splits each global batch from Device<CPU>; data on Device<GPU, 1> cannot
// A pipeline that already ends on one device cannot feed replicas on several: the replicas
// split the host's global batches and each uploads its own share.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

void snippet() {
  Mirrored<G0, G1> model(Sequential<G0>(Input({4}), Dense(3, Activation::softmax)));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto ds = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                 Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
#ifdef LOCUS_SHOULD_FAIL
  model.fit(to<G1>(ds));
#else
  model.fit(ds);
#endif
}
