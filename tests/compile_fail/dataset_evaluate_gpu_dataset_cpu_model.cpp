// EXPECT: dataset bound to Device<GPU, 0> .*Device<CPU>; .*Device<locus::CPU>>\(dataset\)
// Rule 5 (models carry one device): a host model does not evaluate a GPU pipeline's batches.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto ds = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                 Tensor<std::int32_t, C>::zeros({8}))
                      .batch(4);
  const auto on_gpu = to<G>(ds);
#ifdef LOCUS_SHOULD_FAIL
  model.evaluate(on_gpu);
#else
  model.evaluate(ds);
#endif
}
