// EXPECT: a model bound to Device<GPU, 0> cannot be used as one on Device<GPU, 1>; copy it explicitly: locus::to<locus::Device<locus::GPU, 1>>\(model\)
// Rule 4 (transfers are explicit): assigning a model of GPU 0 to a model of GPU 1.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> m(Input({4}), Dense(3));
  m.build(1);
  Model<G1> g1 = to<G1>(m);
#ifdef LOCUS_SHOULD_FAIL
  g1 = to<G>(m);
#else
  g1 = to<G1>(m);
#endif
}
