// EXPECT: locus: BinaryCrossentropy needs float targets shaped like the output
// Loss and labels: value_and_gradient() with BinaryCrossentropy and int32 labels.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  auto x = Tensor<float, G>::zeros({8, 4});
  auto y = Tensor<std::int32_t, G>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, BinaryCrossentropy{});
#else
  const Tensor<float, G> t = cast<float>(y);
  [[maybe_unused]] auto r = model.value_and_gradient(x, t, BinaryCrossentropy{});
#endif
}
