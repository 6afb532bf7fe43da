// EXPECT: a model bound to Device<GPU, 0> cannot be used as one on Device<CPU>; copy it explicitly:
// locus::to<locus::Device<locus::CPU>>\(model\) Rule 5 (no silent fallback): a checkpoint of the
// host does not save a GPU model.
#include <memory>

#include <locus/io.hpp>
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

void snippet() {
  Sequential<G> m(Input({4}), Dense(3));
  m.build(1);
#ifdef LOCUS_SHOULD_FAIL
  auto ckpt = std::make_shared<ModelCheckpoint<C>>(m, "ckpt.keras");
#else
  auto ckpt = std::make_shared<ModelCheckpoint<G>>(m, "ckpt.keras");
  ModelCheckpoint deduced(m, "ckpt-{epoch}.keras");  // the model's device
#endif
  (void)ckpt;
}
