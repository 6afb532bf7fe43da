// EXPECT: element type differs from the tensor's; convert with locus::cast<T>\(x\)
// Element types: mixing them needs an explicit locus::cast<T>(x). a double expression evaluated into a float tensor.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto d = Tensor<double, C>::zeros({2, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] Tensor<float, C> r = d + d;
#else
  [[maybe_unused]] Tensor<float, C> r = cast<float>(d + d);
#endif
}
