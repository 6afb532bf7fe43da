// EXPECT: locus: the targets have another floating-point type than the model
// Loss and labels: value_and_gradient() of a float model with double targets.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  auto x = Tensor<float, G>::zeros({8, 4});
  auto t = Tensor<double, G>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, t, MeanSquaredError{});
#else
  const Tensor<float, G> tf = cast<float>(t);
  [[maybe_unused]] auto r = model.value_and_gradient(x, tf, MeanSquaredError{});
#endif
}
