// EXPECT: Mirrored splits each global batch from Device<CPU>; data on Device<GPU, 0> cannot
// Data-parallel replicas take their global batches on the host and split them there: a
// tensor already on a replica's device is not silently brought back.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

void snippet() {
  Mirrored<G0, G1> model(Sequential<G0>(Input({4}), Dense(3, Activation::softmax)));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto x = Tensor<float, C>::zeros({8, 4});
  const auto y = Tensor<std::int32_t, C>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  model.fit(to<G0>(x), y);
#else
  model.fit(x, y);
#endif
}
