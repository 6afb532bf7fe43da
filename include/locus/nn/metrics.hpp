// Metrics, named as in Keras, and their accumulators.
//
// A metric is a per-sample value averaged over the samples seen (accuracy: 1 for a
// correct sample; mean absolute error: the sample's mean |y - t|). Each compiled metric
// keeps its own running sum on the model's device, so a training loop adds to it every
// step and reads all sums together once per epoch, never once per step.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "../ops/compare.hpp"
#include "../ops/reduce.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "losses.hpp"

namespace locus {

class Metric {
 public:
  enum class kind {
    accuracy,  // resolved from the loss, as Keras's "accuracy" string is
    sparse_categorical_accuracy,
    categorical_accuracy,
    binary_accuracy,
    top_k_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    mean_absolute_error,
    mean_squared_error,
  };

  constexpr Metric(kind k, const char* name, int top_k = 5) : kind_(k), name_(name), k_(top_k) {}
  /// A loss used as a metric: Keras's metrics=[keras.metrics.MeanSquaredError()].
  constexpr Metric(MeanSquaredError)
      : Metric(kind::mean_squared_error, "mean_squared_error") {}  // NOLINT
  constexpr Metric(MeanAbsoluteError)
      : Metric(kind::mean_absolute_error, "mean_absolute_error") {}  // NOLINT

  static const Metric accuracy;
  static const Metric sparse_categorical_accuracy;
  static const Metric categorical_accuracy;
  static const Metric binary_accuracy;
  static const Metric mae;  ///< mean absolute error, logged as "mae" (Keras's "mae" string)
  static const Metric mse;  ///< mean squared error, logged as "mse"
  static const Metric mean_absolute_error;
  static const Metric mean_squared_error;
  /// Whether the one-hot target's class is among the k highest outputs (ties count in).
  static constexpr Metric top_k_categorical_accuracy(int k = 5) {
    return {kind::top_k_categorical_accuracy, "top_k_categorical_accuracy", k};
  }
  /// The same with class-index labels.
  static constexpr Metric sparse_top_k_categorical_accuracy(int k = 5) {
    return {kind::sparse_top_k_categorical_accuracy, "sparse_top_k_categorical_accuracy", k};
  }

  constexpr kind type() const { return kind_; }
  constexpr int k() const { return k_; }
  /// The name Keras logs it under.
  std::string name() const { return name_; }
  /// Whether it takes integer class labels (otherwise targets shaped like the output).
  constexpr bool sparse() const {
    return kind_ == kind::sparse_categorical_accuracy ||
           kind_ == kind::sparse_top_k_categorical_accuracy;
  }

  friend constexpr bool operator==(const Metric& a, const Metric& b) {
    return a.kind_ == b.kind_ && a.k_ == b.k_ &&
           std::string_view(a.name_) == std::string_view(b.name_);
  }

 private:
  kind kind_;
  const char* name_;
  int k_;
};

inline constexpr Metric Metric::accuracy{Metric::kind::accuracy, "accuracy"};
inline constexpr Metric Metric::sparse_categorical_accuracy{
    Metric::kind::sparse_categorical_accuracy, "sparse_categorical_accuracy"};
inline constexpr Metric Metric::categorical_accuracy{Metric::kind::categorical_accuracy,
                                                     "categorical_accuracy"};
inline constexpr Metric Metric::binary_accuracy{Metric::kind::binary_accuracy, "binary_accuracy"};
inline constexpr Metric Metric::mae{Metric::kind::mean_absolute_error, "mae"};
inline constexpr Metric Metric::mse{Metric::kind::mean_squared_error, "mse"};
inline constexpr Metric Metric::mean_absolute_error{Metric::kind::mean_absolute_error,
                                                    "mean_absolute_error"};
inline constexpr Metric Metric::mean_squared_error{Metric::kind::mean_squared_error,
                                                   "mean_squared_error"};

/// "accuracy" as the loss makes it: sparse, categorical or binary accuracy (the logged
/// name stays "accuracy").
template <class Loss>
Metric resolve_metric(Metric m) {
  if (m.type() != Metric::kind::accuracy) return m;
  if constexpr (std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
    return {Metric::kind::sparse_categorical_accuracy, "accuracy"};
  } else if constexpr (std::is_same_v<Loss, CategoricalCrossentropy>) {
    return {Metric::kind::categorical_accuracy, "accuracy"};
  } else {
    return {Metric::kind::binary_accuracy, "accuracy"};
  }
}

/// The name Keras logs the metric under.
inline std::string metric_name(const Metric& m) {
  return m.name();
}

/// The History/evaluate keys of compiled metrics, in order. A name given more than once is
/// made distinct as Keras 3 does (CompileMetrics.result(): the second "accuracy" is
/// "accuracy_1", the third "accuracy_2"), rather than rejected.
inline std::vector<std::string> metric_keys(const std::vector<Metric>& metrics) {
  std::vector<std::string> keys;
  std::map<std::string, std::size_t> seen;
  for (const Metric& m : metrics) {
    const std::string name = metric_name(m);
    const std::size_t k = seen[name]++;
    keys.push_back(k ? name + "_" + std::to_string(k) : name);
  }
  return keys;
}

namespace nn {

/// Throws argument_error when metric m (resolved) cannot take labels of element type L.
template <class L>
void require_metric_labels(const Metric& m, const std::string& where) {
  const bool integer = std::is_same_v<L, std::int32_t>;
  if (m.type() == Metric::kind::accuracy) return;
  if (m.sparse() && !integer) {
    throw argument_error(where + ": metric " + m.name() +
                         " needs integer class labels (Tensor<std::int32_t, Dev>)");
  }
  if (!m.sparse() && integer) {
    throw argument_error(
        where + ": metric " + m.name() +
        " needs targets shaped like the output, got int32 class labels; use the sparse_ form");
  }
}

/// The sum over the batch of the per-sample value of (resolved) metric m, as a rank-0
/// tensor on the device: add it to a running sum and divide by the sample count.
template <class T, class Dev, class L>
Tensor<T, Dev> metric_sum(const Metric& m, const Tensor<T, Dev>& out, const Tensor<L, Dev>& y) {
  using K = Metric::kind;
  const std::size_t n = out.rank() ? out.shape()[0] : 1;
  const T width = static_cast<T>(n ? out.size() / n : 1);
  if constexpr (std::is_same_v<L, std::int32_t>) {
    const Tensor<std::int32_t, Dev> labels =
        y.rank() == 2 && y.shape()[1] == 1 ? y.reshape(Shape{y.shape()[0]}) : y;
    if (m.type() == K::sparse_categorical_accuracy)
      return sum(cast<T>(equal(argmax(out, -1), labels)));
    if (m.type() == K::sparse_top_k_categorical_accuracy) {
      const Tensor<T, Dev> target =
          sum(out * one_hot<T>(labels, out.shape()[out.rank() - 1]), -1, true);
      return sum(cast<T>(less(sum(greater(out, target), -1), static_cast<T>(m.k()))));
    }
    throw argument_error("locus: metric " + m.name() +
                         " needs targets shaped like the output, not class labels");
  } else {
    if (!(out.shape() == y.shape())) {
      throw shape_error("locus: metric " + m.name() + ": targets " + to_string(y.shape()) +
                        " differ from output " + to_string(out.shape()));
    }
    switch (m.type()) {
      case K::categorical_accuracy:
        return sum(cast<T>(equal(argmax(out, -1), argmax(y, -1))));
      case K::binary_accuracy: {
        // Per element, averaged over the sample as Keras does: sum over elements / width.
        Tensor<T, Dev> c = sum(equal(greater(out, T(0.5)), y));
        c *= T(1) / width;
        return c;
      }
      case K::top_k_categorical_accuracy: {
        const Tensor<T, Dev> target = sum(out * y, -1, true);
        return sum(cast<T>(less(sum(greater(out, target), -1), static_cast<T>(m.k()))));
      }
      case K::mean_absolute_error: {
        Tensor<T, Dev> s = sum(abs(out - y));
        s *= T(1) / width;
        return s;
      }
      case K::mean_squared_error: {
        Tensor<T, Dev> s = sum(square(out - y));
        s *= T(1) / width;
        return s;
      }
      default:
        throw argument_error("locus: metric " + m.name() + " needs integer class labels");
    }
  }
}

}  // namespace nn

/// A metric with its own running state on a device, as a Keras metric object is
/// (update_state, result, reset_state): the sum of the per-sample values seen and their
/// count. fit and evaluate keep one per compiled metric; a custom training loop can use
/// them directly. Nothing is read back until result().
template <AnyDevice Dev, class T = float>
class MetricState {
 public:
  /// `m` as given to compile ("accuracy" already resolved for the loss; see resolve_metric).
  explicit MetricState(Metric m) : metric_(m), sum_(Tensor<T, Dev>::zeros({})) {}

  const Metric& metric() const { return metric_; }
  std::string name() const { return metric_.name(); }

  /// Adds a batch: the model's output and the labels or targets.
  template <class L>
  void update_state(const Tensor<T, Dev>& out, const Tensor<L, Dev>& y) {
    sum_ += nn::metric_sum(metric_, out, y);
    count_ += out.rank() ? out.shape()[0] : 1;
  }
  /// The running sum, on the device (for reading several metrics in one transfer).
  const Tensor<T, Dev>& sum() const { return sum_; }
  std::size_t count() const { return count_; }
  /// The mean so far (one counted read of one value on a device).
  double result() const {
    const double s = static_cast<double>(to<Device<CPU>>(sum_).item());
    return count_ ? s / static_cast<double>(count_) : 0.0;
  }
  void reset_state() {
    sum_ = Tensor<T, Dev>::zeros({});
    count_ = 0;
  }

 private:
  Metric metric_;
  Tensor<T, Dev> sum_;
  std::size_t count_ = 0;
};

}  // namespace locus
