// EXPECT: a model bound to Device<CPU> cannot be used as one on Device<GPU, 0>; copy it explicitly: locus::to<locus::Device<locus::GPU, 0>>\(model\)
// Rule 4 (transfers are explicit): a host model does not become a GPU model without locus::to.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<C> m(Input({4}), Dense(3));
  m.build(1);
#ifdef LOCUS_SHOULD_FAIL
  Model<G> g = to<C>(m);
#else
  Model<G> g = to<G>(m);
#endif
}
