// Executor: runs a Plan on one device with the layers' kernels bound to it.
//
// It owns no tensors. Inference (infer) is const and keeps every intermediate tensor in
// locals, so any number of threads may run it at once on one model. A training step runs
// forward() into a Tape (the activations the backward pass reads and each call's Saved
// record), then backward(), which adds the gradient contributions of every call of a
// shared layer and of every consumer of a tensor. Tensors nobody needs any more are freed
// at once, and a tensor whose last reader is the current call is handed to it (Arg::take),
// so reshapes and inference-time identities copy nothing. The backward pass tells each
// call about the plan's gradient fusions (Backward::output_grad_applied, apply_to_dx).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"
#include "layer.hpp"
#include "plan.hpp"

namespace locus::nn {

/// The weights of one plan layer on the device.
template <AnyDevice Dev, class T>
struct LayerWeights {
  std::vector<const Tensor<T, Dev>*> all;  ///< in the layer's weights() order
  std::vector<Tensor<T, Dev>*> state;  ///< the non-trainable ones (a training call updates them)
  std::vector<std::size_t> params;     ///< model parameter index of each trainable weight
  std::uint64_t seed = 0;              ///< the layer's random seed
};

/// Everything a training forward pass leaves for the backward pass.
template <AnyDevice Dev, class T>
struct Tape {
  std::vector<std::optional<Tensor<T, Dev>>> values;
  std::vector<const Tensor<T, Dev>*> inputs;  // the model inputs (the caller's tensors)
  std::vector<Saved<Dev, T>> saved;           // per call
  std::vector<std::vector<Shape>> in_shapes, out_shapes;
  std::vector<std::uint64_t> seeds;  // per call
  // The other replicas of a data-parallel step (handed to every call's Saved).
  const CrossReplica<Dev, T>* replicas = nullptr;
};

template <AnyDevice Dev, class T>
class Executor {
 public:
  using tensor = Tensor<T, Dev>;

  Executor(std::shared_ptr<const Plan> plan,
           std::vector<std::unique_ptr<const LayerKernel<Dev, T>>> kernels)
      : plan_(std::move(plan)), kernels_(std::move(kernels)) {}

  const Plan& plan() const { return *plan_; }
  const std::shared_ptr<const Plan>& shared_plan() const { return plan_; }

  /// The model's outputs for batch-first `inputs`, in inference mode.
  std::vector<tensor> infer(std::span<const tensor* const> inputs,
                            std::span<const LayerWeights<Dev, T>> w) const {
    const Plan& p = *plan_;
    std::vector<std::optional<tensor>> owned(p.shapes.size());
    std::vector<const tensor*> view(p.shapes.size(), nullptr);
    for (std::size_t i = 0; i < p.inputs.size(); ++i) view[p.inputs[i]] = inputs[i];
    for (std::size_t c = 0; c < p.calls.size(); ++c) {
      const PlanCall& call = p.calls[c];
      std::vector<Arg<Dev, T>> args;
      args.reserve(call.in.size());
      for (auto v : call.in) {
        const bool last = p.last_use[v] == c && owned[v] && !p.is_output[v] && once(call.in, v);
        args.emplace_back(*view[v], last ? &*owned[v] : nullptr);
      }
      Forward<Dev, T> f;
      f.in = args;
      f.w = w[call.layer].all;
      std::vector<tensor> out = kernels_[call.layer]->forward(f);
      check_outputs(call, out);
      for (auto v : call.in) {
        if (p.last_use[v] == c && !p.is_output[v]) owned[v].reset();
      }
      for (std::size_t k = 0; k < out.size(); ++k) {
        const std::size_t v = call.out[k];
        if (p.last_use[v] == Plan::none && !p.is_output[v]) continue;  // nothing reads it
        owned[v] = std::move(out[k]);
        view[v] = &*owned[v];
      }
    }
    std::vector<tensor> result;
    for (std::size_t i = 0; i < p.outputs.size(); ++i) {
      const std::size_t v = p.outputs[i];
      const bool again = [&] {
        for (std::size_t j = i + 1; j < p.outputs.size(); ++j)
          if (p.outputs[j] == v) return true;
        return false;
      }();
      if (owned[v] && !again) {
        result.push_back(std::move(*owned[v]));
      } else {
        result.push_back(*view[v]);  // a model input returned as is, or an output listed twice
      }
    }
    return result;
  }

  /// A training forward pass. Returns the outputs (owned by the tape).
  std::vector<const tensor*> forward(Tape<Dev, T>& tape, std::span<const tensor* const> inputs,
                                     std::span<const LayerWeights<Dev, T>> w,
                                     std::uint64_t step) const {
    const Plan& p = *plan_;
    tape.values.assign(p.shapes.size(), std::nullopt);
    tape.inputs.assign(inputs.begin(), inputs.end());
    tape.saved.assign(p.calls.size(), {});
    tape.in_shapes.assign(p.calls.size(), {});
    tape.out_shapes.assign(p.calls.size(), {});
    tape.seeds.assign(p.calls.size(), 0);
    std::vector<const tensor*> view(p.shapes.size(), nullptr);
    for (std::size_t i = 0; i < p.inputs.size(); ++i) view[p.inputs[i]] = inputs[i];
    std::vector<std::size_t> call_number(p.layers.size(), 0);
    for (std::size_t c = 0; c < p.calls.size(); ++c) {
      const PlanCall& call = p.calls[c];
      std::vector<Arg<Dev, T>> args;
      args.reserve(call.in.size());
      for (auto v : call.in) {
        tape.in_shapes[c].push_back(view[v]->shape());
        const bool last = p.last_use[v] == c && tape.values[v] && !p.is_output[v] && !p.kept[v] &&
                          once(call.in, v);
        args.emplace_back(*view[v], last ? &*tape.values[v] : nullptr);
      }
      const LayerWeights<Dev, T>& lw = w[call.layer];
      // Each call draws its own random stream: the layer's seed, the step and, for a
      // layer called several times, which call this is.
      tape.seeds[c] = lw.seed * 0x9E3779B97F4A7C15ull + step +
                      0xBF58476D1CE4E5B9ull * call_number[call.layer]++;
      Forward<Dev, T> f;
      f.in = args;
      f.w = lw.all;
      tape.saved[c].replicas = tape.replicas;
      f.saved = &tape.saved[c];
      f.state = lw.state;
      f.seed = tape.seeds[c];
      f.apply_to_dx = p.apply_to_dx[c];
      f.apply_to_dx_input = p.apply_to_dx_input[c];
      std::vector<tensor> out = kernels_[call.layer]->forward(f);
      check_outputs(call, out);
      for (auto v : call.in) {
        if (p.last_use[v] == c && !p.kept[v] && !p.is_output[v]) tape.values[v].reset();
      }
      for (std::size_t k = 0; k < out.size(); ++k) {
        const std::size_t v = call.out[k];
        tape.out_shapes[c].push_back(out[k].shape());
        if (p.last_use[v] == Plan::none && !p.is_output[v] && !p.kept[v]) continue;
        tape.values[v] = std::move(out[k]);
        view[v] = &*tape.values[v];
      }
    }
    std::vector<const tensor*> result;
    for (auto v : p.outputs) result.push_back(view[v]);
    return result;
  }

  /// The backward pass from dL/d(outputs) (one per model output). Sets grads[i] for every
  /// model parameter i (zeros for one no gradient reaches) and, when `input_grads` is not
  /// null, returns dL/d(input) of every model input there.
  void backward(Tape<Dev, T>& tape, std::vector<tensor> dy, std::span<const LayerWeights<Dev, T>> w,
                std::span<tensor* const> grads, std::span<const Shape> param_shapes,
                std::vector<tensor>* input_grads) const {
    const Plan& p = *plan_;
    std::vector<std::optional<tensor>> dval(p.shapes.size());
    for (std::size_t i = 0; i < p.outputs.size(); ++i)
      accumulate(dval[p.outputs[i]], std::move(dy[i]));
    std::vector<bool> touched(grads.size(), false);
    for (std::size_t c = p.calls.size(); c-- > 0;) {
      const PlanCall& call = p.calls[c];
      bool reached = false;
      for (auto v : call.out) reached = reached || dval[v].has_value();
      const LayerWeights<Dev, T>& lw = w[call.layer];
      std::vector<bool> need(call.in.size());
      bool any_need = !lw.params.empty();
      for (std::size_t i = 0; i < call.in.size(); ++i) {
        const std::size_t v = call.in[i];
        need[i] = p.requires_grad[v] || (input_grads && p.is_input[v]);
        any_need = any_need || need[i];
      }
      if (!reached || !any_need) {
        for (auto v : call.out) dval[v].reset();
        continue;
      }
      std::vector<tensor*> dys;
      for (std::size_t k = 0; k < call.out.size(); ++k) {
        auto& d = dval[call.out[k]];
        if (!d) d = tensor::zeros(tape.out_shapes[c][k]);  // an output nothing downstream used
        dys.push_back(&*d);
      }
      std::vector<const tensor*> ins, outs;
      for (auto v : call.in) ins.push_back(value(tape, v));
      for (auto v : call.out) outs.push_back(tape.values[v] ? &*tape.values[v] : nullptr);
      std::unique_ptr<bool[]> need_flags(new bool[need.size() + 1]);
      for (std::size_t i = 0; i < need.size(); ++i) need_flags[i] = need[i];
      std::vector<tensor> dw(lw.params.size());
      Backward<Dev, T> b{ins,
                         tape.in_shapes[c],
                         outs,
                         dys,
                         lw.all,
                         tape.saved[c],
                         std::span<const bool>(need_flags.get(), need.size()),
                         dw,
                         tape.seeds[c],
                         p.output_grad_applied[c],
                         p.apply_to_dx[c],
                         p.apply_to_dx_input[c]};
      std::vector<tensor> dx = kernels_[call.layer]->backward(b);
      for (std::size_t j = 0; j < lw.params.size(); ++j) {
        const std::size_t pi = lw.params[j];
        if (!touched[pi]) {
          *grads[pi] = std::move(dw[j]);
          touched[pi] = true;
        } else {
          *grads[pi] += dw[j];
        }
      }
      for (std::size_t i = 0; i < call.in.size(); ++i) {
        if (need[i] && i < dx.size()) accumulate(dval[call.in[i]], std::move(dx[i]));
      }
      for (auto v : call.out) {
        dval[v].reset();
        tape.values[v].reset();
      }
      tape.saved[c] = {};
    }
    for (std::size_t i = 0; i < grads.size(); ++i) {
      if (!touched[i]) *grads[i] = tensor::zeros(param_shapes[i]);
    }
    if (input_grads) {
      input_grads->clear();
      for (std::size_t i = 0; i < p.inputs.size(); ++i) {
        auto& d = dval[p.inputs[i]];
        input_grads->push_back(d ? std::move(*d) : tensor::zeros(tape.inputs[i]->shape()));
      }
    }
  }

 private:
  static bool once(const std::vector<std::size_t>& ids, std::size_t v) {
    std::size_t n = 0;
    for (auto i : ids) n += i == v;
    return n == 1;
  }

  const tensor* value(const Tape<Dev, T>& tape, std::size_t v) const {
    if (tape.values[v]) return &*tape.values[v];
    const Plan& p = *plan_;
    for (std::size_t i = 0; i < p.inputs.size(); ++i)
      if (p.inputs[i] == v) return tape.inputs[i];
    return nullptr;  // not kept: the layer said its backward does not read it
  }

  static void accumulate(std::optional<tensor>& into, tensor&& g) {
    if (!into) {
      into = std::move(g);
    } else {
      *into += g;
    }
  }

  void check_outputs(const PlanCall& call, const std::vector<tensor>& out) const {
    if (out.size() != call.out.size()) {
      throw argument_error("locus: layer '" + plan_->layers[call.layer].path + "' returned " +
                           std::to_string(out.size()) + " outputs, its description says " +
                           std::to_string(call.out.size()));
    }
  }

  std::shared_ptr<const Plan> plan_;
  std::vector<std::unique_ptr<const LayerKernel<Dev, T>>> kernels_;
};

}  // namespace locus::nn
