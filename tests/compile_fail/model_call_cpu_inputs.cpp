// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>
// Rule 5 (models carry one device): calling a GPU model on a host tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, C>::zeros({8, 4});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto out = model(x);
#else
  [[maybe_unused]] auto out = model(to<G>(x));
#endif
}
