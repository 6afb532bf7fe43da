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
#include "../transfer.hpp"
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
struct MeanAbsoluteError {
  static constexpr const char* name = "mean_absolute_error";
};

template <class L>
inline constexpr bool is_loss_v =
    std::is_same_v<L, SparseCategoricalCrossentropy> || std::is_same_v<L, CategoricalCrossentropy> ||
    std::is_same_v<L, BinaryCrossentropy> || std::is_same_v<L, MeanSquaredError> ||
    std::is_same_v<L, MeanAbsoluteError>;

/// Labels a loss takes: class indices for the sparse loss, targets shaped like the output
/// otherwise.
template <class Loss, class T>
using label_type_t =
    std::conditional_t<std::is_same_v<Loss, SparseCategoricalCrossentropy>, std::int32_t, T>;

/// Whether `Loss` takes labels of element type L for a model computing in T.
template <class Loss, class L, class T>
inline constexpr bool loss_takes_labels_v =
    is_loss_v<Loss> && (std::is_same_v<L, label_type_t<Loss, T>>);

namespace detail {

/// Does not compile, with one sentence saying what to do, when `Loss` does not take labels
/// of element type L for a model computing in T. Exactly one assertion fails per mistake.
template <class Loss, class L, class T>
constexpr void require_loss_labels() {
  static_assert(is_loss_v<Loss>,
                "locus: not a loss; use SparseCategoricalCrossentropy, "
                "CategoricalCrossentropy, BinaryCrossentropy or MeanSquaredError");
  if constexpr (std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
    static_assert(std::is_same_v<L, std::int32_t>,
                  "locus: SparseCategoricalCrossentropy needs integer class labels "
                  "(Tensor<std::int32_t, Dev>), got floating-point labels; use "
                  "CategoricalCrossentropy for one-hot float labels or "
                  "locus::cast<std::int32_t>(labels)");
  } else if constexpr (std::is_same_v<L, std::int32_t>) {
    static_assert(!std::is_same_v<Loss, CategoricalCrossentropy>,
                  "locus: CategoricalCrossentropy needs one-hot float targets shaped like the "
                  "output (Tensor<T, Dev>, T the model's element type), got int32 class labels; "
                  "use SparseCategoricalCrossentropy for class indices");
    static_assert(!std::is_same_v<Loss, BinaryCrossentropy>,
                  "locus: BinaryCrossentropy needs float targets shaped like the output "
                  "(Tensor<T, Dev>, T the model's element type), got int32 labels; convert them "
                  "with locus::cast<T>(labels)");
    static_assert(!std::is_same_v<Loss, MeanSquaredError>,
                  "locus: MeanSquaredError needs float targets shaped like the output "
                  "(Tensor<T, Dev>, T the model's element type), got int32 labels; convert them "
                  "with locus::cast<T>(labels)");
    static_assert(!std::is_same_v<Loss, MeanAbsoluteError>,
                  "locus: MeanAbsoluteError needs float targets shaped like the output "
                  "(Tensor<T, Dev>, T the model's element type), got int32 labels; convert them "
                  "with locus::cast<T>(labels)");
  } else {
    static_assert(std::is_same_v<L, T>,
                  "locus: the targets have another floating-point type than the model (a float "
                  "model takes Tensor<float, Dev> targets, a double model Tensor<double, Dev>); "
                  "convert them with locus::cast<T>(labels)");
  }
}

}  // namespace detail

namespace nn {

/// Throws label_error for sparse labels outside [0, classes): `lo` is the smallest negative
/// label seen (0 if none), `hi` the largest label >= classes (0 if none).
[[noreturn]] inline void throw_label_range(std::int64_t lo, std::int64_t hi, std::size_t classes,
                                           const std::string& where) {
  const std::string range = "[0, " + std::to_string(classes) + ")";
  std::string what = where + ": ";
  if (lo < 0 && hi > 0) {
    what += "labels " + std::to_string(lo) + " and " + std::to_string(hi) + " are";
  } else {
    what += "label " + std::to_string(lo < 0 ? lo : hi) + " is";
  }
  what += " outside the valid range " + range + " of an output with " + std::to_string(classes) +
          " classes; sparse labels are class indices 0 to " + std::to_string(classes) + " - 1";
  throw label_error(what, lo < 0 ? lo : hi, classes);
}

/// Host labels: throws label_error (smallest negative and largest too-large label) when any
/// of the n labels is outside [0, classes).
inline void check_labels(const std::int32_t* labels, std::size_t n, std::size_t classes,
                         const std::string& where) {
  std::int32_t lo = 0, hi = 0;
  record_label_range(labels, n, classes, lo, hi);
  if (lo < 0 || hi > 0) throw_label_range(lo, hi, classes, where);
}

/// A fresh label status on Dev for the checked one_hot (nn_backend.hpp): {0, 0}.
template <class Dev>
Tensor<std::int32_t, Dev> new_label_status() {
  return Tensor<std::int32_t, Dev>::zeros({2});
}

/// Reads a label status (on a device: one counted transfer of 8 bytes) and, when it records
/// a bad label, resets it to {0, 0} (so the caller stays usable) and throws label_error.
template <class Dev>
void raise_label_status(Tensor<std::int32_t, Dev>& status, std::size_t classes,
                        const std::string& where) {
  const Tensor<std::int32_t, Device<CPU>> h = to<Device<CPU>>(status);
  const std::int32_t lo = h.data()[0], hi = h.data()[1];
  if (lo < 0 || hi > 0) {
    backend_t<Dev>::fill(status.storage(), std::int32_t(0));
    throw_label_range(lo, hi, classes, where);
  }
}

template <class T, class Dev>
struct loss_value {
  Tensor<T, Dev> value;  ///< rank 0: the mean loss of the batch
  Tensor<T, Dev> grad;   ///< dL/d(output), same shape as the output
};

inline constexpr double clip_epsilon = 1e-7;

/// One-hot rows of `labels` ([N] class indices) with `classes` columns. A label out of
/// range gives a zero row and, when `status` is given, is recorded there on the device
/// (nn_backend.hpp); reading the record is the caller's business.
template <class T, class Dev>
Tensor<T, Dev> one_hot(const Tensor<std::int32_t, Dev>& labels, std::size_t classes,
                       Tensor<std::int32_t, Dev>* status = nullptr) {
  Tensor<T, Dev> out(uninitialized, {labels.size(), classes});
  if (status) {
    nn_backend_for<Dev>::one_hot(labels.storage(), labels.size(), classes, out.storage(),
                                 status->storage());
  } else {
    nn_backend_for<Dev>::one_hot(labels.storage(), labels.size(), classes, out.storage());
  }
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

/// Labels outside [0, classes) raise label_error, as Keras does on the CPU. On the host they
/// are checked here, before anything is computed. On a device, with `status`, they are
/// recorded there by the one-hot kernel (their rows then add nothing to the loss and its
/// gradient) and the caller reads the record when it synchronises anyway (Sequential does);
/// without `status` this call reads a fresh record back at once (one 8-byte transfer).
template <class T, class Dev>
loss_value<T, Dev> compute_loss(const SparseCategoricalCrossentropy& l, const Tensor<T, Dev>& out,
                                const Tensor<std::int32_t, Dev>& labels,
                                Tensor<std::int32_t, Dev>* status = nullptr) {
  require_batch_match(out, labels.size(), l.name);
  if (out.rank() != 2) {
    throw shape_error("locus::sparse_categorical_crossentropy: expects an output of shape [N, classes], got " +
                      to_string(out.shape()));
  }
  const std::size_t classes = out.shape()[1];
  if constexpr (HostDevice<Dev>) {
    check_labels(labels.data(), labels.size(), classes, "locus::sparse_categorical_crossentropy");
    return categorical_crossentropy(out, one_hot<T>(labels, classes), l.from_logits);
  } else {
    if (status)
      return categorical_crossentropy(out, one_hot<T>(labels, classes, status), l.from_logits);
    Tensor<std::int32_t, Dev> own = new_label_status<Dev>();
    const Tensor<T, Dev> y = one_hot<T>(labels, classes, &own);
    raise_label_status(own, classes, "locus::sparse_categorical_crossentropy");
    return categorical_crossentropy(out, y, l.from_logits);
  }
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

template <class T, class Dev>
loss_value<T, Dev> compute_loss(const MeanAbsoluteError& l, const Tensor<T, Dev>& out,
                                const Tensor<T, Dev>& y) {
  if (!(out.shape() == y.shape())) {
    throw shape_error(std::string("locus::") + l.name + ": targets " + to_string(y.shape()) +
                      " differ from output " + to_string(out.shape()));
  }
  const double inv = 1.0 / static_cast<double>(out.size() ? out.size() : 1);
  const T s = static_cast<T>(inv);
  // d|d|/dd = sign(d), 0 at 0 (as the subgradient TensorFlow takes).
  return {scaled(sum(abs(out - y)), inv), where(greater(out, y), s, where(less(out, y), -s, T(0)))};
}

/// A loss with labels it does not take: a compile error that says what to do.
template <class Loss, class T, class Dev, class L>
  requires(is_loss_v<Loss> && !loss_takes_labels_v<Loss, L, T>)
loss_value<T, Dev> compute_loss(const Loss&, const Tensor<T, Dev>&, const Tensor<L, Dev>&) {
  locus::detail::require_loss_labels<Loss, L, T>();
  return {};
}

}  // namespace nn
}  // namespace locus
