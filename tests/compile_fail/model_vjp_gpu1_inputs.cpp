// EXPECT: operands live on different devices, Device<GPU, 0> and Device<GPU, 1>; copy one explicitly, e.g. locus::to<locus::Device<locus::GPU, 0>>\(x\)
// Rule 5 (models carry one device): the vector-Jacobian product of a GPU 0 model at inputs of GPU 1.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  const Input a({2});
  Model<G> m(a, Dense(1)(a));
  std::vector<Tensor<float, G1>> xs{Tensor<float, G1>::zeros({3, 2})}, dys{Tensor<float, G1>::zeros({3, 1})};
#ifdef LOCUS_SHOULD_FAIL
  auto r = m.vjp(xs, dys);
#else
  auto r = m.vjp({to<G>(xs[0])}, {to<G>(dys[0])});
#endif
}
