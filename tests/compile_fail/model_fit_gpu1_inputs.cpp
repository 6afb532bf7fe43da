// EXPECT: operands live on different devices, Device<GPU, 0> and Device<GPU, 1>
// Rule 5 (models carry one device): fit() of a Device<GPU, 0> model with data on Device<GPU, 1>.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, G1>::zeros({8, 4});
  auto y = Tensor<std::int32_t, G1>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  model.fit(x, y, {.verbose = 0});
#else
  model.fit(to<G>(x), to<G>(y), {.verbose = 0});
#endif
}
