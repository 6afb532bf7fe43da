// EXPECT: a tensor on Device<CPU> cannot become a tensor on Device<GPU, 0> implicitly
// Rule 4 (transfers are explicit): assigning a host tensor to a GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  g = a;
#else
  g = to<G>(a);
#endif
}
