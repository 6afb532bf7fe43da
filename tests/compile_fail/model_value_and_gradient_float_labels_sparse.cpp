// EXPECT: locus: SparseCategoricalCrossentropy needs integer class labels
// Loss and labels: value_and_gradient() with SparseCategoricalCrossentropy and float labels.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  auto x = Tensor<float, C>::zeros({8, 4});
  auto y = Tensor<float, C>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
#else
  const Tensor<std::int32_t, C> labels = cast<std::int32_t>(y);
  [[maybe_unused]] auto r = model.value_and_gradient(x, labels, SparseCategoricalCrossentropy{});
#endif
}
