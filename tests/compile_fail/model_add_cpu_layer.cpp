// EXPECT: operands live on different devices, Device<GPU, 0> and Device<CPU>
// Rule 5 (models carry one device): adding a layer bound to the host to a GPU model.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  Sequential<G> model(Input({4}));
#ifdef LOCUS_SHOULD_FAIL
  model.add(std::make_unique<nn::DenseLayer<C, float>>(Dense(3)));
#else
  model.add(std::make_unique<nn::DenseLayer<G, float>>(Dense(3)));
  model.add(Dense(2));  // a device-neutral description is made on the model's device
#endif
}
