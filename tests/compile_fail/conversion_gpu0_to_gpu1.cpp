// EXPECT: a tensor on Device<GPU, 0> cannot become a tensor on Device<GPU, 1> implicitly
// Rule 4 (transfers are explicit): copy-initialising a tensor on GPU 1 from one on GPU 0.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto g = Tensor<float, G>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, G1> h = g;
#else
  [[maybe_unused]] Tensor<float, G1> h = to<G1>(g);
#endif
}
