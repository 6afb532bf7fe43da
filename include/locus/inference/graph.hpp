// The inference graph: a model's plan lowered to the few fused steps a forward-only run
// needs, with the weights folded on the host.
//
// Lowering (in plan order, one pass):
//  * Dropout, Flatten and Reshape move no data at inference: their output is another name
//    for their input's memory (NHWC tensors are contiguous, so a reshape is free).
//  * BatchNormalization right after a convolution or dense layer (its only reader, with a
//    linear activation) is folded into it: W'[:, f] = W[:, f] k[f], b' = b k + shift with
//    k = gamma / sqrt(var + eps), shift = beta - mean k, computed in double. Elsewhere it is a
//    per-channel affine step.
//  * An activation layer (Activation, plain ReLU) after a step that can apply it in its
//    write-back (convolution, dense, add, affine) moves into that step; softmax moves into a
//    convolution or dense step as a row pass after the write-back.
// Layers that are not lowered (recurrent, attention, ...) are refused when the plan is made,
// by name, so an inference plan never falls back to something slower behind the user's back.
// The graph holds no tensors and names no device: the float and int8 plans of every device
// run it.
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "../backend/backend.hpp"
#include "../backend/nn_backend.hpp"
#include "../error.hpp"
#include "../nn/layers.hpp"
#include "../nn/plan.hpp"

namespace locus::inference {

enum class StepKind {
  conv2d,       ///< NHWC convolution (im2col order of the kernel: kh, kw, c), bias, activation
  dense,        ///< rows x last axis, bias, activation
  pool,         ///< 2-D max or average pooling
  global_pool,  ///< global max or average pooling over H and W
  add,          ///< element-wise sum of the inputs, activation
  affine,       ///< x * scale[c] + shift[c] over the last axis, activation
  activation,   ///< an activation alone
  softmax,      ///< softmax over the last axis alone
};

/// One fused step. Geometry is per sample (the batch axis of conv and pool is 1).
struct Step {
  StepKind kind = StepKind::activation;
  std::string name;  ///< the layers it runs: "conv2d+batch_normalization+activation"
  std::vector<std::size_t> in;
  std::size_t out = 0;
  conv_geometry conv{};
  pool_geometry pool{};
  pool_kind pooling = pool_kind::max;
  std::size_t units = 0;      ///< output channels (conv, dense, affine)
  std::size_t fan_in = 0;     ///< K of the product (conv: kh*kw*c, dense: input features)
  std::vector<float> kernel;  ///< conv: [kh*kw*c, units], dense: [fan_in, units]
  std::vector<float> bias;    ///< conv, dense: [units] (zeros without a bias); affine: shift
  std::vector<float> scale;   ///< affine
  gemm_activation act = gemm_activation::linear;
  bool softmax = false;  ///< conv, dense: softmax over the last axis after act
};

struct Graph {
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  std::vector<Shape> shapes;      ///< per value, per sample
  std::vector<std::size_t> root;  ///< per value: the value whose memory it is (itself, or aliased)
  std::size_t input = 0, output = 0;
  std::vector<Step> steps;
  std::vector<std::size_t> last_read;  ///< per root value: the last step reading it, or none

  std::size_t per_sample(std::size_t v) const { return shapes[v].size(); }
};

namespace detail {

inline bool fusable_activation(Activation a, gemm_activation& out) {
  switch (a) {
    case Activation::linear:
      out = gemm_activation::linear;
      return true;
    case Activation::relu:
      out = gemm_activation::relu;
      return true;
    case Activation::sigmoid:
      out = gemm_activation::sigmoid;
      return true;
    case Activation::tanh:
      out = gemm_activation::tanh;
      return true;
    default:
      return false;
  }
}

/// The host copy of a layer's weights, in its weights() order, by plan layer path.
using WeightSource = std::function<std::vector<float>(const std::string& path, std::size_t index)>;

class Lowering {
 public:
  Lowering(const nn::Functional& description, const WeightSource& weights)
      : plan_(description), weights_(weights) {
    const nn::Plan& p = plan_;
    if (p.inputs.size() != 1 || p.outputs.size() != 1)
      throw unsupported_error("locus::InferencePlan: the model has " +
                              std::to_string(p.inputs.size()) + " inputs and " +
                              std::to_string(p.outputs.size()) +
                              " outputs; an inference plan takes one of each");
    readers_.assign(p.shapes.size(), 0);
    for (const auto& c : p.calls)
      for (auto v : c.in) ++readers_[v];
    for (auto v : p.outputs) ++readers_[v];
    value_of_.assign(p.shapes.size(), Graph::none);
    producer_.assign(p.shapes.size(), Graph::none);
    g_.input = value_of_[p.inputs[0]] = new_value(p.shapes[p.inputs[0]]);
    for (const auto& call : p.calls) lower(call);
    const std::size_t out = value_of_[p.outputs[0]];
    if (g_.root[out] == g_.input) {
      // The output is the input itself (or a reshape of it): one step copies it.
      Step s;
      s.kind = StepKind::activation;
      s.name = "identity";
      s.in = {out};
      s.out = new_value(p.shapes[p.outputs[0]]);
      g_.steps.push_back(std::move(s));
      g_.output = g_.steps.back().out;
    } else {
      g_.output = out;
    }
    g_.last_read.assign(g_.shapes.size(), Graph::none);
    for (std::size_t i = 0; i < g_.steps.size(); ++i)
      for (auto v : g_.steps[i].in) g_.last_read[g_.root[v]] = i;
  }

  Graph take() { return std::move(g_); }

 private:
  std::size_t new_value(const Shape& s, std::size_t alias_of = Graph::none) {
    g_.shapes.push_back(s);
    g_.root.push_back(alias_of == Graph::none ? g_.shapes.size() - 1 : g_.root[alias_of]);
    return g_.shapes.size() - 1;
  }

  std::vector<float> weight(const nn::PlanLayer& pl, std::size_t i) const {
    std::vector<float> w = weights_(pl.path, i);
    if (w.size() != pl.weights[i].shape.size())
      throw shape_error("locus::InferencePlan: weight '" + pl.path + "/" + pl.weights[i].name +
                        "' has " + std::to_string(w.size()) + " values, its shape " +
                        to_string(pl.weights[i].shape) + " needs " +
                        std::to_string(pl.weights[i].shape.size()));
    return w;
  }

  /// The step that produced plan value v, when v's one reader is the current call and v is
  /// not a model output: that step may absorb the current layer.
  Step* sole_producer(std::size_t v) {
    if (readers_[v] != 1 || producer_[v] == Graph::none) return nullptr;
    return &g_.steps[producer_[v]];
  }

  void emit(Step s, std::size_t plan_value) {
    const Shape& shape = plan_.shapes[plan_value];
    s.out = new_value(shape);
    value_of_[plan_value] = s.out;
    producer_[plan_value] = g_.steps.size();
    g_.steps.push_back(std::move(s));
  }

  /// The current call's output is the step `s` already emitted, renamed (a fused layer).
  void absorb(Step& s, const std::string& name, std::size_t from, std::size_t plan_value) {
    s.name.append("+").append(name);
    value_of_[plan_value] = value_of_[from];
    producer_[plan_value] = producer_[from];
  }

  void lower(const nn::PlanCall& call) {
    const nn::PlanLayer& pl = plan_.layers[call.layer];
    const nn::Layer& layer = *pl.layer;
    const std::string cls = layer.class_name();
    const std::size_t in0 = call.in[0];
    const Shape& xs = plan_.shapes[in0];
    const std::size_t out = call.out[0];
    auto input = [&](std::size_t i) { return value_of_[call.in[i]]; };

    if (cls == "Dropout" || cls == "Flatten" || cls == "Reshape") {
      value_of_[out] = new_value(plan_.shapes[out], input(0));
      return;
    }
    if (const auto* conv = dynamic_cast<const layers::Conv2D*>(&layer)) {
      Step s;
      s.kind = StepKind::conv2d;
      s.name = pl.path;
      s.in = {input(0)};
      s.conv = conv->geometry(Shape{1, xs[0], xs[1], xs[2]});
      s.units = conv->filters;
      s.fan_in = s.conv.kh * s.conv.kw * s.conv.c;
      s.kernel = weight(pl, 0);
      s.bias = conv->use_bias ? weight(pl, 1) : std::vector<float>(s.units, 0.0f);
      set_activation(s, conv->activation, pl.path);
      emit(std::move(s), out);
      return;
    }
    if (const auto* dense = dynamic_cast<const layers::Dense*>(&layer)) {
      Step s;
      s.kind = StepKind::dense;
      s.name = pl.path;
      s.in = {input(0)};
      s.units = dense->units;
      s.fan_in = xs.back();
      s.kernel = weight(pl, 0);
      s.bias = dense->use_bias ? weight(pl, 1) : std::vector<float>(s.units, 0.0f);
      set_activation(s, dense->activation, pl.path);
      emit(std::move(s), out);
      return;
    }
    if (const auto* bn = dynamic_cast<const layers::BatchNormalization*>(&layer)) {
      const std::size_t c = xs.back();
      std::size_t j = 0;
      const std::vector<float> gamma = bn->scale ? weight(pl, j++) : std::vector<float>(c, 1.0f);
      const std::vector<float> beta = bn->center ? weight(pl, j++) : std::vector<float>(c, 0.0f);
      const std::vector<float> mean = weight(pl, j++), var = weight(pl, j++);
      std::vector<double> k(c), shift(c);
      for (std::size_t i = 0; i < c; ++i) {
        k[i] = static_cast<double>(gamma[i]) / std::sqrt(static_cast<double>(var[i]) + bn->epsilon);
        shift[i] = static_cast<double>(beta[i]) - static_cast<double>(mean[i]) * k[i];
      }
      Step* p = sole_producer(in0);
      if (p && (p->kind == StepKind::conv2d || p->kind == StepKind::dense) &&
          p->act == gemm_activation::linear && !p->softmax) {
        for (std::size_t r = 0; r < p->fan_in; ++r)
          for (std::size_t f = 0; f < c; ++f)
            p->kernel[r * c + f] = static_cast<float>(p->kernel[r * c + f] * k[f]);
        for (std::size_t f = 0; f < c; ++f)
          p->bias[f] = static_cast<float>(p->bias[f] * k[f] + shift[f]);
        absorb(*p, pl.path, in0, out);
        return;
      }
      Step s;
      s.kind = StepKind::affine;
      s.name = pl.path;
      s.in = {input(0)};
      s.units = c;
      s.scale.assign(k.begin(), k.end());
      s.bias.assign(shift.begin(), shift.end());
      emit(std::move(s), out);
      return;
    }
    if (cls == "Activation" || cls == "ReLU" || cls == "Softmax") {
      Activation a = Activation::linear;
      if (const auto* al = dynamic_cast<const layers::Activation*>(&layer)) {
        a = al->activation;
      } else if (const auto* r = dynamic_cast<const layers::ReLU*>(&layer)) {
        if (r->max_value || r->negative_slope != 0.0 || r->threshold != 0.0)
          refuse(pl, "a ReLU with max_value, negative_slope or threshold");
        a = Activation::relu;
      } else {
        a = Activation::softmax;
        if (layer.config().at("axis").as_int() != -1)
          refuse(pl, "a Softmax over another axis than the last");
      }
      gemm_activation ga{};
      const bool write_back = fusable_activation(a, ga);
      if (!write_back && a != Activation::softmax) refuse(pl, "the activation " + to_string(a));
      // A write-back activation moves into a producer that has none yet; a softmax (which
      // runs after the producer's activation) into a convolution or dense producer.
      Step* p = sole_producer(in0);
      if (p && !p->softmax) {
        const bool gemm = p->kind == StepKind::conv2d || p->kind == StepKind::dense;
        if (write_back && p->act == gemm_activation::linear &&
            (gemm || p->kind == StepKind::add || p->kind == StepKind::affine)) {
          p->act = ga;
          absorb(*p, pl.path, in0, out);
          return;
        }
        if (a == Activation::softmax && gemm) {
          p->softmax = true;
          absorb(*p, pl.path, in0, out);
          return;
        }
      }
      Step s;
      s.kind = write_back ? StepKind::activation : StepKind::softmax;
      s.name = pl.path;
      s.in = {input(0)};
      s.act = ga;
      emit(std::move(s), out);
      return;
    }
    if (cls == "MaxPooling2D" || cls == "AveragePooling2D") {
      Step s;
      s.kind = StepKind::pool;
      s.name = pl.path;
      s.in = {input(0)};
      const Shape x{1, xs[0], xs[1], xs[2]};
      if (const auto* mp = dynamic_cast<const layers::MaxPooling2D*>(&layer)) {
        s.pool = mp->geometry(x);
        s.pooling = pool_kind::max;
      } else {
        s.pool = dynamic_cast<const layers::AveragePooling2D&>(layer).geometry(x);
        s.pooling = pool_kind::average;
      }
      emit(std::move(s), out);
      return;
    }
    if (cls == "GlobalAveragePooling2D" || cls == "GlobalMaxPooling2D") {
      Step s;
      s.kind = StepKind::global_pool;
      s.name = pl.path;
      s.in = {input(0)};
      s.pooling = cls == "GlobalMaxPooling2D" ? pool_kind::max : pool_kind::average;
      s.pool = {1, xs[0], xs[1], xs[2], xs[0], xs[1], 1, 1, 0, 0, 1, 1};
      emit(std::move(s), out);
      return;
    }
    if (cls == "Add") {
      Step s;
      s.kind = StepKind::add;
      s.name = pl.path;
      for (std::size_t i = 0; i < call.in.size(); ++i) {
        if (!(plan_.shapes[call.in[i]] == plan_.shapes[out]))
          refuse(pl, "an Add that broadcasts its inputs");
        s.in.push_back(input(i));
      }
      emit(std::move(s), out);
      return;
    }
    refuse(pl, "the layer class " + cls);
  }

  void set_activation(Step& s, Activation a, const std::string& path) {
    if (a == Activation::softmax) {
      s.softmax = true;
      return;
    }
    if (!fusable_activation(a, s.act))
      throw unsupported_error("locus::InferencePlan: layer '" + path + "': the activation " +
                              to_string(a) +
                              " has no inference lowering (lowered: linear, relu, sigmoid, "
                              "tanh, softmax); use Model::predict for this model");
  }

  [[noreturn]] static void refuse(const nn::PlanLayer& pl, const std::string& what) {
    throw unsupported_error(
        "locus::InferencePlan: layer '" + pl.path + "': " + what +
        " has no inference lowering (lowered: Conv2D, Dense, BatchNormalization, Activation, "
        "ReLU, Softmax, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, "
        "GlobalMaxPooling2D, Add, Dropout, Flatten, Reshape); use Model::predict for this model");
  }

  nn::Plan plan_;
  const WeightSource& weights_;
  Graph g_;
  std::vector<std::size_t> readers_;   // per plan value
  std::vector<std::size_t> value_of_;  // plan value -> graph value
  std::vector<std::size_t> producer_;  // plan value -> step index that wrote it
};

}  // namespace detail

/// Lowers a model description; `weights(path, i)` returns the host values of weight i of
/// plan layer `path` (its weights() order).
inline Graph lower(const nn::Functional& description, const detail::WeightSource& weights) {
  return detail::Lowering(description, weights).take();
}

}  // namespace locus::inference
