// EXPECT: operands live on different devices, Device<GPU, 0> and Device<GPU, 1>
// Rule 2 (one device per expression): `*` with operands on two different GPUs.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g0 = Tensor<float, G>::zeros({2, 3});
  auto g1 = Tensor<float, G1>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = g0 * g1;
#else
  [[maybe_unused]] auto r = g0 * to<G>(g1);
#endif
}
