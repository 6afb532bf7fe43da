// EXPECT: an optimizer bound to Device<CPU> cannot be used as one on Device<GPU, 0>; copy it explicitly: locus::to<locus::Device<locus::GPU, 0>>\(model, \{.optimizer = true\}\)
// Rule 5 (models carry one device): the optimizer slots of a host model reused for a GPU one.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<C> m(Input({4}), Dense(3));
  m.build(1);
  m.compile(Adam{}, MeanSquaredError{});
#ifdef LOCUS_SHOULD_FAIL
  Optimizer<G> o = m.optimizer();
#else
  Optimizer<G> o = to<G>(m, {.optimizer = true}).optimizer();
#endif
}
