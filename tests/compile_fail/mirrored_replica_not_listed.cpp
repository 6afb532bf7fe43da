// EXPECT: has no replica on Device<GPU, 2>; ask for one it has, e.g. replica<.*GPU, 0>>\(\)
// A replica is asked for by a device of the set; another device has none.
#include <locus/locus.hpp>

using namespace locus;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;
using G2 = Device<GPU, 2>;

void snippet() {
  Mirrored<G0, G1> model(Sequential<G0>(Input({4}), Dense(3, Activation::softmax)));
#ifdef LOCUS_SHOULD_FAIL
  auto& r = model.replica<G2>();
#else
  auto& r = model.replica<G1>();
#endif
  (void)r;
}
