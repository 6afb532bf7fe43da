// EXPECT: Mirrored lists Device<GPU, 1> twice; give each replica a device of its own
// Two replicas on one device would share its memory and queue: the replica set is a set.
#include <locus/locus.hpp>

using namespace locus;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

void snippet() {
  const Sequential<G1> single(Input({4}), Dense(3, Activation::softmax));
#ifdef LOCUS_SHOULD_FAIL
  Mirrored<G1, G1> model(single);
#else
  Mirrored<G1, G0> model(single);
#endif
  (void)model;
}
