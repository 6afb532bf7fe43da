// The device-bound layer interface. A Sequential<Dev, T> owns a list of Layer<Dev, T>;
// every parameter, gradient and cached activation of a layer lives on Dev.
//
// Layers do not keep their input or output: Sequential keeps the activations of a
// training forward pass and hands each layer its own (x, y) in backward, so nothing is
// copied to be remembered. Layers that need more (pooling argmax, dropout mask, batch
// statistics) keep that themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../device.hpp"
#include "../shape.hpp"
#include "../tensor.hpp"

namespace locus::nn {

/// A trainable tensor and its gradient, on the model's device.
template <AnyDevice Dev, class T>
struct Parameter {
  std::string name;
  Tensor<T, Dev> value;
  Tensor<T, Dev> grad;
};

template <AnyDevice Dev, class T = float>
class Layer {
 public:
  using device_type = Dev;
  using value_type = T;
  using tensor = Tensor<T, Dev>;

  virtual ~Layer() = default;

  /// Keras class name ("Dense").
  virtual std::string type_name() const = 0;
  /// Allocates parameters for per-sample input shape `in` (no batch axis) and returns the
  /// per-sample output shape. `seed` makes initialisation reproducible.
  virtual Shape build(const Shape& in, std::uint64_t seed) = 0;
  /// y = f(x) for a batch x ([N, ...in]).
  virtual tensor forward(const tensor& x, bool training) = 0;
  /// Given x, y = forward(x, true) and dL/dy: stores parameter gradients and returns dL/dx
  /// (an empty tensor when need_dx is false: the first layer's input needs no gradient).
  virtual tensor backward(const tensor& x, const tensor& y, const tensor& dy, bool need_dx) = 0;

  /// Trainable parameters, in a fixed order (the order of Keras's get_weights()).
  virtual std::vector<Parameter<Dev, T>*> parameters() { return {}; }
  /// Non-trainable state saved with the model (batch-norm moving statistics).
  virtual std::vector<std::pair<std::string, tensor*>> state() { return {}; }

  /// Keras-style unique name ("dense_1"); set by the model.
  std::string name;
};

}  // namespace locus::nn
