// EXPECT: operands live on different devices, Device<CPU> and Device<GPU, 0>; .*CPU>>\(x\)
// An int8 plan on the host is given host data; device data comes back explicitly.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  const Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  const InferencePlan<C> plan(model);
  const auto q = quantize(plan, calibrate(plan, Tensor<float, C>::zeros({8, 4})));
  const auto x = Tensor<float, G>::zeros({8, 4});
#ifdef LOCUS_SHOULD_FAIL
  Tensor<float, C> y(uninitialized, {8, 3});
  q.predict_into(x, y);
#else
  [[maybe_unused]] auto y = q.predict(to<C>(x));
#endif
}
