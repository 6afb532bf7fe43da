// EXPECT: locus: CategoricalCrossentropy needs one-hot float targets
// Loss and labels: value_and_gradient() with CategoricalCrossentropy and int32 class labels.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  auto x = Tensor<float, C>::zeros({8, 4});
  auto y = Tensor<std::int32_t, C>::zeros({8});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, CategoricalCrossentropy{});
#else
  [[maybe_unused]] auto r = model.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
#endif
}
