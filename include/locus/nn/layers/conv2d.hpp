// Conv2D over NHWC input, as im2col followed by one GEMM with the [KH*KW*C, F] kernel
// matrix; the GEMM output is already NHWC. Backward reuses the columns kept from the
// training forward pass: dW = cols^T dZ, dcols = dZ W^T, dx = col2im(dcols).
#pragma once

#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../error.hpp"
#include "../../ops/linalg.hpp"
#include "../../ops/reduce.hpp"
#include "../activation.hpp"
#include "../layer.hpp"
#include "initializers.hpp"
#include "specs.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
class Conv2DLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit Conv2DLayer(const layers::Conv2D& cfg) : cfg_(cfg) {}

  std::string type_name() const override { return "Conv2D"; }

  Shape build(const Shape& in, std::uint64_t seed) override {
    if (in.rank() != 3) {
      throw shape_error("locus::Conv2D: expects per-sample input [height, width, channels], got " +
                        to_string(in));
    }
    if (cfg_.strides.h == 0 || cfg_.strides.w == 0 || cfg_.kernel_size.h == 0 || cfg_.kernel_size.w == 0) {
      throw argument_error("locus::Conv2D: kernel size and strides must be positive");
    }
    in_ = in;
    const bool same = cfg_.padding == Padding::same;
    ax_h_ = spatial_axis(in[0], cfg_.kernel_size.h, cfg_.strides.h, same);
    ax_w_ = spatial_axis(in[1], cfg_.kernel_size.w, cfg_.strides.w, same);
    if (ax_h_.out == 0 || ax_w_.out == 0) {
      throw shape_error("locus::Conv2D: kernel " + std::to_string(cfg_.kernel_size.h) + "x" +
                        std::to_string(cfg_.kernel_size.w) + " does not fit input " + to_string(in) +
                        " with 'valid' padding");
    }
    k_ = cfg_.kernel_size.h * cfg_.kernel_size.w * in[2];
    kernel_.name = "kernel";
    kernel_.value = glorot_uniform<T, Dev>({cfg_.kernel_size.h, cfg_.kernel_size.w, in[2], cfg_.filters},
                                           k_, cfg_.kernel_size.h * cfg_.kernel_size.w * cfg_.filters, seed);
    if (cfg_.use_bias) {
      bias_.name = "bias";
      bias_.value = tensor::zeros({cfg_.filters});
    }
    return {ax_h_.out, ax_w_.out, cfg_.filters};
  }

  tensor forward(const tensor& x, bool training) override {
    const conv_geometry g = geometry(x.shape()[0]);
    const std::size_t rows = g.n * g.oh * g.ow;
    tensor cols(uninitialized, {rows, k_});
    nn_backend_for<Dev>::im2col(x.storage(), g, cols.storage());
    tensor z(uninitialized, {g.n, g.oh, g.ow, cfg_.filters});
    detail::gemm_into(cols, 1, rows, k_, kernel_.value, 1, k_, cfg_.filters, {}, z);
    if (training) cols_ = std::move(cols);
    if (cfg_.use_bias) return bias_activate(cfg_.activation, std::move(z), bias_.value);
    return activate(cfg_.activation, std::move(z));
  }

  tensor backward(const tensor& x, const tensor& y, const tensor& dy, bool need_dx) override {
    const conv_geometry g = geometry(x.shape()[0]);
    const std::size_t rows = g.n * g.oh * g.ow;
    const tensor dz = activation_backward(cfg_.activation, y, dy);
    kernel_.grad = tensor(uninitialized, kernel_.value.shape());
    detail::gemm_into(cols_, 1, rows, k_, dz, 1, rows, cfg_.filters, {.transpose_a = true}, kernel_.grad);
    if (cfg_.use_bias) bias_.grad = detail::sum_rows(dz, rows, cfg_.filters);
    if (!need_dx) return tensor();
    tensor dcols(uninitialized, {rows, k_});
    detail::gemm_into(dz, 1, rows, cfg_.filters, kernel_.value, 1, k_, cfg_.filters,
                      {.transpose_b = true}, dcols);
    tensor dx(uninitialized, x.shape());
    nn_backend_for<Dev>::col2im(dcols.storage(), g, dx.storage());
    return dx;
  }

  std::vector<Parameter<Dev, T>*> parameters() override {
    if (cfg_.use_bias) return {&kernel_, &bias_};
    return {&kernel_};
  }

 private:
  conv_geometry geometry(std::size_t n) const {
    return {n,       in_[0],          in_[1],          in_[2],         cfg_.kernel_size.h, cfg_.kernel_size.w,
            cfg_.strides.h, cfg_.strides.w, ax_h_.pad_before, ax_w_.pad_before, ax_h_.out,          ax_w_.out};
  }

  layers::Conv2D cfg_;
  Shape in_;
  axis_geometry ax_h_{}, ax_w_{};
  std::size_t k_ = 0;
  Parameter<Dev, T> kernel_, bias_;
  tensor cols_;
};

}  // namespace locus::nn
