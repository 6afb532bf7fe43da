// Losses: each computes its value (a rank-0 tensor on the model's device, averaged over
// the batch as Keras's default "sum_over_batch_size" reduction does) and its gradient
// with respect to the model output, in fused element-wise passes.
//
// Probabilities are clipped to [eps, 1 - eps] with Keras's eps = 1e-7; the gradient is
// zero where clipping is active, as the gradient of a clip is. From logits, the losses use
// the stable forms (log-sum-exp for softmax, max(z, 0) - z y + log(1 + e^-|z|) for
// sigmoid), whose gradients are (softmax(z) - y) / N and (sigmoid(z) - y) / N.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "../backend/nn_backend.hpp"
#include "../error.hpp"
#include "../ops/reduce.hpp"
#include "../tensor.hpp"
#include "activation.hpp"

namespace locus {

struct SparseCategoricalCrossentropy {
  bool from_logits = false;
  static constexpr const char* name = "sparse_categorical_crossentropy";
};
struct CategoricalCrossentropy {
  bool from_logits = false;
  static constexpr const char* name = "categorical_crossentropy";
};
struct BinaryCrossentropy {
  bool from_logits = false;
  static constexpr const char* name = "binary_crossentropy";
};
struct MeanSquaredError {
  static constexpr const char* name = "mean_squared_error";
};

template <class L>
inline constexpr bool is_loss_v =
    std::is_same_v<L, SparseCategoricalCrossentropy> || std::is_same_v<L, CategoricalCrossentropy> ||
    std::is_same_v<L, BinaryCrossentropy> || std::is_same_v<L, MeanSquaredError>;

/// Labels a loss takes: class indices for the sparse loss, targets shaped like the output
/// otherwise.
template <class Loss, class T>
using label_type_t =
    std::conditional_t<std::is_same_v<Loss, SparseCategoricalCrossentropy>, std::int32_t, T>;

namespace nn {

template <class T, class Dev>
struct loss_value {
  Tensor<T, Dev> value;  ///< rank 0: the mean loss of the batch
  Tensor<T, Dev> grad;   ///< dL/d(output), same shape as the output
};

inline constexpr double clip_epsilon = 1e-7;

/// One-hot rows of `labels` ([N] class indices) with `classes` columns.
template <class T, class Dev>
Tensor<T, Dev> one_hot(const Tensor<std::int32_t, Dev>& labels, std::size_t classes) {
  Tensor<T, Dev> out(uninitialized, {labels.size(), classes});
  nn_backend_for<Dev>::one_hot(labels.storage(), labels.size(), classes, out.storage());
  return out;
}

template <class T, class Dev>
Tensor<T, Dev> scaled(Tensor<T, Dev> t, double s) {
  t *= static_cast<T>(s);
  return t;
}

/// Cross-entropy between one-hot (or soft) targets `y` and the output `out` ([N, C]).
template <class T, class Dev>
loss_value<T, Dev> categorical_crossentropy(const Tensor<T, Dev>& out, const Tensor<T, Dev>& y,
                                            bool from_logits) {
  const std::size_t n = out.shape()[0];
  const double inv_n = 1.0 / static_cast<double>(n ? n : 1);
  if (from_logits) {
    const Tensor<T, Dev> shifted = out - max(out, -1, true);
    const Tensor<T, Dev> lse = log(sum(exp(shifted), -1, true));
    const Tensor<T, Dev> p = exp(shifted - lse);
    return {scaled(sum(y * (lse - shifted)), inv_n), (p * sum(y, -1, true) - y) * static_cast<T>(inv_n)};
  }
  const T eps = static_cast<T>(clip_epsilon);
  const Tensor<T, Dev> pc = minimum(maximum(out, eps), T(1) - eps);
  return {scaled(sum(-(y * log(pc))), inv_n),
          -(y * greater_equal(out, eps) * less_equal(out, T(1) - eps)) / (pc * static_cast<T>(n))};
}

template <class T, class Dev>
void require_batch_match(const Tensor<T, Dev>& out, std::size_t labels, const char* loss) {
  if (out.rank() == 0 || out.shape()[0] != labels) {
    throw shape_error(std::string("locus::") + loss + ": " + std::to_string(labels) +
                      " labels for an output of shape " + to_string(out.shape()));
  }
}

template <class T, class Dev>
loss_value<T, Dev> compute_loss(const SparseCategoricalCrossentropy& l, const Tensor<T, Dev>& out,
                                const Tensor<std::int32_t, Dev>& labels) {
  require_batch_match(out, labels.size(), l.name);
  if (out.rank() != 2) {
    throw shape_error("locus::sparse_categorical_crossentropy: expects an output of shape [N, classes], got " +
                      to_string(out.shape()));
  }
  return categorical_crossentropy(out, one_hot<T>(labels, out.shape()[1]), l.from_logits);
}

template <class T, class Dev>
loss_value<T, Dev> compute_loss(const CategoricalCrossentropy& l, const Tensor<T, Dev>& out,
                                const Tensor<T, Dev>& y) {
  if (!(out.shape() == y.shape()) || out.rank() != 2) {
    throw shape_error("locus::categorical_crossentropy: targets " + to_string(y.shape()) +
                      " and output " + to_string(out.shape()) + " must both be [N, classes]");
  }
  return categorical_crossentropy(out, y, l.from_logits);
}

template <class T, class Dev>
loss_value<T, Dev> compute_loss(const BinaryCrossentropy& l, const Tensor<T, Dev>& out,
                                const Tensor<T, Dev>& y) {
  if (!(out.shape() == y.shape())) {
    throw shape_error("locus::binary_crossentropy: targets " + to_string(y.shape()) +
                      " differ from output " + to_string(out.shape()));
  }
  const double inv = 1.0 / static_cast<double>(out.size() ? out.size() : 1);
  if (l.from_logits) {
    return {scaled(sum(relu(out) - out * y + log(T(1) + exp(-abs(out)))), inv),
            (sigmoid(out) - y) * static_cast<T>(inv)};
  }
  const T eps = static_cast<T>(clip_epsilon);
  const Tensor<T, Dev> pc = minimum(maximum(out, eps), T(1) - eps);
  return {scaled(sum(-(y * log(pc) + (T(1) - y) * log(T(1) - pc))), inv),
          ((T(1) - y) / (T(1) - pc) - y / pc) * greater_equal(out, eps) * less_equal(out, T(1) - eps) *
              static_cast<T>(inv)};
}

template <class T, class Dev>
loss_value<T, Dev> compute_loss(const MeanSquaredError& l, const Tensor<T, Dev>& out,
                                const Tensor<T, Dev>& y) {
  if (!(out.shape() == y.shape())) {
    throw shape_error(std::string("locus::") + l.name + ": targets " + to_string(y.shape()) +
                      " differ from output " + to_string(out.shape()));
  }
  const double inv = 1.0 / static_cast<double>(out.size() ? out.size() : 1);
  return {scaled(sum(square(out - y)), inv), (out - y) * static_cast<T>(2 * inv)};
}

}  // namespace nn
}  // namespace locus
