// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>
// Rule 5 (models carry one device): value_and_gradient() of a GPU model with host data.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, C>::zeros({8, 4});
  auto y = Tensor<std::int32_t, C>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
#else
  [[maybe_unused]] auto r =
      model.value_and_gradient(to<G>(x), to<G>(y), SparseCategoricalCrossentropy{});
#endif
}
