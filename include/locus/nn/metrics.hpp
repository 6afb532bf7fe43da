// Accuracy metrics. Each returns the number of correct samples of a batch as a rank-0
// tensor on the model's device, so a training loop can accumulate them there and read
// them once per epoch instead of once per step.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../ops/reduce.hpp"
#include "../tensor.hpp"
#include "losses.hpp"

namespace locus {

/// Metrics, named as in Keras. `accuracy` resolves from the loss, as Keras's "accuracy"
/// string does: sparse, categorical or binary accuracy.
enum class Metric { accuracy, sparse_categorical_accuracy, categorical_accuracy, binary_accuracy };

template <class Loss>
Metric resolve_metric(Metric m) {
  if (m != Metric::accuracy) return m;
  if constexpr (std::is_same_v<Loss, SparseCategoricalCrossentropy>) return Metric::sparse_categorical_accuracy;
  if constexpr (std::is_same_v<Loss, CategoricalCrossentropy>) return Metric::categorical_accuracy;
  return Metric::binary_accuracy;
}

/// The metric's name, as Keras names it: the "accuracy" string keeps its own name whatever
/// it resolves to, a metric object has its class's snake-case name.
inline std::string metric_name(Metric m) {
  switch (m) {
    case Metric::accuracy:
      return "accuracy";
    case Metric::sparse_categorical_accuracy:
      return "sparse_categorical_accuracy";
    case Metric::categorical_accuracy:
      return "categorical_accuracy";
    case Metric::binary_accuracy:
      return "binary_accuracy";
  }
  return "metric";
}

/// The History/evaluate keys of compiled metrics, in order. A name given more than once is
/// made distinct as Keras 3 does (CompileMetrics.result(): the second "accuracy" is
/// "accuracy_1", the third "accuracy_2"), rather than rejected.
inline std::vector<std::string> metric_keys(const std::vector<Metric>& metrics) {
  std::vector<std::string> keys;
  std::map<std::string, std::size_t> seen;
  for (Metric m : metrics) {
    const std::string name = metric_name(m);
    const std::size_t k = seen[name]++;
    keys.push_back(k ? name + "_" + std::to_string(k) : name);
  }
  return keys;
}

namespace nn {

template <class T, class Dev, class L>
Tensor<T, Dev> correct_count(Metric m, const Tensor<T, Dev>& out, const Tensor<L, Dev>& y) {
  if constexpr (std::is_same_v<L, std::int32_t>) {
    if (m != Metric::sparse_categorical_accuracy) {
      throw argument_error("locus: integer labels need sparse_categorical_accuracy");
    }
    return sum(cast<T>(equal(argmax(out, -1), y)));
  } else {
    if (m == Metric::categorical_accuracy) return sum(cast<T>(equal(argmax(out, -1), argmax(y, -1))));
    if (m == Metric::binary_accuracy) {
      // Per element, averaged over the last axis as Keras does: sum over elements / width.
      Tensor<T, Dev> c = sum(equal(greater(out, T(0.5)), y));
      c *= T(1) / static_cast<T>(out.rank() > 1 ? out.shape()[out.rank() - 1] : 1);
      return c;
    }
    throw argument_error("locus: sparse_categorical_accuracy needs integer labels");
  }
}

}  // namespace nn
}  // namespace locus
