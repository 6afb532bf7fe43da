// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>; copy one explicitly, e.g. locus::to<locus::Device<locus::GPU, 0>>\(x\)
// Rule 5 (models carry one device): predict of a two-input GPU model with host inputs.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  const Input a({2}), b({2});
  Model<G> m(Functional({a, b}, {Dense(1)(a), Dense(1)(b)}));
  std::vector<Tensor<float, C>> xs{Tensor<float, C>::zeros({3, 2}), Tensor<float, C>::zeros({3, 2})};
#ifdef LOCUS_SHOULD_FAIL
  auto y = m.predict(xs);
#else
  auto y = m.predict({to<G>(xs[0]), to<G>(xs[1])});
#endif
}
