// The activation layers with parameters of Keras 3 (keras/src/layers/activations/):
// LeakyReLU, ELU, ReLU and Softmax. Each is one fused element-wise pass forward and one
// backward, computed as Keras's TensorFlow backend computes it, including which side of a
// kink the derivative takes. Activations without parameters are layers::Activation.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "../activation.hpp"
#include "common.hpp"

namespace locus::layers {

// (Not `detail`: a locus::layers::detail would hide locus::detail from the other layers.)
namespace activation_detail {

/// A number config entry, `fallback` when the key is missing; null and non-numbers are
/// config_errors naming the layer and the key.
inline double number_entry(const nn::Config& c, const char* key, double fallback,
                           const std::string& layer) {
  const nn::Config* v = c.find(key);
  if (!v) return fallback;
  if (!v->is_number()) {
    throw config_error("locus::" + layer + ": " + key + " must be a number, found " + v->dump());
  }
  return v->as_double();
}

/// Refuses a negative (or NaN) value, as Keras's constructors do.
inline double non_negative(double v, const std::string& layer, const char* key) {
  if (!(v >= 0.0)) {
    throw config_error("locus::" + layer + ": " + key + " must be a number >= 0, found " +
                       std::to_string(v));
  }
  return v;
}

template <class T, AnyDevice Dev>
std::vector<Tensor<T, Dev>> single_output(Tensor<T, Dev> t) {
  std::vector<Tensor<T, Dev>> v;
  v.push_back(std::move(t));
  return v;
}

}  // namespace activation_detail

/// LeakyReLU: x if x > 0 else negative_slope * x (Keras's layer default 0.3; the
/// leaky_relu activation function's is 0.2). Keras 2 called the slope `alpha`.
struct LeakyReLU : nn::LayerSpec<LeakyReLU> {
  double negative_slope;
  explicit LeakyReLU(double slope = 0.3)
      : negative_slope(activation_detail::non_negative(slope, "LeakyReLU", "negative_slope")) {}

  static constexpr const char* keras_class = "LeakyReLU";
  nn::Config config() const override {
    return nn::Config::make({{"negative_slope", negative_slope}});
  }
  static LeakyReLU from_config(const nn::Config& c) {
    const char* key =
        c.contains("negative_slope") || !c.contains("alpha") ? "negative_slope" : "alpha";
    return LeakyReLU(activation_detail::number_entry(c, key, 0.3, "LeakyReLU"));
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {in[0]}; }
  // The derivative is exact from the output: y > 0 exactly where x > 0 (slope >= 0).
  nn::BackwardNeeds backward_needs() const override { return {false, true}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    Tensor<T, Dev> x = f.in[0].take();
    x = nn::leaky_relu_expr(x, static_cast<T>(negative_slope));
    return activation_detail::single_output(std::move(x));
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    Tensor<T, Dev>& dy = *b.dy[0];
    dy = nn::leaky_relu_grad_from_output(*b.out[0], dy, static_cast<T>(negative_slope));
    dx[0] = std::move(dy);
    return dx;
  }
};

/// ELU: x if x > 0 else alpha (e^x - 1). Keras 3's ELU writes no config of its own (its
/// alpha is lost on saving, so a Keras 3 file always means 1.0); locus writes alpha, as
/// Keras 2 did, and Keras 3 reads it back.
struct ELU : nn::LayerSpec<ELU> {
  double alpha;
  explicit ELU(double a = 1.0) : alpha(a) {
    if (!std::isfinite(alpha))
      throw config_error("locus::ELU: alpha must be a finite number, found " + std::to_string(a));
  }

  static constexpr const char* keras_class = "ELU";
  nn::Config config() const override { return nn::Config::make({{"alpha", alpha}}); }
  static ELU from_config(const nn::Config& c) {
    return ELU(activation_detail::number_entry(c, "alpha", 1.0, "ELU"));
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {in[0]}; }
  // From the output when alpha >= 0 (then y > 0 exactly where x > 0); a negative alpha
  // makes the negative side positive, so the input is needed.
  nn::BackwardNeeds backward_needs() const override { return {alpha < 0, alpha >= 0}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    Tensor<T, Dev> x = f.in[0].take();
    x = nn::elu_expr(x, static_cast<T>(alpha));
    return activation_detail::single_output(std::move(x));
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    Tensor<T, Dev>& dy = *b.dy[0];
    // TensorFlow: 1 above 0, alpha e^x at and below 0 (alpha at x = 0).
    if (alpha >= 0) {
      dy = nn::elu_grad_from_output(*b.out[0], dy, static_cast<T>(alpha));
    } else {
      dy = nn::elu_grad_from_input(*b.in[0], dy, static_cast<T>(alpha));
    }
    dx[0] = std::move(dy);
    return dx;
  }
};

/// Keras's ReLU layer:
///   max_value                   where x >= max_value,
///   x                           where threshold < x < max_value,
///   negative_slope (x - threshold) where x <= threshold
/// (0 at x = threshold, so a threshold makes a step). max_value null means no cap.
/// Computed as keras.activations.relu does: leaky_relu when only a slope is given,
/// relu6 for max_value 6 without a threshold, else relu or x [x > threshold], capped by
/// clip, minus negative_slope * relu(threshold - x). The derivative follows TensorFlow's
/// gradients of those ops, so it depends on the input itself (relu6 stops passing at 6,
/// clip passes at max_value): the layer keeps its input.
struct ReLU : nn::LayerSpec<ReLU> {
  std::optional<double> max_value;
  double negative_slope = 0.0;
  double threshold = 0.0;

  explicit ReLU(std::optional<double> max = std::nullopt, double slope = 0.0, double thresh = 0.0)
      : max_value(max),
        negative_slope(activation_detail::non_negative(slope, "ReLU", "negative_slope")),
        threshold(activation_detail::non_negative(thresh, "ReLU", "threshold")) {
    if (max_value) activation_detail::non_negative(*max_value, "ReLU", "max_value");
  }

  static constexpr const char* keras_class = "ReLU";
  nn::Config config() const override {
    return nn::Config::make(
        {{"max_value", max_value ? nn::Config(*max_value) : nn::Config(nullptr)},
         {"negative_slope", negative_slope},
         {"threshold", threshold}});
  }
  static ReLU from_config(const nn::Config& c) {
    std::optional<double> max;
    if (const nn::Config* m = c.find("max_value"); m && !m->is_null()) {
      max = activation_detail::number_entry(c, "max_value", 0.0, "ReLU");
    }
    return ReLU(max, activation_detail::number_entry(c, "negative_slope", 0.0, "ReLU"),
                activation_detail::number_entry(c, "threshold", 0.0, "ReLU"));
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {in[0]}; }
  nn::BackwardNeeds backward_needs() const override { return {true, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    Tensor<T, Dev> x = f.in[0].take();
    const T s = static_cast<T>(negative_slope), t = static_cast<T>(threshold);
    if (leaky_only()) {
      x = nn::leaky_relu_expr(x, s);
      return activation_detail::single_output(std::move(x));
    }
    // The positive part x1 (capped), then x1 - slope * relu(threshold - x).
    const auto finish = [&](const auto& x1) {
      if (negative_slope == 0.0) {
        x = x1;
      } else {
        x = x1 - s * relu(t - x);
      }
    };
    if (max_value) {
      finish(where(greater(x, t), minimum(static_cast<T>(*max_value), x), T(0)));
    } else {
      finish(where(greater(x, t), x, T(0)));
    }
    return activation_detail::single_output(std::move(x));
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    const Tensor<T, Dev>& x = *b.in[0];
    Tensor<T, Dev>& dy = *b.dy[0];
    const T s = static_cast<T>(negative_slope), t = static_cast<T>(threshold);
    if (leaky_only()) {
      dy = where(greater(x, T(0)), dy, s * dy);  // LeakyReluGrad: slope at 0
    } else {
      // `pass`: where the positive part passes the gradient; relu(threshold - x) adds the
      // slope strictly below the threshold.
      const auto finish = [&](const auto& pass) {
        if (negative_slope == 0.0) {
          dy = where(pass, dy, T(0));
        } else {
          dy = where(pass, dy, where(less(x, t), s * dy, T(0)));
        }
      };
      if (!max_value) {
        finish(greater(x, t));  // ReluGrad (x > 0), or the where of the threshold
      } else if (threshold == 0.0 && *max_value == 6.0) {
        finish(greater(x, T(0)) * less(x, T(6)));  // Relu6Grad: strictly inside (0, 6)
      } else {
        finish(greater(x, t) *
               less_equal(x, static_cast<T>(*max_value)));  // clip passes at the cap
      }
    }
    dx[0] = std::move(dy);
    return dx;
  }

 private:
  // Keras's shortcut: a slope alone is leaky_relu (slope at 0, not 0).
  bool leaky_only() const { return negative_slope != 0.0 && !max_value && threshold == 0.0; }
};

/// Softmax over the last axis (Keras's default axis=-1). Other axes are refused: a
/// config_error from the configuration for a negative one, and at the call for a
/// non-negative one that is not the input's last axis (counting the batch axis, as
/// Keras does).
struct Softmax : nn::LayerSpec<Softmax> {
  int axis = -1;
  explicit Softmax(int a = -1) : axis(a) {
    if (axis < -1) refuse(std::to_string(axis));
  }

  static constexpr const char* keras_class = "Softmax";
  nn::Config config() const override { return nn::Config::make({{"axis", axis}}); }
  static Softmax from_config(const nn::Config& c) {
    const nn::Config* a = c.find("axis");
    if (!a) return Softmax();
    // Keras accepts a list of axes; one axis in a list means that axis.
    const nn::Config* one = a;
    if (a->is_array()) {
      if (a->as_array().size() != 1) refuse(a->dump());
      one = &a->as_array()[0];
    }
    if (!one->is_int()) refuse(a->dump());
    const std::int64_t v = one->as_int();
    if (v < -1 || v > static_cast<std::int64_t>(Shape::max_rank)) refuse(a->dump());
    return Softmax(static_cast<int>(v));
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    if (in[0].rank() == 0) {
      throw shape_error(
          nn::layer_label(*this) +
          ": needs inputs with at least one axis besides the batch (softmax over the batch "
          "would mix samples)");
    }
    // With the batch axis, the last axis of a per-sample shape of rank r is axis r.
    if (axis >= 0 && static_cast<std::size_t>(axis) != in[0].rank()) {
      throw config_error(nn::layer_label(*this) + ": axis " + std::to_string(axis) +
                         " is not the last axis (" + std::to_string(in[0].rank()) +
                         ") of inputs of rank " + std::to_string(in[0].rank() + 1) +
                         " (batch included); locus computes softmax over the last axis only");
    }
    return {in[0]};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, true}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    return activation_detail::single_output(nn::softmax(f.x()));
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    dx[0] = nn::activation_backward(locus::Activation::softmax, *b.out[0], *b.dy[0]);
    return dx;
  }

 private:
  [[noreturn]] static void refuse(const std::string& axis) {
    throw config_error("locus::Softmax: axis " + axis +
                       " is not supported; locus computes softmax over the last axis (-1)");
  }
};

}  // namespace locus::layers
