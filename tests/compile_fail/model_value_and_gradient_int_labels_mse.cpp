// EXPECT: locus: MeanSquaredError needs float targets shaped like the output
// Loss and labels: value_and_gradient() with MeanSquaredError and int32 class labels.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  auto x = Tensor<float, G>::zeros({8, 4});
  auto y = Tensor<std::int32_t, G>::zeros({8});
  auto t = Tensor<float, G>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, MeanSquaredError{});
#else
  [[maybe_unused]] auto r = model.value_and_gradient(x, t, MeanSquaredError{});
  (void)y;
#endif
}
