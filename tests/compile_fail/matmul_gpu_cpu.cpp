// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>
// Rule 2 (one device per expression): locus::matmul with a GPU and a host operand.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
  auto a = Tensor<float, C>::zeros({3, 4});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = matmul(g, a);
#else
  [[maybe_unused]] auto r = matmul(g, to<G>(a));
#endif
}
