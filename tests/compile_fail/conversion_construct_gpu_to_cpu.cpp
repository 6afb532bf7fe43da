// EXPECT: a tensor on Device<GPU, 0> cannot become a tensor on Device<CPU> implicitly
// Rule 4 (transfers are explicit): direct-initialising a host tensor from a GPU tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, C> c(g);
#else
  [[maybe_unused]] Tensor<float, C> c(to<C>(g));
#endif
}
