// Global pooling: GlobalAveragePooling2D, GlobalMaxPooling2D ([N, H, W, C] -> [N, C]) and
// GlobalAveragePooling1D ([N, steps, features] -> [N, features]); with keepdims the pooled
// axes stay, with extent 1, as in Keras.
//
// A global pooling is a pooling whose one window is the whole image (a 1-D input is an
// image of width 1), so it reuses the 2-D pooling kernels for what needs more than a
// reduction: the forward pass of a training call of max pooling records, per channel, the
// flat index of the first maximum in scan order (the same tie rule as MaxPooling2D), and
// backward scatters dy there (max) or spreads dy / count over the window (average).
// Inference and the average's forward pass are plain reductions over the pooled axes.
// Keras's mask argument of GlobalAveragePooling1D is not supported (locus has no masks).
#pragma once

#include <cstddef>
#include <string>

#include "../../backend/nn_backend.hpp"
#include "common.hpp"

namespace locus::layers {

template <pool_kind Kind, std::size_t SpatialRank>
struct GlobalPooling : nn::LayerSpec<GlobalPooling<Kind, SpatialRank>> {
  static_assert(SpatialRank == 1 || SpatialRank == 2, "locus: global pooling is 1-D or 2-D");
  static constexpr pool_kind kind = Kind;
  bool keepdims = false;
  explicit GlobalPooling(bool keep = false) : keepdims(keep) {}

  static constexpr const char* keras_class =
      Kind == pool_kind::max
          ? (SpatialRank == 2 ? "GlobalMaxPooling2D" : "GlobalMaxPooling1D")
          : (SpatialRank == 2 ? "GlobalAveragePooling2D" : "GlobalAveragePooling1D");
  nn::Config config() const override {
    return nn::Config::make({{"data_format", "channels_last"}, {"keepdims", keepdims}});
  }
  static GlobalPooling from_config(const nn::Config& c) {
    nn::require_channels_last(c, keras_class);
    const nn::Config* k = c.find("keepdims");
    return GlobalPooling(k && !k->is_null() ? k->as_bool() : false);
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const Shape& s = in[0];
    if (s.rank() != SpatialRank + 1) {
      throw shape_error(nn::layer_label(*this) + ": expects per-sample input " +
                        (SpatialRank == 2 ? "[height, width, channels]" : "[steps, features]") +
                        ", got " + to_string(s));
    }
    for (std::size_t d = 0; d < SpatialRank; ++d) {
      if (s[d] == 0)
        throw shape_error(nn::layer_label(*this) + ": cannot pool over an empty axis of " +
                          to_string(s));
    }
    Shape out;
    if (keepdims) {
      for (std::size_t d = 0; d < SpatialRank; ++d) out.push_back(1);
    }
    out.push_back(s[SpatialRank]);
    return {out};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  /// The whole input as one pooling window: [N, H, W, C] with a H x W window (W = 1 for
  /// a 1-D input), one output per image and channel.
  static pool_geometry geometry(const Shape& x) {
    const std::size_t h = x[1], w = SpatialRank == 2 ? x[2] : 1, c = x[SpatialRank + 1];
    return {x[0], h, w, c, h, w, h, w, 0, 0, 1, 1};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const Shape& s = f.x().shape();
    const pool_geometry g = geometry(s);
    std::vector<Tensor<T, Dev>> out;
    out.emplace_back(uninitialized, nn::with_batch(s[0], output_shapes({nn::per_sample(s)})[0]));
    if (Kind == pool_kind::max && f.saved) {
      auto& am = f.saved->indices.emplace_back(uninitialized, Shape{g.n, g.c});
      nn_backend_for<Dev>::pool2d_forward(Kind, f.x().storage(), g, out[0].storage(),
                                          &am.storage());
    } else {
      backend_t<Dev>::reduce(Kind == pool_kind::max ? reduce_op::max : reduce_op::mean,
                             f.x().storage(), g.n, g.h * g.w, g.c, out[0].storage());
    }
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    const pool_geometry g = geometry(b.in_shapes[0]);
    dx[0] = Tensor<T, Dev>(uninitialized, b.in_shapes[0]);
    nn_backend_for<Dev>::pool2d_backward(
        Kind, b.dy[0]->storage(), Kind == pool_kind::max ? &b.saved.indices[0].storage() : nullptr,
        g, dx[0].storage());
    return dx;
  }
};

using GlobalAveragePooling2D = GlobalPooling<pool_kind::average, 2>;
using GlobalMaxPooling2D = GlobalPooling<pool_kind::max, 2>;
using GlobalAveragePooling1D = GlobalPooling<pool_kind::average, 1>;

}  // namespace locus::layers
