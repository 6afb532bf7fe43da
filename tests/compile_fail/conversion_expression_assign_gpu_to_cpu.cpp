// EXPECT: (cannot become a tensor on Device<CPU> implicitly|operands live on different devices, Device<GPU, 0> and Device<CPU>)
// Rule 4 (transfers are explicit): assigning a GPU expression to a host tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  a = g * 2.0f;
#else
  a = to<C>(g * 2.0f);
#endif
}
