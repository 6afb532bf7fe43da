// EXPECT: a tensor on Device<GPU, 0> has no host access
// Rule 3 (no host access to device data): t.item() on a one-element GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({1});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] float x = g.item();
#else
  [[maybe_unused]] float x = to<C>(g).item();
#endif
}
