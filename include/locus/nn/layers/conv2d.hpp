// Conv2D over NHWC input, as im2col followed by one GEMM with the [KH*KW*C, F] kernel
// matrix; the GEMM output is already NHWC. A training call keeps the columns for the
// backward pass: dW = cols^T dZ, dcols = dZ W^T, dx = col2im(dcols).
#pragma once

#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../ops/linalg.hpp"
#include "activated.hpp"
#include "common.hpp"

namespace locus::layers {

struct Conv2D : nn::LayerSpec<Conv2D> {
  std::size_t filters;
  Window kernel_size;
  locus::Activation activation = locus::Activation::linear;
  Window strides{1, 1};
  Padding padding = Padding::valid;
  bool use_bias = true;

  Conv2D(std::size_t f, Window k, locus::Activation a = locus::Activation::linear,
         Window s = {1, 1}, Padding p = Padding::valid)
      : filters(f), kernel_size(k), activation(a), strides(s), padding(p) {}
  Conv2D(std::size_t f, Window k, const char* a)
      : filters(f), kernel_size(k), activation(parse_activation(a)) {}
  Conv2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  Conv2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }

  static constexpr const char* keras_class = "Conv2D";
  nn::Config config() const override {
    using nn::Config;
    return nn::with_kernel_and_bias_keys(
        Config::make({{"filters", filters},
                      {"kernel_size", nn::window_config(kernel_size)},
                      {"strides", nn::window_config(strides)},
                      {"padding", to_string(padding)},
                      {"data_format", "channels_last"},
                      {"dilation_rate", Config::list({1, 1})},
                      {"groups", 1},
                      {"activation", to_string(activation)},
                      {"use_bias", use_bias}}),
        /*activity_regularizer=*/true);
  }
  static Conv2D from_config(const nn::Config& c) {
    nn::require_channels_last(c, "Conv2D");
    if (const auto* d = c.find("dilation_rate");
        d && nn::config_pair(*d) != std::pair<std::size_t, std::size_t>{1, 1})
      throw config_error("locus::Conv2D: dilation_rate " + d->dump() +
                         " is not supported (only 1)");
    if (const auto* g = c.find("groups"); g && g->as_int() != 1)
      throw config_error("locus::Conv2D: groups " + g->dump() + " is not supported (only 1)");
    Conv2D l(nn::positive(c, "Conv2D", "filters"),
             nn::window_from_config(c.at("kernel_size"), "Conv2D", "kernel_size"),
             parse_activation(c.at("activation").as_string()));
    if (const auto* s = c.find("strides"))
      l.strides = nn::window_from_config(*s, "Conv2D", "strides");
    if (const auto* p = c.find("padding")) l.padding = nn::padding_from_config(*p, "Conv2D");
    if (const auto* b = c.find("use_bias")) l.use_bias = b->as_bool();
    return l;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const Shape& s = in[0];
    if (s.rank() != 3) {
      throw shape_error(nn::layer_label(*this) +
                        ": expects per-sample input [height, width, channels], got " +
                        to_string(s));
    }
    if (strides.h == 0 || strides.w == 0 || kernel_size.h == 0 || kernel_size.w == 0 ||
        filters == 0) {
      throw argument_error(nn::layer_label(*this) +
                           ": filters, kernel size and strides must be positive");
    }
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(s[0], kernel_size.h, strides.h, same);
    const axis_geometry w = spatial_axis(s[1], kernel_size.w, strides.w, same);
    if (h.out == 0 || w.out == 0) {
      throw shape_error(nn::layer_label(*this) + ": kernel " + std::to_string(kernel_size.h) + "x" +
                        std::to_string(kernel_size.w) + " does not fit input " + to_string(s) +
                        " with 'valid' padding");
    }
    return {{h.out, w.out, filters}};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    std::vector<nn::WeightSpec> w{{"kernel",
                                   {kernel_size.h, kernel_size.w, in[0][2], filters},
                                   nn::Initializer::glorot_uniform()}};
    if (use_bias) w.push_back({"bias", {filters}, nn::Initializer::zeros()});
    return w;
  }
  nn::BackwardNeeds backward_needs() const override {
    return {false, nn::output_needed_for(activation)};
  }
  nn::MovedGrad movable_output_grad() const override { return nn::movable_grad_of(activation); }

  /// The convolution geometry of a batch of shape x (NHWC).
  conv_geometry geometry(const Shape& x) const {
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(x[1], kernel_size.h, strides.h, same);
    const axis_geometry w = spatial_axis(x[2], kernel_size.w, strides.w, same);
    return {x[0],      x[1],      x[2],         x[3],         kernel_size.h, kernel_size.w,
            strides.h, strides.w, h.pad_before, w.pad_before, h.out,         w.out};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    const conv_geometry g = geometry(x.shape());
    const std::size_t rows = g.n * g.oh * g.ow, k = g.kh * g.kw * g.c;
    tensor cols(uninitialized, {rows, k});
    nn_backend_for<Dev>::im2col(x.storage(), g, cols.storage());
    tensor z(uninitialized, {g.n, g.oh, g.ow, filters});
    // Bias and (most) activations in the GEMM's write-back: one pass over the output.
    const nn::GemmEnding e = nn::gemm_ending(activation, f.training());
    detail::gemm_into(cols, 1, rows, k, *f.w[0], 1, k, filters, {}, z, T(1), T(0),
                      use_bias ? f.w[1] : nullptr, e.in_gemm);
    if (f.saved) f.saved->tensors.push_back(std::move(cols));
    std::vector<tensor> out;
    out.push_back(nn::activate_output<T, Dev>(e.after, std::move(z), nullptr, f.saved));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const conv_geometry g = geometry(b.in_shapes[0]);
    const std::size_t rows = g.n * g.oh * g.ow, k = g.kh * g.kw * g.c;
    tensor& dz = *b.dy[0];
    if (!b.output_grad_applied) {
      nn::activation_grad_in_place(activation, b.out[0],
                                   b.saved.tensors.size() > 1 ? &b.saved.tensors[1] : nullptr, dz);
    }
    const tensor& cols = b.saved.tensors[0];
    // dW = cols^T dz, and the bias gradient (the column sums of dz) from the same GEMM.
    b.dw[0] = tensor(uninitialized, b.w[0]->shape());
    if (use_bias) b.dw[1] = tensor(uninitialized, {filters});
    detail::gemm_into(cols, 1, rows, k, dz, 1, rows, filters, {.transpose_a = true}, b.dw[0], T(1),
                      T(0), nullptr, gemm_activation::linear, use_bias ? &b.dw[1] : nullptr);
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      // The columns are not needed after dW: their buffer takes dcols.
      tensor dcols = std::move(b.saved.tensors[0]);
      detail::gemm_into(dz, 1, rows, filters, *b.w[0], 1, k, filters, {.transpose_b = true}, dcols);
      dx[0] = tensor(uninitialized, b.in_shapes[0]);
      nn_backend_for<Dev>::col2im(dcols.storage(), g, dx[0].storage());
    }
    return dx;
  }
};

}  // namespace locus::layers
