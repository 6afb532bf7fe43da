// Conv1D over [N, steps, channels] input: the Conv2D machinery on images of height 1
// (im2col, one GEMM with the [K*C, F] kernel matrix, col2im for the input gradient).
// Keras's paddings: 'valid', 'same' (the extra step at the end, as spatial_axis computes)
// and 'causal' (K - 1 zero steps in front, so output t reads only inputs up to t).
#pragma once

#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../ops/linalg.hpp"
#include "../../ops/reduce.hpp"
#include "activated.hpp"
#include "common.hpp"

namespace locus {

/// Conv1D's paddings (Keras's padding= strings).
enum class Padding1D { valid, same, causal };

inline std::string to_string(Padding1D p) {
  return p == Padding1D::same ? "same" : p == Padding1D::causal ? "causal" : "valid";
}

}  // namespace locus

namespace locus::layers {

struct Conv1D : nn::LayerSpec<Conv1D> {
  std::size_t filters;
  std::size_t kernel_size;
  locus::Activation activation = locus::Activation::linear;
  std::size_t strides = 1;
  Padding1D padding = Padding1D::valid;
  bool use_bias = true;

  Conv1D(std::size_t f, std::size_t k, locus::Activation a = locus::Activation::linear,
         std::size_t s = 1, Padding1D p = Padding1D::valid)
      : filters(f), kernel_size(k), activation(a), strides(s), padding(p) {}
  Conv1D(std::size_t f, std::size_t k, locus::Activation a, std::size_t s, Padding p)
      : Conv1D(f, k, a, s, p == Padding::same ? Padding1D::same : Padding1D::valid) {}
  Conv1D(std::size_t f, std::size_t k, const char* a)
      : filters(f), kernel_size(k), activation(parse_activation(a)) {}
  Conv1D& with_strides(std::size_t s) {
    strides = s;
    return *this;
  }
  Conv1D& with_padding(Padding1D p) {
    padding = p;
    return *this;
  }

  static constexpr const char* keras_class = "Conv1D";
  nn::Config config() const override {
    using nn::Config;
    return nn::with_kernel_and_bias_keys(Config::make({{"filters", filters},
                                                       {"kernel_size", Config::list({kernel_size})},
                                                       {"strides", Config::list({strides})},
                                                       {"padding", to_string(padding)},
                                                       {"data_format", "channels_last"},
                                                       {"dilation_rate", Config::list({1})},
                                                       {"groups", 1},
                                                       {"activation", to_string(activation)},
                                                       {"use_bias", use_bias}}),
                                         /*activity_regularizer=*/true);
  }

  static Conv1D from_config(const nn::Config& c) {
    nn::require_channels_last(c, keras_class);
    if (const auto* d = c.find("dilation_rate"); d && config_length(*d, "dilation_rate") != 1) {
      throw config_error("locus::Conv1D: dilation_rate " + d->dump() +
                         " is not supported (only 1)");
    }
    if (const auto* g = c.find("groups"); g && g->as_int() != 1) {
      throw config_error("locus::Conv1D: groups " + g->dump() + " is not supported (only 1)");
    }
    Conv1D l(nn::positive(c, keras_class, "filters"),
             positive_length(c.at("kernel_size"), "kernel_size"),
             parse_activation(c.at("activation").as_string()));
    if (const auto* s = c.find("strides")) l.strides = positive_length(*s, "strides");
    if (const auto* p = c.find("padding")) {
      const std::string& s = p->as_string();
      if (s == "valid") {
        l.padding = Padding1D::valid;
      } else if (s == "same") {
        l.padding = Padding1D::same;
      } else if (s == "causal") {
        l.padding = Padding1D::causal;
      } else {
        throw config_error("locus::Conv1D: padding '" + s +
                           "' is not supported (valid, same, causal)");
      }
    }
    if (const auto* b = c.find("use_bias")) l.use_bias = b->as_bool();
    return l;
  }

  /// Output steps and leading pad for `steps` input steps.
  axis_geometry steps_geometry(std::size_t steps) const {
    if (padding == Padding1D::causal) {
      // Keras pads K - 1 steps in front, then convolves 'valid'.
      return {steps ? (steps - 1) / strides + 1 : 0, kernel_size - 1};
    }
    return spatial_axis(steps, kernel_size, strides, padding == Padding1D::same);
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const Shape& s = in[0];
    if (s.rank() != 2) {
      throw shape_error(nn::layer_label(*this) +
                        ": expects per-sample input [steps, channels], got " + to_string(s));
    }
    if (strides == 0 || kernel_size == 0 || filters == 0) {
      throw argument_error(nn::layer_label(*this) +
                           ": filters, kernel size and strides must be positive");
    }
    const axis_geometry a = steps_geometry(s[0]);
    if (a.out == 0) {
      throw shape_error(nn::layer_label(*this) + ": kernel " + std::to_string(kernel_size) +
                        " does not fit input " + to_string(s) + " with '" + to_string(padding) +
                        "' padding");
    }
    return {{a.out, filters}};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    std::vector<nn::WeightSpec> w{
        {"kernel", {kernel_size, in[0][1], filters}, nn::Initializer::glorot_uniform()}};
    if (use_bias) w.push_back({"bias", {filters}, nn::Initializer::zeros()});
    return w;
  }
  nn::BackwardNeeds backward_needs() const override {
    return {false, nn::output_needed_for(activation)};
  }

  /// The geometry of a batch of shape x ([N, steps, C]) as an image of height 1.
  conv_geometry geometry(const Shape& x) const {
    const axis_geometry a = steps_geometry(x[1]);
    return {x[0], 1, x[1], x[2], 1, kernel_size, 1, strides, 0, a.pad_before, 1, a.out};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    const conv_geometry g = geometry(x.shape());
    const std::size_t rows = g.n * g.ow, k = g.kw * g.c;
    tensor cols(uninitialized, {rows, k});
    nn_backend_for<Dev>::im2col(x.storage(), g, cols.storage());
    tensor z(uninitialized, {g.n, g.ow, filters});
    detail::gemm_into(cols, 1, rows, k, *f.w[0], 1, k, filters, {}, z);
    if (f.saved) f.saved->tensors.push_back(std::move(cols));
    std::vector<tensor> out;
    out.push_back(
        nn::activate_output(activation, std::move(z), use_bias ? f.w[1] : nullptr, f.saved));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const conv_geometry g = geometry(b.in_shapes[0]);
    const std::size_t rows = g.n * g.ow, k = g.kw * g.c;
    tensor& dz = *b.dy[0];
    nn::activation_grad_in_place(activation, b.out[0],
                                 b.saved.tensors.size() > 1 ? &b.saved.tensors[1] : nullptr, dz);
    const tensor& cols = b.saved.tensors[0];
    b.dw[0] = tensor(uninitialized, b.w[0]->shape());
    detail::gemm_into(cols, 1, rows, k, dz, 1, rows, filters, {.transpose_a = true}, b.dw[0]);
    if (use_bias) b.dw[1] = detail::sum_rows(dz, rows, filters);
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

 private:
  /// A length from an integer or a list of one integer (Keras writes the tuple).
  static std::int64_t config_length(const nn::Config& c, const char* key) {
    const std::string layer = keras_class;
    if (c.is_array()) {
      if (c.as_array().size() != 1) {
        throw config_error("locus::" + layer + ": " + key + " must be one integer, found " +
                           c.dump());
      }
      return c.as_array()[0].as_int();
    }
    return c.as_int();
  }
  static std::size_t positive_length(const nn::Config& c, const char* key) {
    const std::int64_t v = config_length(c, key);
    if (v <= 0) {
      throw config_error(std::string("locus::Conv1D: ") + key + " must be positive, found " +
                         c.dump());
    }
    return static_cast<std::size_t>(v);
  }
};

}  // namespace locus::layers
