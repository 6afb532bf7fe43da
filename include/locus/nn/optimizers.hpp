// Optimizers with Keras's defaults and update rules (Keras 3 formulation). Each update
// is one fused element-wise pass per parameter on the model's device; the slots
// (momentum, moments) are allocated there, next to the parameters, on first use.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "parameter.hpp"

namespace locus {

struct SGD {
  double learning_rate = 0.01;
  double momentum = 0.0;
  bool nesterov = false;
};
struct Adam {
  double learning_rate = 0.001;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
};
struct RMSprop {
  double learning_rate = 0.001;
  double rho = 0.9;
  double momentum = 0.0;
  double epsilon = 1e-7;
  bool centered = false;
};

using OptimizerConfig = std::variant<SGD, Adam, RMSprop>;

/// Which of an optimizer's three slots per parameter (momentum or first moment, second
/// moment, centred mean) configuration `o` uses.
inline std::array<bool, 3> used_slots(const OptimizerConfig& o) {
  return std::visit(
      [](const auto& c) -> std::array<bool, 3> {
        using C = std::remove_cvref_t<decltype(c)>;
        if constexpr (std::is_same_v<C, SGD>) {
          return {c.momentum != 0.0, false, false};
        } else if constexpr (std::is_same_v<C, Adam>) {
          return {true, true, false};
        } else {
          return {c.momentum > 0.0, true, c.centered};
        }
      },
      o);
}

template <AnyDevice Dev, class T>
class Model;

/// An optimizer bound to one device: its slots live there, and it only updates models of
/// that device.
template <AnyDevice Dev, class T = float>
class Optimizer {
 public:
  using tensor = Tensor<T, Dev>;
  Optimizer(OptimizerConfig cfg = Adam{}) : cfg_(cfg) { validate(); }  // NOLINT
  /// An optimizer's slots live on its device: one of another device is not this one.
  template <AnyDevice D2, class T2>
  requires(!std::is_same_v<D2, Dev> || !std::is_same_v<T2, T>)
      Optimizer(const Optimizer<D2, T2>&) {  // NOLINT
    if constexpr (!std::is_same_v<D2, Dev>) {
      (void)sizeof(locus::detail::optimizer_device_mismatch<Dev, D2>);
    } else {
      static_assert(std::is_same_v<T2, T>,
                    "locus::Optimizer: the optimizers update different element types");
    }
  }

  const OptimizerConfig& config() const { return cfg_; }
  std::uint64_t iterations() const { return iterations_; }

  /// The slot tensors of parameter i that exist (momentum, moments, centred mean; in that
  /// order, empty ones left out): the optimizer's variables in Keras's terms.
  std::vector<const tensor*> slot_tensors(std::size_t i) const {
    std::vector<const tensor*> out;
    if (i >= slots_.size()) return out;
    for (const tensor* t : {&slots_[i].a, &slots_[i].b, &slots_[i].c})
      if (t->size()) out.push_back(t);
    return out;
  }
  std::size_t slotted_parameters() const { return slots_.size(); }

  /// Which of the three slots (momentum or first moment, second moment, centred mean)
  /// this configuration uses; slot_tensors() and restore() list the used ones in this order.
  std::array<bool, 3> used_slots() const { return locus::used_slots(cfg_); }
  /// Puts back a saved state: the iteration count and, per parameter, its used slots in
  /// used_slots() order (none for a parameter never stepped). Shapes are checked by the
  /// next apply().
  void restore(std::uint64_t iterations, std::vector<std::vector<tensor>> slot_values) {
    const std::array<bool, 3> used = used_slots();
    const auto count = static_cast<std::size_t>(used[0]) + used[1] + used[2];
    std::vector<slots> restored(slot_values.size());
    for (std::size_t i = 0; i < slot_values.size(); ++i) {
      auto& v = slot_values[i];
      if (v.empty()) continue;
      if (v.size() != count) {
        throw argument_error("locus::Optimizer::restore: parameter " + std::to_string(i) + " has " +
                             std::to_string(v.size()) + " slots, this optimizer keeps " +
                             std::to_string(count));
      }
      tensor* members[3] = {&restored[i].a, &restored[i].b, &restored[i].c};
      std::size_t k = 0;
      for (std::size_t j = 0; j < 3; ++j)
        if (used[j]) *members[j] = std::move(v[k++]);
    }
    slots_ = std::move(restored);
    iterations_ = iterations;
  }

  /// A copy of this optimizer (configuration, iteration count and every slot) on device
  /// D2: each slot crosses with a counted locus::to<D2>.
  template <AnyDevice D2>
  Optimizer<D2, T> copy_to() const {
    Optimizer<D2, T> o(cfg_);
    o.iterations_ = iterations_;
    o.slots_.resize(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      o.slots_[i].a = copy_slot<D2>(slots_[i].a);
      o.slots_[i].b = copy_slot<D2>(slots_[i].b);
      o.slots_[i].c = copy_slot<D2>(slots_[i].c);
    }
    return o;
  }

  /// Applies gradients to parameters, pairwise (grads[i] belongs to params[i]).
  void apply(const std::vector<nn::Parameter<Dev, T>*>& params,
             const std::vector<const tensor*>& grads) {
    if (params.size() != grads.size()) {
      throw argument_error("locus::Optimizer: " + std::to_string(grads.size()) + " gradients for " +
                           std::to_string(params.size()) + " parameters");
    }
    if (slots_.empty()) slots_.resize(params.size());
    if (slots_.size() != params.size()) {
      throw argument_error("locus::Optimizer: used with a different set of parameters than before");
    }
    ++iterations_;
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (!(grads[i]->shape() == params[i]->value.shape())) {
        throw shape_error("locus::Optimizer: gradient of shape " + to_string(grads[i]->shape()) +
                          " for parameter '" + params[i]->name + "' of shape " +
                          to_string(params[i]->value.shape()));
      }
      std::visit([&](const auto& c) { step(c, params[i]->value, *grads[i], slots_[i]); }, cfg_);
    }
  }

  /// Applies the gradients stored in the parameters themselves (after a backward pass).
  void apply(const std::vector<nn::Parameter<Dev, T>*>& params) {
    std::vector<const tensor*> grads;
    for (auto* p : params) grads.push_back(&p->grad);
    apply(params, grads);
  }

  /// Keras's apply_gradients for a custom training loop: grads[i] belongs to
  /// model.parameters()[i] (the order of value_and_gradient's gradients).
  template <AnyDevice D2, class T2>
  void apply_gradients(const std::vector<Tensor<T2, D2>>& grads, Model<D2, T2>& model) {
    (void)sizeof(detail::require_same_device<Dev, D2>);
    if constexpr (std::is_same_v<Dev, D2> && std::is_same_v<T, T2>) {
      std::vector<const tensor*> g;
      for (const auto& t : grads) g.push_back(&t);
      apply(model.parameters(), g);
    }
  }

 private:
  template <AnyDevice, class>
  friend class Optimizer;

  template <AnyDevice D2>
  static Tensor<T, D2> copy_slot(const tensor& t) {
    if (t.size() == 0) return {};
    return locus::to<D2>(t);
  }

  struct slots {
    tensor a, b, c;  // momentum / first moment, second moment, centred mean
  };

  void validate() const {
    std::visit(
        [](const auto& c) {
          if (!(c.learning_rate > 0))
            throw argument_error("locus::Optimizer: learning_rate must be > 0");
        },
        cfg_);
  }

  static void ensure(tensor& slot, const tensor& like) {
    if (!(slot.shape() == like.shape())) slot = tensor::zeros(like.shape());
  }

  void step(const SGD& c, tensor& p, const tensor& g, slots& s) {
    const T lr = static_cast<T>(c.learning_rate), mom = static_cast<T>(c.momentum);
    if (c.momentum == 0.0) {
      p -= g * lr;
      return;
    }
    ensure(s.a, p);
    s.a = s.a * mom - g * lr;
    if (c.nesterov) {
      p += s.a * mom - g * lr;
    } else {
      p += s.a;
    }
  }

  void step(const Adam& c, tensor& p, const tensor& g, slots& s) {
    ensure(s.a, p);
    ensure(s.b, p);
    const double t = static_cast<double>(iterations_);
    const T alpha = static_cast<T>(c.learning_rate * std::sqrt(1.0 - std::pow(c.beta_2, t)) /
                                   (1.0 - std::pow(c.beta_1, t)));
    const T b1 = static_cast<T>(1.0 - c.beta_1), b2 = static_cast<T>(1.0 - c.beta_2);
    s.a += (g - s.a) * b1;
    s.b += (square(g) - s.b) * b2;
    p -= s.a * alpha / (sqrt(s.b) + static_cast<T>(c.epsilon));
  }

  void step(const RMSprop& c, tensor& p, const tensor& g, slots& s) {
    ensure(s.b, p);
    const T rho = static_cast<T>(c.rho), lr = static_cast<T>(c.learning_rate);
    const T eps = static_cast<T>(c.epsilon);
    s.b = s.b * rho + square(g) * (T(1) - rho);
    tensor increment;
    if (c.centered) {
      ensure(s.c, p);
      s.c = s.c * rho + g * (T(1) - rho);
      increment = g * lr / sqrt(s.b - square(s.c) + eps);
    } else {
      increment = g * lr / sqrt(s.b + eps);
    }
    if (c.momentum > 0.0) {
      ensure(s.a, p);
      s.a = s.a * static_cast<T>(c.momentum) + increment;
      p -= s.a;
    } else {
      p -= increment;
    }
  }

  OptimizerConfig cfg_;
  std::uint64_t iterations_ = 0;
  std::vector<slots> slots_;
};

}  // namespace locus
