// EXPECT: operands live on different devices, Device<CPU> and Device<GPU, 1>
// Rule 2 (one device per expression): `/` with a host operand and an operand on GPU 1.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto g1 = Tensor<float, G1>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = a / g1;
#else
  [[maybe_unused]] auto r = a / to<C>(g1);
#endif
}
