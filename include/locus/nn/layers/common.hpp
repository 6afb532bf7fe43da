// Vocabulary shared by the layer descriptions: padding, 2-D windows, the Keras config
// entries every spatial layer reads and writes, and weight initialisation.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../../error.hpp"
#include "../../shape.hpp"
#include "../../tensor.hpp"
#include "../config.hpp"
#include "../layer.hpp"

namespace locus {

enum class Padding { valid, same };

inline std::string to_string(Padding p) {
  return p == Padding::same ? "same" : "valid";
}

/// A 2-D window or stride: `{3, 3}` or a single extent for both axes.
struct Window {
  std::size_t h = 1, w = 1;
  Window() = default;
  Window(std::size_t both) : h(both), w(both) {}  // NOLINT: `Conv2D(32, 3)` as in Keras
  Window(std::size_t h_, std::size_t w_) : h(h_), w(w_) {}
  friend bool operator==(const Window&, const Window&) = default;
};

namespace nn {

inline Padding padding_from_config(const Config& c, const std::string& layer) {
  const std::string& s = c.as_string();
  if (s == "valid") return Padding::valid;
  if (s == "same") return Padding::same;
  throw config_error("locus::" + layer + ": padding '" + s + "' is not supported (valid, same)");
}

inline Config window_config(Window w) {
  return Config::list({w.h, w.w});
}

inline Window window_from_config(const Config& c, const std::string& layer, const char* key) {
  const auto [h, w] = config_pair(c);
  if (c.is_array() ? (c.as_array()[0].as_int() <= 0 || c.as_array()[1].as_int() <= 0)
                   : c.as_int() <= 0) {
    throw config_error("locus::" + layer + ": " + key + " must be positive, found " + c.dump());
  }
  return {h, w};
}

/// Refuses a data_format other than channels_last (locus computes in NHWC, as Keras's
/// default), naming the layer.
inline void require_channels_last(const Config& c, const std::string& layer) {
  if (const Config* f = c.find("data_format");
      f && !f->is_null() && f->as_string() != "channels_last") {
    throw config_error("locus::" + layer + ": data_format '" + f->as_string() +
                       "' is not supported; locus computes channels_last (NHWC)");
  }
}

/// A positive integer config entry.
/// c with what Keras writes after the own keys of a layer with a kernel and a bias: their
/// initializers (glorot-uniform and zeros, what locus initialises them with) and null
/// regularizers and constraints (locus has none); convolutions also write a null
/// activity regularizer, Dense does not.
inline Config with_kernel_and_bias_keys(Config c, bool activity_regularizer) {
  c.set("kernel_initializer", Initializer::glorot_uniform().config());
  c.set("bias_initializer", Initializer::zeros().config());
  c.set("kernel_regularizer", nullptr);
  c.set("bias_regularizer", nullptr);
  if (activity_regularizer) c.set("activity_regularizer", nullptr);
  c.set("kernel_constraint", nullptr);
  c.set("bias_constraint", nullptr);
  return c;
}

/// The output shape of a normalisation over the last axis (BatchNormalization,
/// LayerNormalization): the input's. `axis` is Keras's, which counts the batch axis: -1 or
/// the input's rank; any other axis is refused.
inline std::vector<Shape> last_axis_normalization_shapes(const Layer& layer, const Shape& s,
                                                         std::int64_t axis) {
  if (s.rank() == 0) throw shape_error(layer_label(layer) + ": needs at least one axis");
  if (axis != -1 && axis != static_cast<std::int64_t>(s.rank())) {
    throw config_error(layer_label(layer) + ": axis " + std::to_string(axis) + " of input " +
                       to_string(s) + " is not supported; locus normalises the last axis");
  }
  return {s};
}

/// A normalisation's learned scale and offset over c channels, in Keras's order.
inline std::vector<WeightSpec> scale_and_offset_weights(bool scale, bool center, std::size_t c) {
  std::vector<WeightSpec> w;
  if (scale) w.push_back({"gamma", {c}, Initializer::ones()});
  if (center) w.push_back({"beta", {c}, Initializer::zeros()});
  return w;
}

inline std::size_t positive(const Config& c, const std::string& layer, const char* key) {
  const std::int64_t v = c.at(key).as_int();
  if (v <= 0)
    throw config_error("locus::" + layer + ": " + key + " must be positive, found " +
                       std::to_string(v));
  return static_cast<std::size_t>(v);
}

/// Keras's fans of a weight shape: for rank > 2 the receptive field (product of the
/// leading axes) multiplies the last two axes (Keras's compute_fans).
inline std::pair<std::size_t, std::size_t> fans(const Shape& s) {
  if (s.rank() == 0) return {1, 1};
  if (s.rank() == 1) return {s[0], s[0]};
  std::size_t rf = 1;
  for (std::size_t i = 0; i + 2 < s.rank(); ++i) rf *= s[i];
  return {s[s.rank() - 2] * rf, s[s.rank() - 1] * rf};
}

/// A weight drawn on Dev from `seed` (Philox: the same values on every device).
template <class T, AnyDevice Dev>
Tensor<T, Dev> initial_value(const WeightSpec& w, std::uint64_t seed) {
  using K = Initializer::kind;
  switch (w.init.k) {
    case K::ones:
      return Tensor<T, Dev>::ones(w.shape);
    case K::glorot_uniform: {
      const auto [fi, fo] = fans(w.shape);
      const T limit = static_cast<T>(std::sqrt(6.0 / static_cast<double>(fi + fo)));
      return Tensor<T, Dev>::uniform(w.shape, seed, -limit, limit);
    }
    case K::random_uniform:
      return Tensor<T, Dev>::uniform(w.shape, seed, static_cast<T>(w.init.minval),
                                     static_cast<T>(w.init.maxval));
    case K::zeros:
    default:
      return Tensor<T, Dev>::zeros(w.shape);
  }
}

}  // namespace nn
}  // namespace locus
