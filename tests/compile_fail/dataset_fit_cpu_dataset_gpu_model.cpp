// EXPECT: dataset bound to Device<CPU> .*Device<GPU, 0>; .*Device<locus::GPU, 0>>\(dataset\)
// Rule 5 (models carry one device): a GPU model does not train on a pipeline whose batches
// arrive on the host; the fix retargets the pipeline (uploads prefetched with it).
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
#ifdef LOCUS_SHOULD_FAIL
  model.fit(ds.prefetch(2), {.verbose = 0});
#else
  model.fit(to<G>(ds).prefetch(2), {.verbose = 0});
#endif
}
