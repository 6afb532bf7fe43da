// EXPECT: calibrate runs on Device<CPU>; data on Device<GPU, 0> cannot feed it: .*CPU>>\(x\)
// Calibration runs the float graph on the host whatever the plan's device: its data are
// host tensors.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  const Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  const InferencePlan<G> plan(model);
  const auto x = Tensor<float, G>::zeros({8, 4});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto cal = calibrate(plan, x);
#else
  [[maybe_unused]] auto cal = calibrate(plan, to<C>(x));
#endif
}
