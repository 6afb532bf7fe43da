// EXPECT: a tensor on Device<GPU, 0> has no host access
// Rule 3 (no host access to device data): element access t(i, j) on a GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] float x = g(0, 0);
#else
  auto h = to<C>(g);
  [[maybe_unused]] float x = h(0, 0);
#endif
}
