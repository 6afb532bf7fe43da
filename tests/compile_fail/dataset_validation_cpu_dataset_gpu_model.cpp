// EXPECT: dataset bound to Device<CPU> .*Device<GPU, 0>; .*Device<locus::GPU, 0>>\(dataset\)
// Rule 5 (models carry one device): validation batches come from the model's device too.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto ds = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                 Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
  const auto train = to<G>(ds);
#ifdef LOCUS_SHOULD_FAIL
  model.fit(train, {.validation_data = ds, .verbose = 0});
#else
  model.fit(train, {.validation_data = to<G>(ds), .verbose = 0});
#endif
}
