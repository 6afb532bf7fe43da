// EXPECT: a dataset bound to Device<GPU, 0> .*on Device<CPU>; .*Device<locus::CPU>>\(dataset\)
// Rule 5 (models carry one device): DataParallel cuts each rank's shard from a host pipeline
// and moves the batches to the model's device itself; a pipeline already on the GPU does not
// compile. Give it the host pipeline (before to<Dev>).
#include <locus/locus.hpp>
#include <locus/parallel/mpi.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet(mpi::Session& session) {
  Sequential<G> model(Input({4}), Dense(3, Activation::softmax));
  model.build(1);
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto host = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                   Tensor<std::int32_t, C>::zeros({8}));
  mpi::DataParallel<G> dp(session);
#ifdef LOCUS_SHOULD_FAIL
  dp.fit(model, to<G>(host), 4, {.verbose = 0});
#else
  dp.fit(model, host, 4, {.verbose = 0});
#endif
}
