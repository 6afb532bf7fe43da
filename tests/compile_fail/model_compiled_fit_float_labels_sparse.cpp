// EXPECT: SparseCategoricalCrossentropy needs integer class labels \(Tensor<std::int32_t, Dev>\), got floating-point labels
// The loss type given to compile() checks the labels of fit at compile time.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<C> m(Input({4}), Dense(3, "softmax"));
  m.build(1);
  auto trainer = m.compile(Adam{}, SparseCategoricalCrossentropy{});
  auto x = Tensor<float, C>::zeros({8, 4});
#ifdef LOCUS_SHOULD_FAIL
  trainer.fit(x, Tensor<float, C>::zeros({8, 3}), {.verbose = 0});
#else
  trainer.fit(x, Tensor<std::int32_t, C>::zeros({8}), {.verbose = 0});
#endif
}
