// Dense: y = act(x W + b) over the last axis.
#pragma once

#include <string>

#include "../../ops/linalg.hpp"
#include "activated.hpp"
#include "common.hpp"

namespace locus::layers {

struct Dense : nn::LayerSpec<Dense> {
  std::size_t units;
  locus::Activation activation = locus::Activation::linear;
  bool use_bias = true;

  explicit Dense(std::size_t u, locus::Activation a = locus::Activation::linear, bool bias = true)
      : units(u), activation(a), use_bias(bias) {}
  Dense(std::size_t u, const char* a) : units(u), activation(parse_activation(a)) {}

  static constexpr const char* keras_class = "Dense";
  nn::Config config() const override {
    using nn::Config;
    return nn::with_kernel_and_bias_keys(
        Config::make(
            {{"units", units}, {"activation", to_string(activation)}, {"use_bias", use_bias}}),
        /*activity_regularizer=*/false);
  }
  static Dense from_config(const nn::Config& c) {
    Dense d(nn::positive(c, "Dense", "units"), parse_activation(c.at("activation").as_string()),
            c.contains("use_bias") ? c.at("use_bias").as_bool() : true);
    // A quantized Keras Dense keeps int8 weights and scales, not the float kernel.
    if (const auto* q = c.find("quantization_config"); q && !q->is_null())
      throw config_error("locus::Dense: quantized Dense layers are not supported");
    return d;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    if (in[0].rank() == 0)
      throw shape_error(nn::layer_label(*this) + ": needs an input with at least one axis");
    Shape out = in[0];
    out[out.rank() - 1] = units;
    return {out};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    std::vector<nn::WeightSpec> w{
        {"kernel", {in[0].back(), units}, nn::Initializer::glorot_uniform()}};
    if (use_bias) w.push_back({"bias", {units}, nn::Initializer::zeros()});
    return w;
  }
  nn::BackwardNeeds backward_needs() const override {
    return {true, nn::output_needed_for(activation)};
  }
  nn::MovedGrad movable_output_grad() const override { return nn::movable_grad_of(activation); }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const Tensor<T, Dev>& x = f.x();
    const std::size_t in = x.shape().back(), rows = x.size() / in;
    Shape os = x.shape();
    os[os.rank() - 1] = units;
    Tensor<T, Dev> z(uninitialized, os);
    // Bias and (most) activations in the GEMM's write-back: one pass over the output.
    const nn::GemmEnding e = nn::gemm_ending(activation, f.training());
    detail::gemm_into(x, 1, rows, in, *f.w[0], 1, in, units, {}, z, T(1), T(0),
                      use_bias ? f.w[1] : nullptr, e.in_gemm);
    std::vector<Tensor<T, Dev>> out;
    out.push_back(nn::activate_output<T, Dev>(e.after, std::move(z), nullptr, f.saved));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = *b.in[0];
    const std::size_t in = x.shape().back(), rows = x.size() / in;
    tensor& dz = *b.dy[0];
    if (!b.output_grad_applied) {
      nn::activation_grad_in_place(activation, b.out[0],
                                   b.saved.tensors.empty() ? nullptr : &b.saved.tensors[0], dz);
    }
    // dW = x^T dz, and the bias gradient (the column sums of dz) from the same GEMM.
    b.dw[0] = tensor(uninitialized, {in, units});
    if (use_bias) b.dw[1] = tensor(uninitialized, {units});
    detail::gemm_into(x, 1, rows, in, dz, 1, rows, units, {.transpose_a = true}, b.dw[0], T(1),
                      T(0), nullptr, gemm_activation::linear, use_bias ? &b.dw[1] : nullptr);
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      dx[0] = tensor(uninitialized, x.shape());
      detail::gemm_into(dz, 1, rows, units, *b.w[0], 1, in, units, {.transpose_b = true}, dx[0]);
    }
    return dx;
  }
};

}  // namespace locus::layers
