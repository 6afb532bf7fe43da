// EXPECT: locus::Model: labels must be int32 class indices
// Labels: fit() of a float model with double targets (no loss takes them).
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, MeanSquaredError{});
  auto x = Tensor<float, G>::zeros({8, 4});
  auto t = Tensor<double, G>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  model.fit(x, t, {.verbose = 0});
#else
  model.fit(x, Tensor<float, G>(cast<float>(t)), {.verbose = 0});
#endif
}
