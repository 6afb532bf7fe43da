// EXPECT: a tensor on Device<CPU> cannot become a tensor on Device<GPU, 0> implicitly
// Rule 4 (transfers are explicit): copy-initialising a GPU tensor from a host tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, G> g = a;
#else
  [[maybe_unused]] Tensor<float, G> g = to<G>(a);
#endif
}
