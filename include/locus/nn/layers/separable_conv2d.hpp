// SeparableConv2D: a depthwise convolution (depth_multiplier M filters per input channel)
// followed by a pointwise 1x1 convolution to `filters` channels, then bias and activation
// (Keras's separable_conv). Weights in Keras's order: depthwise_kernel [KH, KW, C, M],
// pointwise_kernel [1, 1, C*M, F], bias [F].
//
// The depthwise step is the backend's depthwise kernel; the pointwise step is one GEMM of
// the [N*OH*OW, C*M] depthwise output with the [C*M, F] pointwise matrix. A training call
// keeps the depthwise output D for the backward pass:
//   dP = D^T dZ,  dD = dZ P^T,  then the depthwise gradients of dD (kernel and input).
#pragma once

#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../ops/linalg.hpp"
#include "../../ops/reduce.hpp"
#include "activated.hpp"
#include "common.hpp"
#include "depthwise_conv2d.hpp"

namespace locus::layers {

struct SeparableConv2D : nn::LayerSpec<SeparableConv2D> {
  std::size_t filters;
  Window kernel_size;
  locus::Activation activation = locus::Activation::linear;
  Window strides{1, 1};
  Padding padding = Padding::valid;
  std::size_t depth_multiplier = 1;
  bool use_bias = true;

  SeparableConv2D(std::size_t f, Window k, locus::Activation a = locus::Activation::linear,
                  Window s = {1, 1}, Padding p = Padding::valid, std::size_t multiplier = 1,
                  bool bias = true)
      : filters(f),
        kernel_size(k),
        activation(a),
        strides(s),
        padding(p),
        depth_multiplier(multiplier),
        use_bias(bias) {}
  SeparableConv2D(std::size_t f, Window k, const char* a)
      : filters(f), kernel_size(k), activation(parse_activation(a)) {}
  SeparableConv2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  SeparableConv2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }
  SeparableConv2D& with_depth_multiplier(std::size_t m) {
    depth_multiplier = m;
    return *this;
  }

  static constexpr const char* keras_class = "SeparableConv2D";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"depth_multiplier", depth_multiplier},
                         {"filters", filters},
                         {"kernel_size", nn::window_config(kernel_size)},
                         {"strides", nn::window_config(strides)},
                         {"padding", to_string(padding)},
                         {"data_format", "channels_last"},
                         {"dilation_rate", Config::list({1, 1})},
                         {"activation", to_string(activation)},
                         {"use_bias", use_bias},
                         {"depthwise_initializer", nn::Initializer::glorot_uniform().config()},
                         {"pointwise_initializer", nn::Initializer::glorot_uniform().config()},
                         {"bias_initializer", nn::Initializer::zeros().config()},
                         {"depthwise_regularizer", nullptr},
                         {"pointwise_regularizer", nullptr},
                         {"bias_regularizer", nullptr},
                         {"activity_regularizer", nullptr},
                         {"depthwise_constraint", nullptr},
                         {"pointwise_constraint", nullptr},
                         {"bias_constraint", nullptr}});
  }
  static SeparableConv2D from_config(const nn::Config& c) {
    const nn::DepthwiseWindow w = nn::DepthwiseWindow::from_config(c, keras_class);
    SeparableConv2D l(nn::positive(c, keras_class, "filters"), w.kernel_size,
                      parse_activation(c.at("activation").as_string()), w.strides, w.padding,
                      w.depth_multiplier);
    if (const auto* b = c.find("use_bias")) l.use_bias = b->as_bool();
    return l;
  }

  nn::DepthwiseWindow window() const { return {kernel_size, strides, padding, depth_multiplier}; }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    return {window().output_shape(*this, in[0], filters)};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    const std::size_t c = in[0][2];
    std::vector<nn::WeightSpec> w{
        {"depthwise_kernel", window().kernel_shape(c), nn::Initializer::glorot_uniform()},
        {"pointwise_kernel",
         {1, 1, c * depth_multiplier, filters},
         nn::Initializer::glorot_uniform()}};
    if (use_bias) w.push_back({"bias", {filters}, nn::Initializer::zeros()});
    return w;
  }
  // The depthwise kernel's gradient reads the input.
  nn::BackwardNeeds backward_needs() const override {
    return {true, nn::output_needed_for(activation)};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    const conv_geometry g = window().geometry(x.shape());
    const std::size_t rows = g.n * g.oh * g.ow, cm = g.c * depth_multiplier;
    tensor d(uninitialized, {g.n, g.oh, g.ow, cm});
    nn_backend_for<Dev>::depthwise_conv2d_forward(x.storage(), f.w[0]->storage(), g,
                                                  depth_multiplier, d.storage());
    tensor z(uninitialized, {g.n, g.oh, g.ow, filters});
    detail::gemm_into(d, 1, rows, cm, *f.w[1], 1, cm, filters, {}, z);
    if (f.saved) f.saved->tensors.push_back(std::move(d));
    std::vector<tensor> out;
    out.push_back(
        nn::activate_output(activation, std::move(z), use_bias ? f.w[2] : nullptr, f.saved));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const conv_geometry g = window().geometry(b.in_shapes[0]);
    const std::size_t rows = g.n * g.oh * g.ow, cm = g.c * depth_multiplier;
    tensor& dz = *b.dy[0];
    nn::activation_grad_in_place(activation, b.out[0],
                                 b.saved.tensors.size() > 1 ? &b.saved.tensors[1] : nullptr, dz);
    const tensor& d = b.saved.tensors[0];
    b.dw[1] = tensor(uninitialized, b.w[1]->shape());
    detail::gemm_into(d, 1, rows, cm, dz, 1, rows, filters, {.transpose_a = true}, b.dw[1]);
    if (use_bias) b.dw[2] = detail::sum_rows(dz, rows, filters);
    // The depthwise output is not needed after dP: its buffer takes dD.
    tensor dd = std::move(b.saved.tensors[0]);
    detail::gemm_into(dz, 1, rows, filters, *b.w[1], 1, cm, filters, {.transpose_b = true}, dd);
    b.dw[0] = tensor(uninitialized, b.w[0]->shape());
    nn_backend_for<Dev>::depthwise_conv2d_backward_kernel(b.in[0]->storage(), dd.storage(), g,
                                                          depth_multiplier, b.dw[0].storage());
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      dx[0] = tensor(uninitialized, b.in_shapes[0]);
      nn_backend_for<Dev>::depthwise_conv2d_backward_input(dd.storage(), b.w[0]->storage(), g,
                                                           depth_multiplier, dx[0].storage());
    }
    return dx;
  }
};

}  // namespace locus::layers
