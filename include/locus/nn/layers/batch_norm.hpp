// BatchNormalization over the last axis (Keras defaults: momentum 0.99, epsilon 1e-3,
// learnable gamma and beta). A training call normalises with the batch statistics and
// updates the moving averages (biased variance, as Keras does); inference uses the moving
// averages, folded into one scale and one shift per channel.
//
// synchronized (Keras's flag of the same name): in a data-parallel step (Mirrored), the
// statistics are the global batch's, summed across the replicas in the forward pass and
// again in the backward pass, so that N replicas of m rows compute what one device does
// with N x m rows. Elsewhere (one model on one device) it changes nothing, as in Keras.
#pragma once

#include <cmath>
#include <string>

#include "../../ops/reduce.hpp"
#include "../../transfer.hpp"
#include "common.hpp"

namespace locus::layers {

struct BatchNormalization : nn::LayerSpec<BatchNormalization> {
  double momentum = 0.99;
  double epsilon = 1e-3;
  bool center = true;  ///< learn beta
  bool scale = true;   ///< learn gamma
  /// Statistics of the global batch across data-parallel replicas (see above).
  bool synchronized = false;
  BatchNormalization() = default;
  BatchNormalization(double m, double e) : momentum(m), epsilon(e) {}

  static constexpr const char* keras_class = "BatchNormalization";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"axis", -1},
                         {"momentum", momentum},
                         {"epsilon", epsilon},
                         {"center", center},
                         {"scale", scale},
                         {"beta_initializer", nn::Initializer::zeros().config()},
                         {"gamma_initializer", nn::Initializer::ones().config()},
                         {"moving_mean_initializer", nn::Initializer::zeros().config()},
                         {"moving_variance_initializer", nn::Initializer::ones().config()},
                         {"beta_regularizer", nullptr},
                         {"gamma_regularizer", nullptr},
                         {"beta_constraint", nullptr},
                         {"gamma_constraint", nullptr},
                         {"synchronized", synchronized}});
  }
  static BatchNormalization from_config(const nn::Config& c) {
    BatchNormalization b;
    if (const auto* a = c.find("axis")) {
      const nn::Config& ax = a->is_array() && a->as_array().size() == 1 ? a->as_array()[0] : *a;
      b.axis_ = ax.as_int();
    }
    if (const auto* m = c.find("momentum")) b.momentum = m->as_double();
    if (const auto* e = c.find("epsilon")) b.epsilon = e->as_double();
    if (const auto* v = c.find("center")) b.center = v->as_bool();
    if (const auto* v = c.find("scale")) b.scale = v->as_bool();
    if (const auto* v = c.find("synchronized")) b.synchronized = v->as_bool();
    if (!(b.epsilon > 0)) throw config_error("locus::BatchNormalization: epsilon must be positive");
    // Batch renormalisation changes what training computes; refused rather than ignored.
    if (const auto* r = c.find("renorm"); r && r->is_bool() && r->as_bool())
      throw config_error(
          "locus::BatchNormalization: renorm (batch renormalization) is not supported");
    return b;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    return nn::last_axis_normalization_shapes(*this, in[0], axis_);
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>& in) const override {
    const std::size_t c = in[0].back();
    std::vector<nn::WeightSpec> w = nn::scale_and_offset_weights(scale, center, c);
    w.push_back({"moving_mean", {c}, nn::Initializer::zeros(), false});
    w.push_back({"moving_variance", {c}, nn::Initializer::ones(), false});
    return w;
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    const std::size_t c = x.shape().back(), rows = c ? x.size() / c : 0;
    const T eps = static_cast<T>(epsilon);
    const tensor* gamma = scale ? f.w[0] : nullptr;
    const tensor* beta = center ? f.w[scale ? 1 : 0] : nullptr;
    std::vector<tensor> out;
    if (!f.training()) {
      const tensor& mm = *f.w[f.w.size() - 2];
      const tensor& mv = *f.w[f.w.size() - 1];
      tensor k = T(1) / sqrt(mv + eps);
      if (gamma) k *= *gamma;
      tensor shift = -(mm * k);
      if (beta) shift += *beta;
      out.push_back(f.in[0].take());
      out[0] = out[0] * k + shift;
      return out;
    }
    // Synchronized across replicas: sums over every replica's rows (one all-reduce for the
    // sums and the row count, one for the squared deviations from the global mean).
    const nn::CrossReplica<Dev, T>* replicas = synchronized ? f.saved->replicas : nullptr;
    tensor mean = detail::sum_rows(x, rows, c);
    double total = static_cast<double>(rows);
    if (replicas) {
      tensor count = tensor::zeros({1}) + static_cast<T>(rows);
      replicas->sum({&mean, &count});
      total = static_cast<double>(to<Device<CPU>>(count).item());
      f.saved->scalars = {static_cast<double>(rows), total};
    }
    const T inv_rows = T(1) / static_cast<T>(total > 0 ? total : 1);
    mean *= inv_rows;
    tensor centered = x - mean;
    tensor var = detail::sum_rows(tensor(square(centered)), rows, c);
    if (replicas) replicas->sum({&var});
    var *= inv_rows;
    tensor inv_std = T(1) / sqrt(var + eps);
    tensor xhat = std::move(centered);
    xhat *= inv_std;
    const T m = static_cast<T>(momentum);
    tensor& mm = *f.state[0];
    tensor& mv = *f.state[1];
    mm = mm * m + mean * (T(1) - m);
    mv = mv * m + var * (T(1) - m);
    if (gamma && beta) {
      out.push_back(xhat * *gamma + *beta);
    } else if (gamma) {
      out.push_back(xhat * *gamma);
    } else if (beta) {
      out.push_back(xhat + *beta);
    } else {
      out.push_back(xhat);
    }
    f.saved->tensors.push_back(std::move(xhat));
    f.saved->tensors.push_back(std::move(inv_std));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const tensor& dy = *b.dy[0];
    const tensor& xhat = b.saved.tensors[0];
    const tensor& inv_std = b.saved.tensors[1];
    const std::size_t c = dy.shape().back(), rows = c ? dy.size() / c : 0;
    tensor dbeta = detail::sum_rows(dy, rows, c);
    tensor dgamma = detail::sum_rows(tensor(dy * xhat), rows, c);
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) {
      // dx = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
      const T inv_rows = T(1) / static_cast<T>(rows ? rows : 1);
      tensor k = scale ? tensor(*b.w[0] * inv_std) : inv_std;
      if (b.saved.replicas && !b.saved.scalars.empty()) {
        // Synchronized: the sums run over the global batch. Each replica's dy is the
        // gradient of its own rows' mean loss, m/M of the global one, so its share of the
        // sums is weighted by m/M; dx comes back in the replica's units (times M/m).
        const T share = static_cast<T>(b.saved.scalars[0] / b.saved.scalars[1]);
        tensor s1 = dbeta * share;
        tensor s2 = dgamma * share;
        b.saved.replicas->sum({&s1, &s2});
        dx[0] = k * (dy - s1 * inv_rows - xhat * (s2 * inv_rows));
      } else {
        dx[0] = k * (dy - dbeta * inv_rows - xhat * (dgamma * inv_rows));
      }
    }
    std::size_t j = 0;
    if (scale) b.dw[j++] = std::move(dgamma);
    if (center) b.dw[j++] = std::move(dbeta);
    return dx;
  }

 private:
  std::int64_t axis_ = -1;
};

}  // namespace locus::layers
