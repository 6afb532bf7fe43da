// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>; copy one explicitly, e.g. locus::to<locus::Device<locus::GPU, 0>>\(x\)
// Rule 5 (models carry one device): fit of a functional GPU model with host labels.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  const Input a({4});
  Model<G> m(a, Dense(3, "softmax")(a));
  m.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, G>::zeros({8, 4});
  auto y = Tensor<std::int32_t, C>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  m.fit(x, y, {.verbose = 0});
#else
  m.fit(x, to<G>(y), {.verbose = 0});
#endif
}
