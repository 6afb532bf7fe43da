// EXPECT: a model bound to Device<GPU, 0> cannot be used as one on Device<CPU>; copy it explicitly:
// locus::to<locus::Device<locus::CPU>>\(model\) Rule 7 (a saved model carries no device; the loader
// puts it on the device named): a model loaded onto the GPU is not a host model. Load it onto the
// host instead: locus::load_model<Device<CPU>>(path).
#include <locus/io.hpp>
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
#ifdef LOCUS_SHOULD_FAIL
  Model<C> m = load_model<G>("model.keras");
#else
  Model<C> m = load_model<C>("model.keras");
#endif
  (void)m;
}
