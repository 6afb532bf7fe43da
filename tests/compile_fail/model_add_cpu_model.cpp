// EXPECT: a model bound to Device<CPU> cannot be used as one on Device<GPU, 0>; copy it explicitly: locus::to<locus::Device<locus::GPU, 0>>\(model\)
// Rule 5 (models carry one device): nesting a model bound to the host in a GPU model.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<C> host(Input({4}), Dense(3));
  Sequential<G> model(Input({4}));
#ifdef LOCUS_SHOULD_FAIL
  model.add(host);
#else
  model.add(to<G>(host));
  model.add(Dense(2));  // a device-neutral description is made on the model's device
#endif
}
