// EXPECT: operands have different element types; convert one explicitly with locus::cast<T>\(x\)
// Element types: mixing them needs an explicit locus::cast<T>(x). float + double.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::zeros({2, 3});
  auto d = Tensor<double, C>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = a + d;
#else
  [[maybe_unused]] auto r = a + cast<float>(d);
#endif
}
