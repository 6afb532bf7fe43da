// EXPECT: operands live on different devices, Device<CPU> and Device<GPU, 0>
// Rule 2 (one device per expression): compound assignment `+=` of a GPU tensor into a host tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  a += g;
#else
  a += to<C>(g);
#endif
}
