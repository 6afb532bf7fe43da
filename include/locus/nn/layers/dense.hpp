// Dense: y = act(x W + b) over the last axis.
#pragma once

#include <string>

#include "../../error.hpp"
#include "../../ops/linalg.hpp"
#include "../../ops/reduce.hpp"
#include "../activation.hpp"
#include "../layer.hpp"
#include "initializers.hpp"
#include "specs.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
class DenseLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit DenseLayer(const layers::Dense& cfg) : cfg_(cfg) {}

  std::string type_name() const override { return "Dense"; }

  Shape build(const Shape& in, std::uint64_t seed) override {
    if (in.rank() == 0) throw shape_error("locus::Dense: needs an input with at least one axis");
    in_ = in.back();
    kernel_.name = "kernel";
    kernel_.value = glorot_uniform<T, Dev>({in_, cfg_.units}, in_, cfg_.units, seed);
    if (cfg_.use_bias) {
      bias_.name = "bias";
      bias_.value = tensor::zeros({cfg_.units});
    }
    Shape out = in;
    out[out.rank() - 1] = cfg_.units;
    return out;
  }

  tensor forward(const tensor& x, bool) override {
    const std::size_t rows = x.size() / in_;
    tensor z(uninitialized, out_shape(x.shape()));
    detail::gemm_into(x, 1, rows, in_, kernel_.value, 1, in_, cfg_.units, {}, z);
    if (cfg_.use_bias) return bias_activate(cfg_.activation, std::move(z), bias_.value);
    return activate(cfg_.activation, std::move(z));
  }

  tensor backward(const tensor& x, const tensor& y, const tensor& dy, bool need_dx) override {
    const std::size_t rows = x.size() / in_;
    const tensor dz = activation_backward(cfg_.activation, y, dy);
    kernel_.grad = tensor(uninitialized, {in_, cfg_.units});
    detail::gemm_into(x, 1, rows, in_, dz, 1, rows, cfg_.units, {.transpose_a = true}, kernel_.grad);
    if (cfg_.use_bias) bias_.grad = detail::sum_rows(dz, rows, cfg_.units);
    if (!need_dx) return tensor();
    tensor dx(uninitialized, x.shape());
    detail::gemm_into(dz, 1, rows, cfg_.units, kernel_.value, 1, in_, cfg_.units,
                      {.transpose_b = true}, dx);
    return dx;
  }

  std::vector<Parameter<Dev, T>*> parameters() override {
    if (cfg_.use_bias) return {&kernel_, &bias_};
    return {&kernel_};
  }

 private:
  Shape out_shape(Shape s) const {
    s[s.rank() - 1] = cfg_.units;
    return s;
  }
  layers::Dense cfg_;
  std::size_t in_ = 0;
  Parameter<Dev, T> kernel_, bias_;
};

}  // namespace locus::nn
