// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>; .*GPU, 0>>\(x\)
// A device plan is given data on its device, never host data it would copy silently.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  const Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  const InferencePlan<G> plan(model);
  const auto x = Tensor<float, C>::zeros({8, 4});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto y = plan.predict(x);
#else
  [[maybe_unused]] auto y = plan.predict(to<G>(x));
#endif
}
