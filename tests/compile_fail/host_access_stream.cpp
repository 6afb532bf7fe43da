// EXPECT: a tensor on Device<GPU, 0> has no host access
// Rule 3 (no host access to device data): std::cout << t on a GPU tensor.
#include <iostream>

#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  std::cout << g << '\n';
#else
  std::cout << to<C>(g) << '\n';
#endif
}
