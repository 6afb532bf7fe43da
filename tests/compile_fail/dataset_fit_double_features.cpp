// EXPECT: the element types differ \(named in the 'required from' note\); convert explicitly
// with locus::cast<T>\(x\)
// Rule 6 (element types meet only through a cast): a float model does not train on a
// pipeline of doubles; a map can cast them.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;

void snippet() {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
#ifdef LOCUS_SHOULD_FAIL
  const auto ds = data::Dataset<C, double>::from_tensors(Tensor<double, C>::zeros({8, 4}),
                                                         Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
#else
  const auto ds = data::Dataset<C, float>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                        Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
#endif
  model.fit(ds, {.verbose = 0});
}
