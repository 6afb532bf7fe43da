// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>
// Rule 5 (models carry one device): fit() of a GPU model with validation data on the host.
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
  auto vx = Tensor<float, C>::zeros({4, 4});
  auto vy = Tensor<std::int32_t, C>::zeros({4});
#ifdef LOCUS_SHOULD_FAIL
  model.fit(x, y, {.validation_data = {vx, vy}, .verbose = 0});
#else
  const auto gvx = to<G>(vx);
  const auto gvy = to<G>(vy);
  model.fit(x, y, {.validation_data = {gvx, gvy}, .verbose = 0});
#endif
}
