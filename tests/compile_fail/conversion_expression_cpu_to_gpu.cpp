// EXPECT: (cannot become a tensor on Device<GPU, 0> implicitly|operands live on different devices, Device<CPU> and Device<GPU, 0>)
// Rule 4 (transfers are explicit): evaluating a host expression into a GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, G> r = a + a;
#else
  [[maybe_unused]] Tensor<float, G> r = to<G>(a + a);
#endif
}
