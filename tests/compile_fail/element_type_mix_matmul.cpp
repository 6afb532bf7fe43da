// EXPECT: locus::cast
// Element types: mixing them needs an explicit locus::cast<T>(x). locus::matmul of a float and a double matrix.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto d = Tensor<double, C>::zeros({3, 2});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = matmul(a, d);
#else
  [[maybe_unused]] auto r = matmul(a, eval(cast<float>(d)));
#endif
}
