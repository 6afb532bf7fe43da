// EXPECT: operands live on different devices, Device<CPU> and Device<GPU, 0>
// Rule 2 (one device per expression): locus::maximum with a host and a GPU operand.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = maximum(a, g);
#else
  [[maybe_unused]] auto r = maximum(a, to<C>(g));
#endif
}
