// EXPECT: operands live on different devices, Device<GPU, 1> and Device<GPU, 0>
// Rule 2 (one device per expression): locus::minimum with operands on GPU 1 and GPU 0.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g0 = Tensor<float, G>::zeros({2, 3});
  auto g1 = Tensor<float, G1>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = minimum(g1, g0);
#else
  [[maybe_unused]] auto r = minimum(g1, to<G1>(g0));
#endif
}
