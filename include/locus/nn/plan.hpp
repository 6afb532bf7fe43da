// Plan: a model description flattened into the list of layer calls a bound model runs.
//
// Nested models are expanded in place (their layers keep path names such as
// "encoder/dense"), every tensor of the graph becomes a numbered value, and the plan
// records what execution needs to know in advance:
//  * the last call that reads each value, so inference frees (or hands over) a tensor as
//    soon as nothing needs it any more;
//  * which values a training step must keep for the backward pass (only those a layer's
//    backward reads: BackwardNeeds);
//  * which values need a gradient (those that depend on a trainable weight), so the
//    backward pass computes no gradient of a model input or of a constant branch;
//  * gradient fusion: where a layer's activation derivative moves into the backward pass
//    of the one layer that reads its output (Layer::movable_output_grad and
//    can_apply_input_grad; a relu layer followed by a max pooling): the pooling then
//    returns dL/d(pre-activation), the producer skips its derivative, and the producer's
//    output, which only the derivative read, is no longer kept for the backward pass.
// The plan holds no tensors and names no device; it is shared by a model and its copies.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../error.hpp"
#include "functional.hpp"
#include "layer.hpp"

namespace locus::nn {

struct PlanLayer {
  std::string path;  ///< unique name: "dense", or "encoder/dense" inside a nested model
  std::shared_ptr<const Layer> layer;
  std::vector<Shape> input_shapes;  ///< of its first call: the weights are sized from it
  std::vector<WeightSpec> weights;
  std::size_t calls = 0;
};

struct PlanCall {
  std::size_t layer = 0;
  std::vector<std::size_t> in, out;  // value ids
};

/// How a plan is made. Gradient fusion changes no result (tests/test_nn_fusion.cpp
/// compares both ways bitwise); turning it off is for those comparisons.
struct PlanOptions {
  bool fuse_gradients = true;
};

/// A call whose activation derivative a consumer applies (see the file comment).
struct PlanFusion {
  MovedGrad grad = MovedGrad::none;
  std::size_t producer = 0, consumer = 0;  ///< call indices
  std::size_t input = 0;                   ///< the consumer's input that the producer's output is
};

class Plan {
 public:
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

  explicit Plan(const Functional& model, PlanOptions options = {}) : options_(options) {
    std::vector<std::size_t> ins;
    for (const auto& s : model.input_shapes()) ins.push_back(new_value(s));
    inputs = ins;
    outputs = expand(model, "", ins);
    analyse();
  }

  std::vector<PlanLayer> layers;
  std::vector<PlanCall> calls;
  std::vector<Shape> shapes;  ///< per value, per sample
  std::vector<std::size_t> inputs, outputs;

  std::vector<std::size_t> last_use;  ///< per value: the last call reading it, or none
  std::vector<bool> is_output;        ///< per value: a model output
  std::vector<bool> is_input;         ///< per value: a model input
  std::vector<bool> kept;             ///< per value: read by some backward pass
  std::vector<bool> requires_grad;    ///< per value: depends on a trainable weight

  std::vector<PlanFusion> fusions;        ///< gradient fusions, in producer order
  std::vector<bool> output_grad_applied;  ///< per call: a consumer applies its derivative
  std::vector<MovedGrad> apply_to_dx;     ///< per call: the derivative it applies for a producer
  std::vector<std::size_t> apply_to_dx_input;  ///< per call: to the gradient of this input

  const PlanOptions& options() const { return options_; }

 private:
  std::size_t new_value(const Shape& s) {
    shapes.push_back(s);
    return shapes.size() - 1;
  }

  std::vector<std::size_t> expand(const Functional& f, const std::string& prefix,
                                  const std::vector<std::size_t>& in_values) {
    std::vector<std::vector<std::size_t>> node_out(f.nodes().size());
    for (std::size_t i = 0; i < f.inputs().size(); ++i) {
      const GraphRef r = f.inputs()[i];
      node_out[r.node].resize(f.nodes()[r.node].output_shapes.size(), none);
      node_out[r.node][r.index] = in_values[i];
    }
    for (std::size_t ni = 0; ni < f.nodes().size(); ++ni) {
      const GraphNode& n = f.nodes()[ni];
      if (n.inputs.empty()) continue;  // an input node, mapped above
      std::vector<std::size_t> ins;
      for (const GraphRef& r : n.inputs) ins.push_back(node_out[r.node][r.index]);
      const GraphLayer& gl = f.layers()[n.layer];
      if (const auto* sub = dynamic_cast<const Functional*>(gl.layer.get())) {
        node_out[ni] = expand(*sub, prefix + gl.name + "/", ins);
        continue;
      }
      const std::string path = prefix + gl.name;
      auto [it, fresh] = slot_of_.emplace(path, layers.size());
      if (fresh) {
        std::vector<Shape> in_shapes;
        for (auto v : ins) in_shapes.push_back(shapes[v]);
        layers.push_back({path, gl.layer, in_shapes, gl.layer->weights(in_shapes), 0});
      }
      layers[it->second].calls++;
      PlanCall c;
      c.layer = it->second;
      c.in = ins;
      for (const auto& s : n.output_shapes) c.out.push_back(new_value(s));
      node_out[ni] = c.out;
      calls.push_back(std::move(c));
    }
    std::vector<std::size_t> outs;
    for (const GraphRef& r : f.outputs()) outs.push_back(node_out[r.node][r.index]);
    return outs;
  }

  void analyse() {
    const std::size_t n = shapes.size();
    last_use.assign(n, none);
    is_output.assign(n, false);
    is_input.assign(n, false);
    kept.assign(n, false);
    requires_grad.assign(n, false);
    for (auto v : outputs) is_output[v] = true;
    for (auto v : inputs) is_input[v] = true;
    std::vector<std::size_t> readers(n, 0);  // reads of each value, over all calls
    for (std::size_t c = 0; c < calls.size(); ++c) {
      const PlanCall& call = calls[c];
      const PlanLayer& pl = layers[call.layer];
      bool trainable = false;
      for (const auto& w : pl.weights) trainable = trainable || w.trainable;
      bool grad = trainable;
      for (auto v : call.in) {
        last_use[v] = c;
        ++readers[v];
        grad = grad || requires_grad[v];
      }
      for (auto v : call.out) requires_grad[v] = grad;
    }
    find_fusions(readers);
    for (std::size_t c = 0; c < calls.size(); ++c) {
      const PlanCall& call = calls[c];
      const BackwardNeeds needs = layers[call.layer].layer->backward_needs();
      for (auto v : call.in) {
        if (needs.inputs) kept[v] = true;
      }
      // A fused producer's derivative was what read its output.
      const bool outs = needs.outputs && !output_grad_applied[c];
      for (auto v : call.out) {
        if (outs) kept[v] = true;
      }
    }
  }

  // A producer call P with one output v, which is no model output and is read exactly once,
  // by a call C that can apply P's movable derivative to that input's gradient.
  void find_fusions(const std::vector<std::size_t>& readers) {
    output_grad_applied.assign(calls.size(), false);
    apply_to_dx.assign(calls.size(), MovedGrad::none);
    apply_to_dx_input.assign(calls.size(), 0);
    fusions.clear();
    if (!options_.fuse_gradients) return;
    for (std::size_t p = 0; p < calls.size(); ++p) {
      const PlanCall& prod = calls[p];
      const MovedGrad g = layers[prod.layer].layer->movable_output_grad();
      if (g == MovedGrad::none || prod.out.size() != 1) continue;
      const std::size_t v = prod.out[0];
      if (is_output[v] || readers[v] != 1) continue;
      const std::size_t c = last_use[v];  // the one reader
      const PlanCall& cons = calls[c];
      const std::size_t i =
          static_cast<std::size_t>(std::find(cons.in.begin(), cons.in.end(), v) - cons.in.begin());
      if (apply_to_dx[c] != MovedGrad::none ||
          !layers[cons.layer].layer->can_apply_input_grad(g, i))
        continue;
      output_grad_applied[p] = true;
      apply_to_dx[c] = g;
      apply_to_dx_input[c] = i;
      fusions.push_back({g, p, c, i});
    }
  }

  PlanOptions options_;
  std::map<std::string, std::size_t> slot_of_;
};

}  // namespace locus::nn
