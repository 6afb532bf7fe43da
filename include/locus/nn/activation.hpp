// Activations and their derivatives, written as element-wise expressions so each one
// fuses into the kernel of the op around it (bias add + relu is one pass).
//
// The definitions are Keras 3's (keras/src/activations/activations.py with the
// TensorFlow backend), including the value of each derivative at the kinks, where
// TensorFlow's gradient kernels pick one side: relu'(0) = 0, leaky_relu'(0) = slope,
// elu'(0) = alpha, selu'(0) = scale, hard_sigmoid'(+-3) = 0.
//
// Derivatives are expressed through the activation's *output* y wherever that is exact,
// so layers keep only their output for the backward pass: relu' = [y > 0],
// sigmoid' = y (1 - y), tanh' = 1 - y^2, elu' = y + 1 below 0, softplus' = 1 - e^-y, and
// softmax's Jacobian-vector product needs only y as well. gelu and silu are not
// invertible from y (both dip below 0 and come back), so their derivatives read the
// input z; derivative_needs_input says which, and layers keep z for those.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "../error.hpp"
#include "../ops/reduce.hpp"
#include "../tensor.hpp"

namespace locus {

enum class Activation {
  linear,
  relu,
  sigmoid,
  tanh,
  softmax,
  gelu,
  silu,
  elu,
  selu,
  leaky_relu,
  softplus,
  hard_sigmoid
};

namespace detail {
// Keras's names; "swish" is Keras's alias of silu (read, never written).
inline constexpr std::pair<const char*, Activation> activation_names[] = {
    {"linear", Activation::linear},
    {"relu", Activation::relu},
    {"sigmoid", Activation::sigmoid},
    {"tanh", Activation::tanh},
    {"softmax", Activation::softmax},
    {"gelu", Activation::gelu},
    {"silu", Activation::silu},
    {"swish", Activation::silu},
    {"elu", Activation::elu},
    {"selu", Activation::selu},
    {"leaky_relu", Activation::leaky_relu},
    {"softplus", Activation::softplus},
    {"hard_sigmoid", Activation::hard_sigmoid}};
}  // namespace detail

/// Keras's name of an activation ("silu" for silu/swish, as Keras serialises it).
inline std::string to_string(Activation a) {
  for (const auto& [name, value] : detail::activation_names) {
    if (value == a) return name;
  }
  return "linear";
}

/// Parses a Keras activation name ("relu", "softmax", "swish", ...).
inline Activation parse_activation(const std::string& name) {
  if (name.empty()) return Activation::linear;
  std::string known;
  for (const auto& [n, value] : detail::activation_names) {
    if (name == n) return value;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  // A config_error (an argument_error too): the name usually comes from a layer configuration.
  throw config_error("locus: unknown activation '" + name + "' (known: " + known + ")");
}

namespace nn {

/// The constants of Keras 3's activations. selu's are the full-precision values its
/// backends compute with (the docstring rounds them to 1.67326324 and 1.05070098; both
/// round to the same float32 values).
namespace activation_constants {
inline constexpr double leaky_relu_negative_slope = 0.2;  // keras.activations.leaky_relu's default
inline constexpr double elu_alpha = 1.0;
inline constexpr double selu_alpha = 1.6732632423543772848170429916717;
inline constexpr double selu_scale = 1.0507009873554804934193349852946;
// scale * alpha, as one constant (TensorFlow's selu kernel does the same).
inline constexpr double selu_scale_alpha = 1.7580993408473768599402175208123;
inline constexpr double sqrt1_2 = 0.70710678118654752440084436210485;       // 1 / sqrt(2)
inline constexpr double inv_sqrt_2pi = 0.39894228040143267793994605993438;  // 1 / sqrt(2 pi)
}  // namespace activation_constants

// ---- expressions shared by the activation functions and the activation layers ---------
// Each takes an operand (a tensor or an unevaluated expression such as z + b) and returns
// an expression; nothing is computed until it is assigned. Where a scalar meets a min or
// max it comes first, so that NaN propagates (the backends' min/max return their second
// operand when the comparison fails).

/// elu(z) = z if z > 0 else alpha (e^z - 1), with expm1 for accuracy near 0 and the
/// exponential taken of min(z, 0) so that no branch overflows.
template <class T, class E>
auto elu_expr(const E& z, T alpha) {
  return where(greater(z, T(0)), z, alpha * expm1(minimum(T(0), z)));
}
/// elu' from y = elu(z), for alpha >= 0 (then y > 0 exactly when z > 0): 1 above 0,
/// y + alpha at and below 0 (TensorFlow: alpha at z = 0).
template <class T, class Y, class D>
auto elu_grad_from_output(const Y& y, const D& dy, T alpha) {
  return where(greater(y, T(0)), dy, dy * (y + alpha));
}
/// elu' from z, for any alpha.
template <class T, class Z, class D>
auto elu_grad_from_input(const Z& z, const D& dy, T alpha) {
  return where(greater(z, T(0)), dy, dy * (alpha * exp(minimum(T(0), z))));
}

/// leaky_relu(z) = z if z > 0 else slope z (TensorFlow's LeakyRelu).
template <class T, class E>
auto leaky_relu_expr(const E& z, T slope) {
  return where(greater(z, T(0)), z, slope * z);
}
/// leaky_relu' from y, for slope >= 0: 1 where y > 0, else slope (slope at 0, as TF).
template <class T, class Y, class D>
auto leaky_relu_grad_from_output(const Y& y, const D& dy, T slope) {
  return where(greater(y, T(0)), dy, slope * dy);
}

namespace detail {

/// out = act(z) for every activation but linear and softmax (which are not element-wise
/// maps of one expression); z is a tensor or an expression and may read `out` itself.
template <class T, class Dev, class E>
void assign_activation(Activation a, Tensor<T, Dev>& out, const E& z) {
  namespace K = activation_constants;
  switch (a) {
    case Activation::relu:
      out = relu(z);
      return;
    case Activation::sigmoid:
      out = sigmoid(z);
      return;
    case Activation::tanh:
      out = tanh(z);
      return;
    case Activation::gelu:
      // 0.5 z (1 + erf(z / sqrt 2)), written with erfc so that the tail below 0 keeps
      // its relative accuracy instead of cancelling to 0.
      out = T(0.5) * z * erfc(z * T(-K::sqrt1_2));
      return;
    case Activation::silu:
      out = z * sigmoid(z);
      return;
    case Activation::elu:
      out = elu_expr(z, T(K::elu_alpha));
      return;
    case Activation::selu:
      out = where(greater(z, T(0)), T(K::selu_scale) * z,
                  T(K::selu_scale_alpha) * expm1(minimum(T(0), z)));
      return;
    case Activation::leaky_relu:
      out = leaky_relu_expr(z, T(K::leaky_relu_negative_slope));
      return;
    case Activation::softplus:
      // log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow, full accuracy at both ends.
      out = relu(z) + log1p(exp(-abs(z)));
      return;
    case Activation::hard_sigmoid:
      // Keras 3: relu6(z + 3) / 6.
      out = minimum(T(6), maximum(T(0), z + T(3))) / T(6);
      return;
    case Activation::linear:
    case Activation::softmax:
      break;
  }
  throw argument_error("locus: " + to_string(a) + " is not an element-wise activation");
}

}  // namespace detail

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
    case Activation::linear:
      return z;
    case Activation::softmax:
      return softmax(z);
    default:
      detail::assign_activation(a, z, z);
      return z;
  }
}

/// y = act(z + b) with b broadcast over the last axis: one fused pass unless softmax.
template <class T, class Dev>
Tensor<T, Dev> bias_activate(Activation a, Tensor<T, Dev> z, const Tensor<T, Dev>& b) {
  switch (a) {
    case Activation::linear:
      z += b;
      return z;
    case Activation::softmax:
      z += b;
      return softmax(z);
    default:
      detail::assign_activation(a, z, z + b);
      return z;
  }
}

/// Whether the derivative of `a` is computed from its input z (false: from its output y,
/// so a layer keeps only its output for the backward pass).
inline bool derivative_needs_input(Activation a) {
  return a == Activation::gelu || a == Activation::silu;
}

/// dL/dz from dL/dy and y = act(z), for the activations whose derivative does not need
/// the input (derivative_needs_input(a) is false).
template <class T, class Dev>
Tensor<T, Dev> activation_backward(Activation a, const Tensor<T, Dev>& y,
                                   const Tensor<T, Dev>& dy) {
  namespace K = activation_constants;
  switch (a) {
    case Activation::linear:
      return dy;
    case Activation::relu:
      return where(y, dy, T(0));
    case Activation::sigmoid:
      return dy * y * (T(1) - y);
    case Activation::tanh:
      return dy * (T(1) - square(y));
    case Activation::softmax:
      return y * (dy - sum(dy * y, -1, true));
    case Activation::elu:
      return elu_grad_from_output(y, dy, T(K::elu_alpha));
    case Activation::selu:
      // TensorFlow's SeluGrad: scale at and above 0.
      return where(less(y, T(0)), dy * (y + T(K::selu_scale_alpha)), dy * T(K::selu_scale));
    case Activation::leaky_relu:
      return leaky_relu_grad_from_output(y, dy, T(K::leaky_relu_negative_slope));
    case Activation::softplus:
      // sigmoid(z) = 1 - e^-y, as -expm1(-y) so that it stays accurate where y is tiny.
      return -dy * expm1(-y);
    case Activation::hard_sigmoid:
      // TensorFlow's Relu6Grad: the slope only strictly inside (0, 6), i.e. 0 < y < 1.
      return where(greater(y, T(0)) * less(y, T(1)), dy / T(6), T(0));
    case Activation::gelu:
    case Activation::silu:
      break;
  }
  throw argument_error("locus: the derivative of " + to_string(a) +
                       " needs the activation's input; use activation_backward_from_input");
}

/// dL/dz from dL/dy and z. Meant for the activations whose derivative needs the input
/// (gelu, silu); for the others it recomputes y = act(z) and uses their derivative in y.
template <class T, class Dev>
Tensor<T, Dev> activation_backward_from_input(Activation a, const Tensor<T, Dev>& z,
                                              const Tensor<T, Dev>& dy) {
  namespace K = activation_constants;
  switch (a) {
    case Activation::gelu:
      // Phi(z) + z phi(z).
      return dy * (T(0.5) * erfc(z * T(-K::sqrt1_2)) +
                   z * exp(T(-0.5) * square(z)) * T(K::inv_sqrt_2pi));
    case Activation::silu:
      // s (1 + z (1 - s)) with s = sigmoid(z), as TensorFlow's silu gradient.
      return dy * sigmoid(z) * (T(1) + z * (T(1) - sigmoid(z)));
    case Activation::linear:
      return dy;
    default:
      return activation_backward(a, activate(a, z), dy);
  }
}

}  // namespace nn
}  // namespace locus
