// EXPECT: dataset bound to Device<GPU, 1> .*Device<GPU, 0>; .*Device<locus::GPU, 0>>\(dataset\)
// Rule 5 (models carry one device): two GPUs do not share a pipeline implicitly.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  const auto ds = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                 Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
#ifdef LOCUS_SHOULD_FAIL
  auto y = model.predict(to<G1>(ds));
#else
  auto y = model.predict(to<G>(ds));
#endif
  (void)y;
}
