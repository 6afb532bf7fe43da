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

inline std::string to_string(Padding p) { return p == Padding::same ? "same" : "valid"; }

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

inline Config window_config(Window w) { return Config::list({w.h, w.w}); }

inline Window window_from_config(const Config& c, const std::string& layer, const char* key) {
  const auto [h, w] = config_pair(c);
  if (c.is_array() ? (c.as_array()[0].as_int() <= 0 || c.as_array()[1].as_int() <= 0) : c.as_int() <= 0) {
    throw config_error("locus::" + layer + ": " + key + " must be positive, found " + c.dump());
  }
  return {h, w};
}

/// Refuses a data_format other than channels_last (locus computes in NHWC, as Keras's
/// default), naming the layer.
inline void require_channels_last(const Config& c, const std::string& layer) {
  if (const Config* f = c.find("data_format"); f && !f->is_null() && f->as_string() != "channels_last") {
    throw config_error("locus::" + layer + ": data_format '" + f->as_string() +
                       "' is not supported; locus computes channels_last (NHWC)");
  }
}

/// A positive integer config entry.
inline std::size_t positive(const Config& c, const std::string& layer, const char* key) {
  const std::int64_t v = c.at(key).as_int();
  if (v <= 0) throw config_error("locus::" + layer + ": " + key + " must be positive, found " + std::to_string(v));
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
      return Tensor<T, Dev>::uniform(w.shape, seed, static_cast<T>(w.init.minval), static_cast<T>(w.init.maxval));
    case K::zeros:
    default:
      return Tensor<T, Dev>::zeros(w.shape);
  }
}

}  // namespace nn
}  // namespace locus
