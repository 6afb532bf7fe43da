// EXPECT: a model bound to Device<CPU> cannot be used as one on Device<GPU, 0>; .*GPU, 0>>\(model\)
// An inference plan runs where its model is: a host model moves to the device first.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  const Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
#ifdef LOCUS_SHOULD_FAIL
  InferencePlan<G> plan(model);
#else
  InferencePlan<G> plan(to<G>(model));
#endif
  (void)plan;
}
