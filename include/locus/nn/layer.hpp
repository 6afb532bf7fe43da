// Layers: device-neutral descriptions with stateless, device-typed execution.
//
// A layer is two things that live apart:
//  * its description (nn::Layer): the Keras class name, the configuration in Keras's keys,
//    output-shape inference and the weights it needs. It holds no tensors and names no
//    device, so it can be written out, read back and bound to any device.
//  * its execution, templates of the concrete layer class (forward<Dev, T>,
//    backward<Dev, T>), run by a model bound to a device. They are const: the weights are
//    arguments, and what a training step must remember between the forward and the
//    backward pass goes into a per-call record (Saved) that the caller owns. A layer can
//    therefore be called several times in one model (shared weights), and several threads
//    may run inference through one model at once.
//
// Backward passes return the gradient of each input and *set* the gradient of each
// weight for this one call; the model adds the contributions of every call of a shared
// layer (and of every consumer of a tensor), so nothing is overwritten.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../device.hpp"
#include "../error.hpp"
#include "../shape.hpp"
#include "../tensor.hpp"
#include "config.hpp"
#include "symbolic.hpp"

namespace locus::nn {

/// How a weight starts out (Keras's initializer names and arguments).
struct Initializer {
  enum class kind { zeros, ones, glorot_uniform, random_uniform };
  kind k = kind::zeros;
  double minval = -0.05, maxval = 0.05;  // random_uniform

  static Initializer zeros() { return {kind::zeros}; }
  static Initializer ones() { return {kind::ones}; }
  static Initializer glorot_uniform() { return {kind::glorot_uniform}; }
  static Initializer random_uniform(double lo = -0.05, double hi = 0.05) {
    return {kind::random_uniform, lo, hi};
  }
  /// Keras's serialised form: {"class_name": "GlorotUniform", "config": {"seed": null}}.
  Config config() const {
    switch (k) {
      case kind::zeros:
        return Config::make({{"module", "keras.initializers"},
                             {"class_name", "Zeros"},
                             {"config", Config::object{}}});
      case kind::ones:
        return Config::make({{"module", "keras.initializers"},
                             {"class_name", "Ones"},
                             {"config", Config::object{}}});
      case kind::glorot_uniform:
        return Config::make({{"module", "keras.initializers"},
                             {"class_name", "GlorotUniform"},
                             {"config", Config::make({{"seed", nullptr}})}});
      case kind::random_uniform:
        return Config::make(
            {{"module", "keras.initializers"},
             {"class_name", "RandomUniform"},
             {"config",
              Config::make({{"minval", minval}, {"maxval", maxval}, {"seed", nullptr}})}});
    }
    return {};
  }
  /// Reads Keras's form (a class name string or {"class_name": ..., "config": ...}).
  static Initializer from_config(const Config& c) {
    const std::string name = c.is_string() ? c.as_string() : c.at("class_name").as_string();
    if (name == "Zeros" || name == "zeros") return zeros();
    if (name == "Ones" || name == "ones") return ones();
    if (name == "GlorotUniform" || name == "glorot_uniform") return glorot_uniform();
    if (name == "RandomUniform" || name == "random_uniform" || name == "uniform") {
      Initializer i = random_uniform();
      if (c.is_object()) {
        if (const Config* cfg = c.find("config")) {
          if (const Config* lo = cfg->find("minval")) i.minval = lo->as_double();
          if (const Config* hi = cfg->find("maxval")) i.maxval = hi->as_double();
        }
      }
      return i;
    }
    throw config_error("locus: initializer '" + name +
                       "' is not supported (known: Zeros, Ones, GlorotUniform, RandomUniform)");
  }
};

/// One weight a layer needs, in Keras's order (trainable ones first).
struct WeightSpec {
  std::string name;  ///< "kernel", "bias", "gamma", "moving_mean", ...
  Shape shape;
  Initializer init;
  bool trainable = true;
};

/// What a layer's backward pass reads from its forward pass, so that a model keeps only
/// those activations alive (and may hand the others to the next layer to reuse).
struct BackwardNeeds {
  bool inputs = true;
  bool outputs = true;
};

/// An activation derivative that a plan may move out of the backward pass of the layer
/// whose output the activation produces, into the backward pass of the one layer that
/// reads that output (gradient fusion, decided in plan.hpp): a max pooling after a relu
/// layer then returns dL/dz directly (relu'(z) at the argmax is [pool output != 0]), and
/// the big tensor between them is neither kept nor passed over once more.
enum class MovedGrad { none, relu };

/// The device-neutral description of a layer.
class Layer {
 public:
  virtual ~Layer() = default;

  /// Keras's class name ("Dense").
  virtual std::string class_name() const = 0;
  /// Keras's configuration of this layer, without the name (models store names apart).
  virtual Config config() const = 0;
  /// Number of inputs a call takes.
  virtual std::size_t min_inputs() const { return 1; }
  virtual std::size_t max_inputs() const { return 1; }
  /// Per-sample output shapes (no batch axis) for per-sample input shapes; throws
  /// shape_error when the inputs do not fit.
  virtual std::vector<Shape> output_shapes(const std::vector<Shape>& inputs) const = 0;
  /// The weights a call on inputs of these shapes needs (none by default).
  virtual std::vector<WeightSpec> weights(const std::vector<Shape>& /*inputs*/) const { return {}; }
  virtual BackwardNeeds backward_needs() const { return {}; }

  /// Gradient fusion, producer side: the derivative this layer's backward pass can leave
  /// to the consumer of its output (its activation's), or none. When a plan moves it, the
  /// backward pass gets Backward::output_grad_applied, finds dL/d(pre-activation) in dy[0]
  /// and must read no output (out[0] is then null unless backward_needs keeps it anyway).
  virtual MovedGrad movable_output_grad() const { return MovedGrad::none; }
  /// Gradient fusion, consumer side: whether the layer can apply `g` to the gradient of its
  /// input `i`. A training call is told so in both passes (Forward::apply_to_dx,
  /// Backward::apply_to_dx), so that the forward pass can keep in its Saved record what
  /// the backward pass will need for it.
  virtual bool can_apply_input_grad(MovedGrad /*g*/, std::size_t /*input*/) const { return false; }
  /// A copy of this description (the snapshot a model keeps).
  virtual std::shared_ptr<const Layer> clone() const = 0;

  /// The user's name for the layer ("" until one is given: the model then names it).
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }

  /// Symbolic call: records a node of this layer in the graph being built and returns
  /// its outputs (LayerSpec's operator() is the usual spelling).
  std::vector<SymbolicTensor> call(const std::vector<SymbolicTensor>& inputs) const;

 protected:
  Layer() : slot_(std::make_shared<detail::LayerSlot>()) {}
  Layer(const Layer&) = default;
  Layer& operator=(const Layer&) = default;

  /// Gives this object an identity of its own (a snapshot must not share its original's:
  /// the original's slot holds the snapshot, and a shared slot would make a cycle).
  void detach() { slot_ = std::make_shared<detail::LayerSlot>(); }

  std::string name_;

 private:
  // Copies of a layer object are the same layer, as a Python variable bound twice is in
  // Keras: calling any of them again shares the weights of the first call.
  std::shared_ptr<detail::LayerSlot> slot_;
};

/// Base of the concrete layers: the symbolic call operators, naming and cloning.
template <class Derived>
class LayerSpec : public Layer {
 public:
  /// y = layer(x) on a symbolic tensor (functional API).
  SymbolicTensor operator()(const SymbolicTensor& x) const { return call({x}).front(); }
  /// y = layer({a, b}) for layers of several inputs (Add, Concatenate, ...).
  SymbolicTensor operator()(const std::vector<SymbolicTensor>& xs) const {
    return call(xs).front();
  }

  /// Gives the layer a name (Keras's name= argument); names are unique within a model.
  Derived& named(std::string n) & {
    name_ = std::move(n);
    return static_cast<Derived&>(*this);
  }
  Derived&& named(std::string n) && {
    name_ = std::move(n);
    return static_cast<Derived&&>(*this);
  }

  std::string class_name() const override { return Derived::keras_class; }
  std::shared_ptr<const Layer> clone() const override {
    auto copy = std::make_shared<Derived>(static_cast<const Derived&>(*this));
    copy->detach();
    return copy;
  }
};

// ---- execution -------------------------------------------------------------------------

/// The replicas of a data-parallel training step (parallel/mirrored.hpp), for a layer whose
/// training call needs the global batch's statistics (synchronized batch normalisation).
/// Every replica calls sum() at the same point of its step, with tensors of equal shapes;
/// each tensor becomes the element-wise sum over the replicas, the same on all of them.
template <AnyDevice Dev, class T>
class CrossReplica {
 public:
  virtual ~CrossReplica() = default;
  virtual void sum(const std::vector<Tensor<T, Dev>*>& ts) const = 0;
};

/// What one training call of a layer keeps for its backward pass (owned by the caller).
template <AnyDevice Dev, class T>
struct Saved {
  std::vector<Tensor<T, Dev>> tensors;
  std::vector<Tensor<std::int32_t, Dev>> indices;
  /// Host numbers the backward pass needs (row counts, say).
  std::vector<double> scalars;
  /// The other replicas of this step, when the model is one of several (else null).
  const CrossReplica<Dev, T>* replicas = nullptr;
};

/// One input of a layer call. When the caller no longer needs the tensor, take() moves
/// it out (a Flatten or an inference Dropout then costs nothing); otherwise it copies.
template <AnyDevice Dev, class T>
class Arg {
 public:
  using tensor = Tensor<T, Dev>;
  Arg(const tensor& t, tensor* owner) : t_(&t), owner_(owner) {}
  const tensor& get() const { return *t_; }
  const tensor& operator*() const { return *t_; }
  const tensor* operator->() const { return t_; }
  const Shape& shape() const { return t_->shape(); }
  bool owned() const { return owner_ != nullptr; }
  tensor take() const {
    if (owner_) return std::move(*owner_);
    return *t_;
  }

 private:
  const tensor* t_;
  tensor* owner_;
};

/// The arguments of a forward call.
template <AnyDevice Dev, class T>
struct Forward {
  using tensor = Tensor<T, Dev>;
  std::span<const Arg<Dev, T>> in;
  /// Every weight of the layer, in weights() order.
  std::span<const tensor* const> w;
  /// Training only (null in inference): the call's record for backward, the layer's
  /// non-trainable weights (in weights() order among the non-trainable ones) that a
  /// training call updates, and the random stream of this call.
  Saved<Dev, T>* saved = nullptr;
  std::span<tensor* const> state{};
  std::uint64_t seed = 0;
  /// Training only, gradient fusion (plan.hpp): the backward pass of this call will apply
  /// this derivative to the gradient of input apply_to_dx_input (Backward::apply_to_dx).
  MovedGrad apply_to_dx = MovedGrad::none;
  std::size_t apply_to_dx_input = 0;

  bool training() const { return saved != nullptr; }
  const tensor& x(std::size_t i = 0) const { return in[i].get(); }
};

/// The arguments of a backward call. Inputs and outputs the layer did not ask to keep
/// (backward_needs) are null; their shapes (with the batch axis) are always there.
template <AnyDevice Dev, class T>
struct Backward {
  using tensor = Tensor<T, Dev>;
  std::span<const tensor* const> in;
  std::span<const Shape> in_shapes;
  std::span<const tensor* const> out;
  /// dL/d(output i); owned by the caller and not needed after the call (may be reused).
  std::span<tensor* const> dy;
  std::span<const tensor* const> w;
  Saved<Dev, T>& saved;
  /// Whether dL/d(input i) is wanted; unwanted ones are returned empty.
  std::span<const bool> need_dx;
  /// dL/d(trainable weight j) of this call, to be set by the layer (trainable order).
  std::span<tensor> dw;
  std::uint64_t seed = 0;
  /// Gradient fusion (plan.hpp): dy[0] already has this layer's movable_output_grad()
  /// applied by the consumer of the output; skip it (out[0] may be null).
  bool output_grad_applied = false;
  /// Gradient fusion: the input (index apply_to_dx_input) was produced by an activation
  /// whose derivative this call applies to its dx (its forward pass was told as well).
  MovedGrad apply_to_dx = MovedGrad::none;
  std::size_t apply_to_dx_input = 0;
};

/// The device-typed face of a layer that a bound model calls. Implemented once, for
/// every layer class, by Kernel<Spec, Dev, T> below.
template <AnyDevice Dev, class T>
class LayerKernel {
 public:
  using tensor = Tensor<T, Dev>;
  virtual ~LayerKernel() = default;
  virtual std::vector<tensor> forward(const Forward<Dev, T>& f) const = 0;
  virtual std::vector<tensor> backward(const Backward<Dev, T>& b) const = 0;
};

template <class Spec, AnyDevice Dev, class T>
class Kernel final : public LayerKernel<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit Kernel(std::shared_ptr<const Layer> layer)
      : keep_(std::move(layer)), spec_(static_cast<const Spec&>(*keep_)) {}
  std::vector<tensor> forward(const Forward<Dev, T>& f) const override {
    return spec_.template forward<Dev, T>(f);
  }
  std::vector<tensor> backward(const Backward<Dev, T>& b) const override {
    return spec_.template backward<Dev, T>(b);
  }

 private:
  std::shared_ptr<const Layer> keep_;
  const Spec& spec_;
};

// ---- the symbolic call -----------------------------------------------------------------

inline std::vector<SymbolicTensor> Layer::call(const std::vector<SymbolicTensor>& inputs) const {
  // The first call snapshots this description; later calls of this object (or a copy)
  // reuse the snapshot, so the model sees one layer with one set of weights.
  if (!slot_->snapshot) slot_->snapshot = clone();
  const Layer& layer = *slot_->snapshot;
  const std::string who =
      "locus::" + layer.class_name() + (name_.empty() ? "" : " '" + name_ + "'");
  if (inputs.size() < layer.min_inputs() || inputs.size() > layer.max_inputs()) {
    const bool one = layer.min_inputs() == layer.max_inputs();
    throw argument_error(
        who + ": called on " + std::to_string(inputs.size()) + " inputs, takes " +
        (one ? std::to_string(layer.min_inputs())
             : std::to_string(layer.min_inputs()) + " to " +
                   (layer.max_inputs() == SIZE_MAX ? std::string("any number")
                                                   : std::to_string(layer.max_inputs()))));
  }
  std::vector<Shape> shapes;
  for (const auto& x : inputs) {
    if (!x.valid()) throw argument_error(who + ": called on an empty symbolic tensor");
    shapes.push_back(x.shape());
  }
  std::vector<Shape> out = layer.output_shapes(shapes);
  // A shared layer needs weights of the same shapes at every call.
  if (!slot_->input_shapes.empty()) {
    const auto first = layer.weights(slot_->input_shapes), now = layer.weights(shapes);
    bool same = first.size() == now.size();
    for (std::size_t i = 0; same && i < first.size(); ++i) same = first[i].shape == now[i].shape;
    if (!same) {
      std::string s;
      for (const auto& sh : shapes) s += (s.empty() ? "" : ", ") + to_string(sh);
      std::string f;
      for (const auto& sh : slot_->input_shapes) f += (f.empty() ? "" : ", ") + to_string(sh);
      throw shape_error(who +
                        ": a layer called again shares its weights, so it needs inputs like " +
                        "its first call's (" + f + "), got " + s);
    }
  } else {
    slot_->input_shapes = shapes;
  }
  auto node = std::make_shared<detail::Node>();
  node->layer = slot_->snapshot;
  node->inputs = inputs;
  node->output_shapes = std::move(out);
  std::vector<SymbolicTensor> result;
  for (std::size_t i = 0; i < node->output_shapes.size(); ++i) result.emplace_back(node, i);
  return result;
}

// ---- helpers shared by layer implementations ----------------------------------------------

/// "locus::Dense 'head'": the prefix of a layer's messages.
inline std::string layer_label(const Layer& l) {
  return "locus::" + l.class_name() + (l.name().empty() ? "" : " '" + l.name() + "'");
}

/// A shape with the batch axis put back in front.
inline Shape with_batch(std::size_t n, const Shape& per_sample) {
  Shape s{n};
  for (auto d : per_sample) s.push_back(d);
  return s;
}

/// The shape without its first (batch) axis.
inline Shape per_sample(const Shape& s) {
  return Shape(s.begin() + (s.rank() ? 1 : 0), s.end());
}

/// Reads a [h, w] pair or a single integer from a config entry (Keras accepts both).
inline std::pair<std::size_t, std::size_t> config_pair(const Config& c) {
  if (c.is_array()) {
    const auto& a = c.as_array();
    if (a.size() != 2) throw config_error("locus: expected a pair of integers, found " + c.dump());
    return {static_cast<std::size_t>(a[0].as_int()), static_cast<std::size_t>(a[1].as_int())};
  }
  const auto v = static_cast<std::size_t>(c.as_int());
  return {v, v};
}

}  // namespace locus::nn
