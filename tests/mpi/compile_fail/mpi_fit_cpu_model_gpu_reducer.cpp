// EXPECT: a model bound to Device<CPU> .*on Device<GPU, 0>; .*Device<locus::GPU, 0>>\(model\)
// Rule 5 (models carry one device): a reducer of the GPU does not train a host model; the fix
// copies the model to the reducer's device (or names the host in DataParallel<Device<CPU>>).
#include <locus/locus.hpp>
#include <locus/parallel/mpi.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet(mpi::Session& session) {
  Sequential<C> model(Input({4}), Dense(3, Activation::softmax));
  model.build(1);
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto ds = data::Dataset<C>::from_tensors(Tensor<float, C>::zeros({8, 4}),
                                                 Tensor<std::int32_t, C>::zeros({8}));
  mpi::DataParallel<G> dp(session);
#ifdef LOCUS_SHOULD_FAIL
  dp.fit(model, ds, 4, {.verbose = 0});
#else
  Model<G> on_gpu = to<G>(model, {.optimizer = true});
  dp.fit(on_gpu, ds, 4, {.verbose = 0});
#endif
}
