// EXPECT: locus::Model: labels must be int32 class indices
// Labels: evaluate() of a float model with double targets (no loss takes them).
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, CategoricalCrossentropy{});
  auto x = Tensor<float, C>::zeros({8, 4});
  auto t = Tensor<double, C>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto logs = model.evaluate(x, t);
#else
  [[maybe_unused]] auto logs = model.evaluate(x, Tensor<float, C>(cast<float>(t)));
#endif
}
