// EXPECT: operands live on different devices, Device<CPU> and Device<GPU, 0>
// Rule 5 (models carry one device): a host optimizer applied to a GPU model.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, G>::zeros({8, 4});
  auto y = Tensor<std::int32_t, G>::zeros({8});
  auto r = model.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
#ifdef LOCUS_SHOULD_FAIL
  Optimizer<C> opt(Adam{});
#else
  Optimizer<G> opt(Adam{});
#endif
  opt.apply_gradients(r.grads, model);
}
