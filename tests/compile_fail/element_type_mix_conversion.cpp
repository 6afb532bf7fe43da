// EXPECT: locus::cast
// Element types: mixing them needs an explicit locus::cast<T>(x). copy-initialising a float tensor from a double tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto d = Tensor<double, C>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, C> f = d;
#else
  [[maybe_unused]] Tensor<float, C> f = cast<float>(d);
#endif
}
