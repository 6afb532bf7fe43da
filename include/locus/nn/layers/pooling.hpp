// MaxPooling2D and AveragePooling2D over NHWC input. A training call of max pooling
// keeps, per output, where its maximum came from, so backward is a scatter of dy there.
//
// Gradient fusion (plan.hpp): when the input is a relu layer's output that nothing else
// reads, max pooling's backward returns dL/d(that layer's pre-activation). The gradient of
// an input element is the sum of dy over the outputs whose argmax it is, and each such
// output equals the element (its relu value) exactly, so relu' there, [y != 0], is
// [output != 0]. The training forward pass therefore drops the argmax (-1: no element) of
// every output that is 0; the backward scatter then gives what the relu layer's own
// derivative would, bit for bit (a sum of nothing is +0, as where(y, dx, 0) gives), with
// no pass over the large input and nothing more kept than the argmax.
#pragma once

#include <cstdint>
#include <string>

#include "../../backend/nn_backend.hpp"
#include "common.hpp"

namespace locus::layers {

/// Pooling windows; strides default to the window (Keras's strides=None).
template <pool_kind Kind>
struct Pooling2D : nn::LayerSpec<Pooling2D<Kind>> {
  static constexpr pool_kind kind = Kind;
  Window pool_size{2, 2};
  Window strides{0, 0};
  Padding padding = Padding::valid;
  // No two-argument form: `MaxPooling2D({2, 2})` would then also read as a copy of a
  // pooling layer built from (2, 2). Strides and padding go through the setters or all three.
  explicit Pooling2D(Window p = {2, 2}) : pool_size(p) {}
  Pooling2D(Window p, Window s, Padding pad) : pool_size(p), strides(s), padding(pad) {}
  Pooling2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  Pooling2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }

  Window effective_strides() const { return strides.h ? strides : pool_size; }

  static constexpr const char* keras_class =
      Kind == pool_kind::max ? "MaxPooling2D" : "AveragePooling2D";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"pool_size", nn::window_config(pool_size)},
                         {"padding", to_string(padding)},
                         {"strides", nn::window_config(effective_strides())},
                         {"data_format", "channels_last"}});
  }
  static Pooling2D from_config(const nn::Config& c) {
    const std::string name = keras_class;
    nn::require_channels_last(c, name);
    Pooling2D p(c.contains("pool_size")
                    ? nn::window_from_config(c.at("pool_size"), name, "pool_size")
                    : Window{2, 2});
    if (const auto* s = c.find("strides"); s && !s->is_null())
      p.strides = nn::window_from_config(*s, name, "strides");
    if (const auto* pad = c.find("padding")) p.padding = nn::padding_from_config(*pad, name);
    return p;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const Shape& s = in[0];
    if (s.rank() != 3) {
      throw shape_error(nn::layer_label(*this) +
                        ": expects per-sample input [height, width, channels], got " +
                        to_string(s));
    }
    const Window st = effective_strides();
    if (pool_size.h == 0 || pool_size.w == 0 || st.h == 0 || st.w == 0) {
      throw argument_error(nn::layer_label(*this) + ": pool size and strides must be positive");
    }
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(s[0], pool_size.h, st.h, same);
    const axis_geometry w = spatial_axis(s[1], pool_size.w, st.w, same);
    if (h.out == 0 || w.out == 0)
      throw shape_error(nn::layer_label(*this) + ": window does not fit input " + to_string(s));
    return {{h.out, w.out, s[2]}};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }
  bool can_apply_input_grad(nn::MovedGrad g, std::size_t input) const override {
    return Kind == pool_kind::max && g == nn::MovedGrad::relu && input == 0;
  }

  pool_geometry geometry(const Shape& x) const {
    const Window st = effective_strides();
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(x[1], pool_size.h, st.h, same);
    const axis_geometry w = spatial_axis(x[2], pool_size.w, st.w, same);
    return {x[0], x[1], x[2],         x[3],         pool_size.h, pool_size.w,
            st.h, st.w, h.pad_before, w.pad_before, h.out,       w.out};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const pool_geometry g = geometry(f.x().shape());
    std::vector<Tensor<T, Dev>> out;
    out.emplace_back(uninitialized, Shape{g.n, g.oh, g.ow, g.c});
    if (Kind == pool_kind::max && f.saved) {
      auto& am = f.saved->indices.emplace_back(uninitialized, out[0].shape());
      nn_backend_for<Dev>::pool2d_forward(Kind, f.x().storage(), g, out[0].storage(),
                                          &am.storage());
      if (f.apply_to_dx == nn::MovedGrad::relu) {
        // relu' at the argmax: the same test as the relu derivative's where(y, dy, 0).
        am = where(cast<std::int32_t>(equal(out[0], T(0))), std::int32_t(-1), am);
      }
    } else {
      nn_backend_for<Dev>::pool2d_forward(Kind, f.x().storage(), g, out[0].storage(), nullptr);
    }
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    const pool_geometry g = geometry(b.in_shapes[0]);
    // With gradient fusion the argmax kept by the forward pass already carries relu'.
    dx[0] = Tensor<T, Dev>(uninitialized, b.in_shapes[0]);
    nn_backend_for<Dev>::pool2d_backward(
        Kind, b.dy[0]->storage(), Kind == pool_kind::max ? &b.saved.indices[0].storage() : nullptr,
        g, dx[0].storage());
    return dx;
  }
};
using MaxPooling2D = Pooling2D<pool_kind::max>;
using AveragePooling2D = Pooling2D<pool_kind::average>;

}  // namespace locus::layers
