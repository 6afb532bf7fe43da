// LayerNormalization over the last axis (Keras 3 defaults: epsilon 1e-3, learnable gamma
// and beta). Every sample's vector along the last axis is normalised with its own mean and
// (biased) variance, so training and inference compute the same thing and there is no
// state:  xhat = (x - mean) / sqrt(var + eps),  y = gamma * xhat + beta.
//
// Backward, per vector of C elements, with g = dy * gamma and s = 1 / sqrt(var + eps):
//   dx = s * (g - mean(g) - xhat * mean(g * xhat)),
//   dgamma = sum over vectors of dy * xhat,  dbeta = sum over vectors of dy.
// (mean(x) moves every element alike, which removes mean(g); var's dependence on x moves
// along xhat, which removes the projection of g on xhat.) A training call keeps xhat and s.
#pragma once

#include <cmath>
#include <string>

#include "../../ops/reduce.hpp"
#include "common.hpp"

namespace locus::layers {

struct LayerNormalization : nn::LayerSpec<LayerNormalization> {
  double epsilon = 1e-3;
  bool center = true;  ///< learn beta
  bool scale = true;   ///< learn gamma
  LayerNormalization() = default;
  explicit LayerNormalization(double eps, bool center_ = true, bool scale_ = true)
      : epsilon(eps), center(center_), scale(scale_) {}

  static constexpr const char* keras_class = "LayerNormalization";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"axis", axis_},
                         {"epsilon", epsilon},
                         {"center", center},
                         {"scale", scale},
                         {"rms_scaling", false},
                         {"beta_initializer", nn::Initializer::zeros().config()},
                         {"gamma_initializer", nn::Initializer::ones().config()},
                         {"beta_regularizer", nullptr},
                         {"gamma_regularizer", nullptr},
                         {"beta_constraint", nullptr},
                         {"gamma_constraint", nullptr}});
  }
  static LayerNormalization from_config(const nn::Config& c) {
    LayerNormalization l;
    if (const auto* a = c.find("axis")) {
      // An integer, or the list a built Keras layer writes ([2] for [N, T, C] input).
      if (a->is_array() && a->as_array().size() != 1) {
        throw config_error("locus::LayerNormalization: axis " + a->dump() +
                           " is not supported; locus normalises the last axis only");
      }
      l.axis_ = (a->is_array() ? a->as_array()[0] : *a).as_int();
      if (l.axis_ == 0 || l.axis_ < -1) {
        throw config_error("locus::LayerNormalization: axis " + a->dump() +
                           " is not supported; locus normalises the last axis only");
      }
    }
    if (const auto* e = c.find("epsilon")) l.epsilon = e->as_double();
    if (const auto* v = c.find("center")) l.center = v->as_bool();
    if (const auto* v = c.find("scale")) l.scale = v->as_bool();
    if (const auto* r = c.find("rms_scaling"); r && r->as_bool()) {
      throw config_error("locus::LayerNormalization: rms_scaling is not supported");
    }
    if (!(l.epsilon > 0)) throw config_error("locus::LayerNormalization: epsilon must be positive");
    return l;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    return nn::last_axis_normalization_shapes(*this, in[0], axis_);
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    return nn::scale_and_offset_weights(scale, center, in[0].back());
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  /// The axis as configured (-1, or the last axis counted with the batch axis).
  std::int64_t axis() const { return axis_; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor* gamma = scale ? f.w[0] : nullptr;
    const tensor* beta = center ? f.w[scale ? 1 : 0] : nullptr;
    tensor xhat = f.in[0].take();
    xhat -= tensor(mean(xhat, -1, true));
    const tensor inv_std = T(1) / sqrt(mean(square(xhat), -1, true) + static_cast<T>(epsilon));
    xhat *= inv_std;
    std::vector<tensor> out;
    if (gamma && beta) {
      out.push_back(xhat * *gamma + *beta);
    } else if (gamma) {
      out.push_back(xhat * *gamma);
    } else if (beta) {
      out.push_back(xhat + *beta);
    } else {
      out.push_back(xhat);
    }
    if (f.saved) {
      f.saved->tensors.push_back(std::move(xhat));
      f.saved->tensors.push_back(inv_std);
    }
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const tensor& dy = *b.dy[0];
    const tensor& xhat = b.saved.tensors[0];
    const tensor& inv_std = b.saved.tensors[1];
    const std::size_t c = dy.shape().back(), rows = c ? dy.size() / c : 0;
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      const tensor g = scale ? tensor(dy * *b.w[0]) : dy;
      const tensor g_mean = mean(g, -1, true);
      const tensor gx_mean = mean(g * xhat, -1, true);
      dx[0] = inv_std * (g - g_mean - xhat * gx_mean);
    }
    std::size_t j = 0;
    if (scale) b.dw[j++] = detail::sum_rows(tensor(dy * xhat), rows, c);
    if (center) b.dw[j++] = detail::sum_rows(dy, rows, c);
    return dx;
  }

 private:
  std::int64_t axis_ = -1;
};

}  // namespace locus::layers
