// DepthwiseConv2D over NHWC input: every input channel c is convolved with its own
// depth_multiplier (M) filters, giving output channels c*M + m (Keras's depthwise_conv).
// The kernel is [KH, KW, C, M], named "kernel" as in Keras 3 (tf.keras 2 called it
// "depthwise_kernel"), the bias [C*M]. Forward and both gradients are backend kernels
// (nn_backend.hpp: depthwise_conv2d_*), since an im2col + GEMM would waste a factor C of
// work on a block-diagonal kernel matrix. A training call keeps nothing of its own: the
// kernel gradient reads the layer's input, which the model keeps (backward_needs).
#pragma once

#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../ops/reduce.hpp"
#include "activated.hpp"
#include "common.hpp"

namespace locus::nn {

/// The settings DepthwiseConv2D and SeparableConv2D share: window, strides, padding and
/// depth multiplier, their Keras config entries and the depthwise geometry.
struct DepthwiseWindow {
  Window kernel_size;
  Window strides{1, 1};
  Padding padding = Padding::valid;
  std::size_t depth_multiplier = 1;

  /// Reads kernel_size, strides, padding and depth_multiplier; refuses channels_first,
  /// dilation other than 1 and a non-positive multiplier (config_error naming `layer`).
  static DepthwiseWindow from_config(const Config& c, const std::string& layer) {
    require_channels_last(c, layer);
    if (const auto* d = c.find("dilation_rate");
        d && config_pair(*d) != std::pair<std::size_t, std::size_t>{1, 1}) {
      throw config_error("locus::" + layer + ": dilation_rate " + d->dump() +
                         " is not supported (only 1)");
    }
    DepthwiseWindow w;
    w.kernel_size = window_from_config(c.at("kernel_size"), layer, "kernel_size");
    if (const auto* s = c.find("strides")) w.strides = window_from_config(*s, layer, "strides");
    if (const auto* p = c.find("padding")) w.padding = padding_from_config(*p, layer);
    if (c.contains("depth_multiplier")) w.depth_multiplier = positive(c, layer, "depth_multiplier");
    return w;
  }

  /// Per-sample output shape [OH, OW, channels] for per-sample input `s`, or shape_error.
  Shape output_shape(const Layer& l, const Shape& s, std::size_t channels) const {
    if (s.rank() != 3) {
      throw shape_error(layer_label(l) +
                        ": expects per-sample input [height, width, channels], got " +
                        to_string(s));
    }
    if (strides.h == 0 || strides.w == 0 || kernel_size.h == 0 || kernel_size.w == 0 ||
        depth_multiplier == 0 || channels == 0) {
      throw argument_error(
          layer_label(l) +
          ": kernel size, strides, depth multiplier and output channels must be positive");
    }
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(s[0], kernel_size.h, strides.h, same);
    const axis_geometry w = spatial_axis(s[1], kernel_size.w, strides.w, same);
    if (h.out == 0 || w.out == 0) {
      throw shape_error(layer_label(l) + ": kernel " + std::to_string(kernel_size.h) + "x" +
                        std::to_string(kernel_size.w) + " does not fit input " + to_string(s) +
                        " with 'valid' padding");
    }
    return {h.out, w.out, channels};
  }

  /// The depthwise geometry of a batch of shape x (NHWC).
  conv_geometry geometry(const Shape& x) const {
    const bool same = padding == Padding::same;
    const axis_geometry h = spatial_axis(x[1], kernel_size.h, strides.h, same);
    const axis_geometry w = spatial_axis(x[2], kernel_size.w, strides.w, same);
    return {x[0],      x[1],      x[2],         x[3],         kernel_size.h, kernel_size.w,
            strides.h, strides.w, h.pad_before, w.pad_before, h.out,         w.out};
  }

  Shape kernel_shape(std::size_t channels) const {
    return {kernel_size.h, kernel_size.w, channels, depth_multiplier};
  }
};

}  // namespace locus::nn

namespace locus::layers {

struct DepthwiseConv2D : nn::LayerSpec<DepthwiseConv2D> {
  Window kernel_size;
  std::size_t depth_multiplier = 1;
  locus::Activation activation = locus::Activation::linear;
  Window strides{1, 1};
  Padding padding = Padding::valid;
  bool use_bias = true;

  // No (kernel, multiplier) form: `DepthwiseConv2D({3, 3})` would then also read as a copy
  // of a layer built from (3, 3). The multiplier comes with an activation or the setter.
  explicit DepthwiseConv2D(Window k) : kernel_size(k) {}
  DepthwiseConv2D(Window k, std::size_t multiplier, locus::Activation a, Window s = {1, 1},
                  Padding p = Padding::valid, bool bias = true)
      : kernel_size(k),
        depth_multiplier(multiplier),
        activation(a),
        strides(s),
        padding(p),
        use_bias(bias) {}
  DepthwiseConv2D(Window k, std::size_t multiplier, const char* a)
      : kernel_size(k), depth_multiplier(multiplier), activation(parse_activation(a)) {}
  DepthwiseConv2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  DepthwiseConv2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }
  DepthwiseConv2D& with_depth_multiplier(std::size_t m) {
    depth_multiplier = m;
    return *this;
  }

  static constexpr const char* keras_class = "DepthwiseConv2D";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"kernel_size", nn::window_config(kernel_size)},
                         {"strides", nn::window_config(strides)},
                         {"padding", to_string(padding)},
                         {"data_format", "channels_last"},
                         {"dilation_rate", Config::list({1, 1})},
                         {"depth_multiplier", depth_multiplier},
                         {"activation", to_string(activation)},
                         {"use_bias", use_bias},
                         {"depthwise_initializer", nn::Initializer::glorot_uniform().config()},
                         {"bias_initializer", nn::Initializer::zeros().config()},
                         {"depthwise_regularizer", nullptr},
                         {"bias_regularizer", nullptr},
                         {"activity_regularizer", nullptr},
                         {"depthwise_constraint", nullptr},
                         {"bias_constraint", nullptr}});
  }
  static DepthwiseConv2D from_config(const nn::Config& c) {
    const nn::DepthwiseWindow w = nn::DepthwiseWindow::from_config(c, keras_class);
    DepthwiseConv2D l(w.kernel_size, w.depth_multiplier,
                      parse_activation(c.at("activation").as_string()), w.strides, w.padding);
    if (const auto* b = c.find("use_bias")) l.use_bias = b->as_bool();
    return l;
  }

  nn::DepthwiseWindow window() const { return {kernel_size, strides, padding, depth_multiplier}; }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const std::size_t c = in[0].rank() == 3 ? in[0][2] : 1;
    return {window().output_shape(*this, in[0], c * depth_multiplier)};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    const std::size_t c = in[0][2];
    std::vector<nn::WeightSpec> w{
        {"kernel", window().kernel_shape(c), nn::Initializer::glorot_uniform()}};
    if (use_bias) w.push_back({"bias", {c * depth_multiplier}, nn::Initializer::zeros()});
    return w;
  }
  // The kernel gradient reads the input.
  nn::BackwardNeeds backward_needs() const override {
    return {true, nn::output_needed_for(activation)};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    const conv_geometry g = window().geometry(x.shape());
    tensor z(uninitialized, {g.n, g.oh, g.ow, g.c * depth_multiplier});
    nn_backend_for<Dev>::depthwise_conv2d_forward(x.storage(), f.w[0]->storage(), g,
                                                  depth_multiplier, z.storage());
    std::vector<tensor> out;
    out.push_back(
        nn::activate_output(activation, std::move(z), use_bias ? f.w[1] : nullptr, f.saved));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const conv_geometry g = window().geometry(b.in_shapes[0]);
    const std::size_t cm = g.c * depth_multiplier;
    tensor& dz = *b.dy[0];
    nn::activation_grad_in_place(activation, b.out[0],
                                 b.saved.tensors.empty() ? nullptr : &b.saved.tensors[0], dz);
    b.dw[0] = tensor(uninitialized, b.w[0]->shape());
    nn_backend_for<Dev>::depthwise_conv2d_backward_kernel(b.in[0]->storage(), dz.storage(), g,
                                                          depth_multiplier, b.dw[0].storage());
    if (use_bias) b.dw[1] = detail::sum_rows(dz, g.n * g.oh * g.ow, cm);
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      dx[0] = tensor(uninitialized, b.in_shapes[0]);
      nn_backend_for<Dev>::depthwise_conv2d_backward_input(dz.storage(), b.w[0]->storage(), g,
                                                           depth_multiplier, dx[0].storage());
    }
    return dx;
  }
};

}  // namespace locus::layers
