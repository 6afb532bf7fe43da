// EXPECT: a model bound to Device<CPU> cannot be used as one on Device<GPU, 0>; .*GPU, 0>>\(model\)
// Replicas are copies of a model on one of their devices: a model elsewhere moves first,
// explicitly.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

void snippet() {
  const Sequential<C> host_model(Input({4}), Dense(3, Activation::softmax));
#ifdef LOCUS_SHOULD_FAIL
  Mirrored<G0, G1> model(host_model);
#else
  Mirrored<G0, G1> model(to<G0>(host_model));
#endif
  (void)model;
}
