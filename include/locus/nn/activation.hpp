// Activations and their derivatives, written as element-wise expressions so each one
// fuses into the kernel of the op around it (bias add + relu is one pass).
//
// Every derivative is expressed through the activation's *output* y, so layers keep only
// their output for the backward pass: relu' = [y > 0], sigmoid' = y (1 - y),
// tanh' = 1 - y^2, and softmax's Jacobian-vector product needs only y as well.
#pragma once

#include <stdexcept>
#include <string>

#include "../error.hpp"
#include "../ops/reduce.hpp"
#include "../tensor.hpp"

namespace locus {

enum class Activation { linear, relu, sigmoid, tanh, softmax };

inline std::string to_string(Activation a) {
  switch (a) {
    case Activation::relu:
      return "relu";
    case Activation::sigmoid:
      return "sigmoid";
    case Activation::tanh:
      return "tanh";
    case Activation::softmax:
      return "softmax";
    default:
      return "linear";
  }
}

/// Parses a Keras activation name ("relu", "softmax", ...).
inline Activation parse_activation(const std::string& name) {
  if (name == "linear" || name.empty()) return Activation::linear;
  if (name == "relu") return Activation::relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "softmax") return Activation::softmax;
  throw argument_error("locus: unknown activation '" + name +
                       "' (known: linear, relu, sigmoid, tanh, softmax)");
}

namespace nn {

/// Softmax over the last axis, stabilised by subtracting the row maximum.
template <class T, class Dev>
Tensor<T, Dev> softmax(const Tensor<T, Dev>& z) {
  Tensor<T, Dev> e = exp(z - max(z, -1, true));
  return e / sum(e, -1, true);
}

/// y = act(z), evaluated in one pass (softmax needs three).
template <class T, class Dev>
Tensor<T, Dev> activate(Activation a, Tensor<T, Dev> z) {
  switch (a) {
    case Activation::relu:
      z = relu(z);
      return z;
    case Activation::sigmoid:
      z = sigmoid(z);
      return z;
    case Activation::tanh:
      z = tanh(z);
      return z;
    case Activation::softmax:
      return softmax(z);
    default:
      return z;
  }
}

/// y = act(z + b) with b broadcast over the last axis: one fused pass unless softmax.
template <class T, class Dev>
Tensor<T, Dev> bias_activate(Activation a, Tensor<T, Dev> z, const Tensor<T, Dev>& b) {
  switch (a) {
    case Activation::relu:
      z = relu(z + b);
      return z;
    case Activation::sigmoid:
      z = sigmoid(z + b);
      return z;
    case Activation::tanh:
      z = tanh(z + b);
      return z;
    default:
      z += b;
      return activate(a, std::move(z));
  }
}

/// Whether the derivative of `a` is computed from its input z (false: from its output y,
/// so a layer keeps only its output for the backward pass).
inline bool derivative_needs_input(Activation) { return false; }

/// dL/dz from dL/dy and z, for the activations whose derivative needs the input.
template <class T, class Dev>
Tensor<T, Dev> activation_backward_from_input(Activation a, const Tensor<T, Dev>&, const Tensor<T, Dev>& dy) {
  (void)a;
  return dy;
}

/// dL/dz from dL/dy and y = act(z).
template <class T, class Dev>
Tensor<T, Dev> activation_backward(Activation a, const Tensor<T, Dev>& y, const Tensor<T, Dev>& dy) {
  switch (a) {
    case Activation::relu:
      return where(y, dy, T(0));
    case Activation::sigmoid:
      return dy * y * (T(1) - y);
    case Activation::tanh:
      return dy * (T(1) - square(y));
    case Activation::softmax:
      return y * (dy - sum(dy * y, -1, true));
    default:
      return dy;
  }
}

}  // namespace nn
}  // namespace locus
