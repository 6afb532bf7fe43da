// A trainable weight of a bound model and its gradient, both on the model's device.
#pragma once

#include <string>

#include "../device.hpp"
#include "../tensor.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
struct Parameter {
  std::string name;     ///< "dense/kernel"
  Tensor<T, Dev> value;
  Tensor<T, Dev> grad;  ///< empty until a backward pass: an inference-only model has none
};

}  // namespace locus::nn
