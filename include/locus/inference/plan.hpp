// InferencePlan<Dev>: a model compiled for forward-only use on its device.
//
//   locus::InferencePlan<Device<CPU>> plan(model, {.max_batch = 256});
//   Tensor<float, Device<CPU>> y = plan.predict(x);  // equals model.predict(x) within 1e-5
//   plan.predict_into(x, y);                          // allocates nothing
//
// Made once from any built model (its weights are read once, folded as graph.hpp says and
// kept by the plan: later training of the model does not change the plan). Buffers are sized
// when the plan is made, for up to max_batch samples per pass; larger inputs run in passes.
// predict_into allocates nothing on the host or the device, and any number of threads may
// call it at once on one plan (each running call leases one of the plan's workspaces).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../nn/model.hpp"
#include "../transfer.hpp"
#include "cpu/float_runner.hpp"
#include "graph.hpp"
#include "opencl/float_runner.hpp"
#include "options.hpp"

namespace locus {

namespace inference::detail {

/// The host copy of every weight of a model, by plan layer path and index.
template <AnyDevice Dev>
WeightSource weights_of(const Model<Dev, float>& model) {
  return [&model](const std::string& path, std::size_t i) {
    for (const auto& pl : model.plan_layers()) {
      if (pl.path != path) continue;
      const std::string name = path + "/" + pl.weights.at(i).name;
      for (const auto& [n, t] : model.weights()) {
        if (n != name) continue;
        const auto host = to<Device<CPU>>(*t);
        return std::vector<float>(host.data(), host.data() + host.size());
      }
    }
    throw argument_error("locus::InferencePlan: the model has no weight " + path + " #" +
                         std::to_string(i));
  };
}

template <AnyDevice Dev>
using float_runner_for =
    std::conditional_t<HostDevice<Dev>, cpu::FloatRunner, opencl::FloatRunner<Dev>>;

/// Checks x is [N, ...input shape] and y (when given) [N, ...output shape]; builds the
/// message only on failure (predict_into allocates nothing).
inline void check_io(const Graph& g, const Shape& x, const Shape* y, const char* who) {
  auto fits = [](const Shape& t, std::size_t n, const Shape& per_sample) {
    if (t.rank() != per_sample.rank() + 1 || t[0] != n) return false;
    for (std::size_t i = 0; i < per_sample.rank(); ++i)
      if (t[i + 1] != per_sample[i]) return false;
    return true;
  };
  auto with_batch = [](std::size_t n, const Shape& s) {
    std::vector<std::size_t> d{n};
    d.insert(d.end(), s.begin(), s.end());
    return Shape(d);
  };
  const Shape& in = g.shapes[g.input];
  if (x.rank() == 0 || !fits(x, x[0], in))
    throw shape_error(std::string(who) + ": input of shape " + to_string(x) +
                      " does not match the model's input " + to_string(with_batch(0, in)) +
                      " (0 stands for any batch size)");
  if (y && !fits(*y, x[0], g.shapes[g.output]))
    throw shape_error(std::string(who) + ": output of shape " + to_string(*y) + " for " +
                      std::to_string(x[0]) + " samples; it must be " +
                      to_string(with_batch(x[0], g.shapes[g.output])));
}

/// The calls every plan offers (float and int8, any device), over Derived's graph() and
/// runner_ (a runner with run(x, n, y) on host pointers or device buffers).
template <class Derived, AnyDevice Dev>
class PlanCalls {
 public:
  using tensor = Tensor<float, Dev>;

  /// The outputs for a batch x ([N, ...input shape] on Dev).
  tensor predict(const tensor& x) const {
    const Graph& g = self().graph();
    check_io(g, x.shape(), nullptr, Derived::name);
    std::vector<std::size_t> d{x.shape()[0]};
    d.insert(d.end(), g.shapes[g.output].begin(), g.shapes[g.output].end());
    tensor y(uninitialized, Shape(d));
    run(x, y);
    return y;
  }

  /// predict into y ([N, ...output shape] on Dev); allocates nothing.
  void predict_into(const tensor& x, tensor& y) const {
    check_io(self().graph(), x.shape(), &y.shape(), Derived::name);
    run(x, y);
  }

  /// Data on another device than the plan's: one line naming both and the fix.
  template <class X>
  requires(is_tensor_v<X> && !std::is_same_v<typename X::device_type, Dev>) tensor predict(const X&)
  const {
    (void)sizeof(locus::detail::require_same_device<Dev, typename X::device_type>);
    return {};
  }
  template <class X, class Y>
  requires(is_tensor_v<X>&& is_tensor_v<Y> &&
           (!std::is_same_v<typename X::device_type, Dev> ||
            !std::is_same_v<typename Y::device_type, Dev>)) void predict_into(const X&, Y&) const {
    (void)sizeof(locus::detail::require_same_device<Dev, typename X::device_type>);
    (void)sizeof(locus::detail::require_same_device<Dev, typename Y::device_type>);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }

  void run(const tensor& x, tensor& y) const {
    const std::size_t n = x.shape()[0];
    if (n == 0) return;
    if constexpr (HostDevice<Dev>) {
      self().runner_.run(x.data(), n, y.data());
    } else {
      self().runner_.run(x.storage(), n, y.storage());
    }
  }
};

}  // namespace inference::detail

template <AnyDevice Dev, class T = float>
class InferencePlan : public inference::detail::PlanCalls<InferencePlan<Dev, T>, Dev> {
  static_assert(std::is_same_v<T, float>, "locus::InferencePlan: inference plans compute in float");
  friend class inference::detail::PlanCalls<InferencePlan<Dev, T>, Dev>;

 public:
  using tensor = Tensor<float, Dev>;
  static constexpr const char* name = "locus::InferencePlan";

  /// Compiles `model` (built, on Dev) for inference. A model on another device is refused
  /// at compile time: the plan runs where the model is.
  template <AnyDevice D2>
  explicit InferencePlan(const Model<D2, float>& model, InferenceOptions options = {})
      : options_(options), graph_(lower(model)), runner_(graph_, options) {}

  const inference::Graph& graph() const { return *graph_; }
  const std::shared_ptr<const inference::Graph>& shared_graph() const { return graph_; }
  const InferenceOptions& options() const { return options_; }
  Shape input_shape() const { return graph_->shapes[graph_->input]; }
  Shape output_shape() const { return graph_->shapes[graph_->output]; }

  /// The runner (the CPU one runs calibration).
  const auto& runner() const { return runner_; }

 private:
  template <AnyDevice D2>
  static std::shared_ptr<const inference::Graph> lower(const Model<D2, float>& model) {
    (void)sizeof(locus::detail::model_device_mismatch<Dev, D2>);
    if constexpr (std::is_same_v<D2, Dev>) {
      return std::make_shared<const inference::Graph>(
          inference::lower(model.description(), inference::detail::weights_of(model)));
    } else {
      return nullptr;
    }
  }

  InferenceOptions options_;
  std::shared_ptr<const inference::Graph> graph_;
  inference::detail::float_runner_for<Dev> runner_;
};

}  // namespace locus
