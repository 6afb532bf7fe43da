// EXPECT: a tensor on Device<GPU, 1> has no host access
// Rule 3 (no host access to device data): bounds-checked t.at(i, j) on a tensor of GPU 1.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g1 = Tensor<float, G1>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] float x = g1.at(0, 0);
#else
  auto h = to<C>(g1);
  [[maybe_unused]] float x = h.at(0, 0);
#endif
}
