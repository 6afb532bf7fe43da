// BatchNormalization over the last axis (Keras defaults: momentum 0.99, epsilon 1e-3,
// learnable gamma and beta). Training normalises with the batch statistics and updates
// moving averages (biased variance, as Keras does); inference uses the moving averages.
#pragma once

#include <cmath>
#include <string>

#include "../../ops/reduce.hpp"
#include "../layer.hpp"
#include "specs.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
class BatchNormLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit BatchNormLayer(const layers::BatchNormalization& cfg) : cfg_(cfg) {}

  std::string type_name() const override { return "BatchNormalization"; }

  Shape build(const Shape& in, std::uint64_t) override {
    if (in.rank() == 0) throw shape_error("locus::BatchNormalization: needs at least one axis");
    c_ = in.back();
    gamma_ = {"gamma", tensor::ones({c_}), tensor()};
    beta_ = {"beta", tensor::zeros({c_}), tensor()};
    moving_mean_ = tensor::zeros({c_});
    moving_var_ = tensor::ones({c_});
    return in;
  }

  tensor forward(const tensor& x, bool training) override {
    const T eps = static_cast<T>(cfg_.epsilon);
    if (!training) {
      return (x - moving_mean_) / sqrt(moving_var_ + eps) * gamma_.value + beta_.value;
    }
    const std::size_t rows = x.size() / c_;
    const T inv_rows = T(1) / static_cast<T>(rows);
    tensor mean = detail::sum_rows(x, rows, c_);
    mean *= inv_rows;
    tensor centered = x - mean;
    tensor var = detail::sum_rows(tensor(square(centered)), rows, c_);
    var *= inv_rows;
    inv_std_ = T(1) / sqrt(var + eps);
    xhat_ = centered * inv_std_;
    const T m = static_cast<T>(cfg_.momentum);
    moving_mean_ = moving_mean_ * m + mean * (T(1) - m);
    moving_var_ = moving_var_ * m + var * (T(1) - m);
    return xhat_ * gamma_.value + beta_.value;
  }

  tensor backward(const tensor& x, const tensor&, const tensor& dy, bool need_dx) override {
    const std::size_t rows = x.size() / c_;
    beta_.grad = detail::sum_rows(dy, rows, c_);
    gamma_.grad = detail::sum_rows(tensor(dy * xhat_), rows, c_);
    if (!need_dx) return tensor();
    // dx = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
    const T inv_rows = T(1) / static_cast<T>(rows);
    return (gamma_.value * inv_std_) *
           (dy - beta_.grad * inv_rows - xhat_ * (gamma_.grad * inv_rows));
  }

  std::vector<Parameter<Dev, T>*> parameters() override { return {&gamma_, &beta_}; }
  std::vector<std::pair<std::string, tensor*>> state() override {
    return {{"moving_mean", &moving_mean_}, {"moving_variance", &moving_var_}};
  }

 private:
  layers::BatchNormalization cfg_;
  std::size_t c_ = 0;
  Parameter<Dev, T> gamma_, beta_;
  tensor moving_mean_, moving_var_, inv_std_, xhat_;
};

}  // namespace locus::nn
