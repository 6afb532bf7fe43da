// EXPECT: a model bound to Device<GPU, 1> cannot be used as one on Device<GPU, 0>; copy it
// explicitly: locus::to<locus::Device<locus::GPU, 0>>\(model\) Rule 4 (transfers are explicit): a
// model loaded onto the second GPU does not become one of the first by assignment.
#include <locus/io.hpp>
#include <locus/locus.hpp>

using namespace locus;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

void snippet() {
  Model<G0> m = load_model<G0>("model.keras");
#ifdef LOCUS_SHOULD_FAIL
  m = load_model<G1>("model.keras");
#else
  m = to<G0>(load_model<G1>("model.keras"));
#endif
}
