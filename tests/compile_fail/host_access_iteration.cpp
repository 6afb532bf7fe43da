// EXPECT: a tensor on Device<GPU, 0> has no host access
// Rule 3 (no host access to device data): range-for over a GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  float s = 0;
  for (float x : g) s += x;
  (void)s;
#else
  float s = 0;
  for (float x : to<C>(g)) s += x;
  (void)s;
#endif
}
