// Model<Dev, T>: a model description bound to one device.
//
//   Functional net(inputs, outputs);            // device-neutral
//   Model<Device<GPU>> gpu(net, /*seed=*/1);    // every weight on the GPU
//   auto cpu = locus::to<Device<CPU>>(gpu);     // an explicit, counted copy of the weights
//
// The device is given once, as a type argument: every parameter, gradient, optimizer slot
// and activation is allocated there, and inputs, labels, optimizers or models of another
// device do not compile in. Inference (operator(), predict) is const: it reads the weights
// and keeps every intermediate tensor in locals, so several threads may predict with one
// model at once. A model used only for inference has no gradients and no optimizer slots.
// Training (value_and_gradient, fit) changes the model: its weights, batch-normalisation
// statistics and the step counter of its random streams.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backend/nn_backend.hpp"
#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "executor.hpp"
#include "functional.hpp"
#include "layers/common.hpp"
#include "layers/registry.hpp"
#include "losses.hpp"
#include "metrics.hpp"
#include "optimizers.hpp"
#include "parameter.hpp"
#include "plan.hpp"
#include "training/trainer.hpp"

namespace locus {

/// One layer of a model as its summary and get_layer see it.
struct ModelLayer {
  std::string name;
  std::shared_ptr<const nn::Layer> layer;
  std::string class_name() const { return layer->class_name(); }
};

/// What to copy besides the weights in locus::to<Dev>(model).
struct ModelCopyOptions {
  /// The optimizer, its slots and iteration count (when the model is compiled).
  bool optimizer = false;
};

template <class T, AnyDevice... Devs>
class MirroredModel;

template <AnyDevice Dev, class T = float>
class Model {
  static_assert(std::is_floating_point_v<T>, "locus::Model: models compute in float or double");

 public:
  using device_type = Dev;
  using value_type = T;
  using tensor = Tensor<T, Dev>;

  /// Binds `description` to Dev: allocates and initialises every weight there. Layer i of
  /// the plan is seeded from (seed, i), so equal seeds give equal weights on every device.
  explicit Model(const Functional& description, std::uint64_t seed = 0) { bind(description, seed); }
  Model(const nn::SymbolicTensor& input, const nn::SymbolicTensor& output, std::uint64_t seed = 0)
      : Model(Functional(input, output), seed) {}
  Model(const std::vector<nn::SymbolicTensor>& inputs,
        const std::vector<nn::SymbolicTensor>& outputs, std::uint64_t seed = 0)
      : Model(Functional(inputs, outputs), seed) {}
  /// Binds `description` to Dev without initialising any weight: every weight is empty
  /// until assigned (a loader fills each one straight from its file, so no value is ever
  /// drawn, and nothing is made on another device). `seed` gives the layers' random streams
  /// (dropout) those of the model that was saved.
  Model(const Functional& description, uninitialized_t, std::uint64_t seed = 0) {
    bind(description, seed, /*initialise=*/false);
  }

  /// A model bound to another device is not this model: copy it explicitly.
  template <AnyDevice D2, class T2>
  requires(!std::is_same_v<D2, Dev> || !std::is_same_v<T2, T>)
      Model(const Model<D2, T2>&) {  // NOLINT
    reject_model<D2, T2>();
  }
  template <AnyDevice D2, class T2>
  requires(!std::is_same_v<D2, Dev> || !std::is_same_v<T2, T>) Model& operator=(
      const Model<D2, T2>&) {
    reject_model<D2, T2>();
    return *this;
  }

  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;
  // A copy would silently double the device memory; locus::to<Dev>(model) makes one.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  virtual ~Model() = default;

  // ---- the description ---------------------------------------------------------------------

  bool built() const { return exec_.has_value(); }
  /// The device-neutral description this model was bound from.
  const Functional& description() const {
    require_built("description");
    return *description_;
  }
  /// Keras's configuration of the model (get_config()).
  nn::Config get_config() const { return description().config(); }
  /// The layers, as Keras's model.layers lists them.
  std::size_t size() const { return layers_.size(); }
  const ModelLayer& layer(std::size_t i) const { return layers_.at(i); }
  /// The layer called `name` (Keras's get_layer).
  const ModelLayer& get_layer(const std::string& name) const {
    for (const auto& l : layers_)
      if (l.name == name) return l;
    throw argument_error("locus::Model::get_layer: no layer is named '" + name + "'");
  }
  const Shape& input_shape() const {
    require_built("input_shape");
    return plan().shapes[plan().inputs.at(0)];
  }
  const Shape& output_shape() const {
    require_built("output_shape");
    return plan().shapes[plan().outputs.at(0)];
  }
  std::vector<Shape> input_shapes() const { return shapes_of(plan().inputs); }
  std::vector<Shape> output_shapes() const { return shapes_of(plan().outputs); }

  /// Keras-like table of the layers, their output shapes and parameter counts.
  std::string summary() const {
    require_built("summary");
    std::ostringstream os;
    const std::string rule(75, '_'), dbl(75, '=');
    os << "Model: \"" << description_->model_name() << "\" on " << device_name<Dev>() << "\n"
       << rule << "\n";
    os << std::left << std::setw(34) << " Layer (type)" << std::setw(28) << "Output Shape"
       << "Param #\n"
       << dbl << "\n";
    std::size_t trainable = 0, frozen = 0;
    for (const auto& ml : layers_) {
      std::size_t n = 0;
      for (const auto& pl : plan().layers) {
        if (pl.path != ml.name && pl.path.rfind(ml.name + "/", 0) != 0) continue;
        for (const auto& w : pl.weights) (w.trainable ? n : frozen) += w.shape.size();
      }
      trainable += n;
      std::string shape;
      for (const auto& node : description_->nodes()) {
        if (description_->layers()[node.layer].name != ml.name) continue;
        shape = "(None";
        for (auto d : node.output_shapes[0]) shape += ", " + std::to_string(d);
        shape += ")";
        break;
      }
      os << std::setw(34) << (" " + ml.name + " (" + ml.class_name() + ")") << std::setw(28)
         << shape << group(n) << "\n";
    }
    os << dbl << "\nTotal params: " << group(trainable + frozen)
       << "\nTrainable params: " << group(trainable) << "\nNon-trainable params: " << group(frozen)
       << "\n"
       << rule << "\n";
    return os.str();
  }

  // ---- weights -------------------------------------------------------------------------------

  /// The trainable weights with their gradients, in Keras's order (layer by layer).
  std::vector<nn::Parameter<Dev, T>*> parameters() {
    std::vector<nn::Parameter<Dev, T>*> ps;
    for (auto& p : params_) ps.push_back(&p);
    return ps;
  }
  std::vector<const nn::Parameter<Dev, T>*> parameters() const {
    std::vector<const nn::Parameter<Dev, T>*> ps;
    for (const auto& p : params_) ps.push_back(&p);
    return ps;
  }
  std::size_t count_params() const {
    std::size_t n = 0;
    for (const auto& p : params_) n += p.value.size();
    return n;
  }
  /// Every weight ("dense/kernel", "batch_normalization/moving_mean", ...): per layer, the
  /// trainable ones and then the others, as Keras's model.weights.
  std::vector<std::pair<std::string, tensor*>> weights() {
    std::vector<std::pair<std::string, tensor*>> w;
    for (const auto& r : weight_refs_)
      w.emplace_back(r.name, r.trainable ? &params_[r.index].value : &state_[r.index].second);
    return w;
  }
  std::vector<std::pair<std::string, const tensor*>> weights() const {
    std::vector<std::pair<std::string, const tensor*>> w;
    for (const auto& r : weight_refs_)
      w.emplace_back(r.name, r.trainable ? &params_[r.index].value : &state_[r.index].second);
    return w;
  }

  /// What each weight must be, in weights() order (for loaders: the name, the shape a
  /// value must have, whether it is trained, and the layer it belongs to).
  struct WeightInfo {
    std::string name;    ///< "dense/kernel"
    std::string layer;   ///< "dense" ("inner/dense" in a nested model)
    std::string weight;  ///< "kernel"
    Shape shape;
    bool trainable;
  };
  std::vector<WeightInfo> weight_info() const {
    require_built("weight_info");
    std::vector<WeightInfo> out;
    for (const auto& pl : plan().layers)
      for (const auto& w : pl.weights)
        out.push_back({pl.path + "/" + w.name, pl.path, w.name, w.shape, w.trainable});
    return out;
  }
  /// The layers of the plan (nested models expanded), with their descriptions.
  const std::vector<nn::PlanLayer>& plan_layers() const {
    require_built("plan_layers");
    return plan().layers;
  }

  // ---- inference ------------------------------------------------------------------------------

  /// The model's output for a batch, in inference mode (one input, one output).
  template <class TX, class DX>
  tensor operator()(const Tensor<TX, DX>& x) const {
    check_input<TX, DX>();
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      require_single("operator()");
      const tensor* in[] = {&x};
      check_inputs(in, "locus::Model");
      return std::move(exec_->infer(in, layer_weights_)[0]);
    } else {
      return tensor();
    }
  }
  /// Outputs for several inputs (in the order of the model's inputs).
  std::vector<tensor> operator()(const std::vector<tensor>& xs) const {
    std::vector<const tensor*> in;
    for (const auto& x : xs) in.push_back(&x);
    check_inputs(in, "locus::Model");
    return exec_->infer(in, layer_weights_);
  }
  /// Inputs of another device do not compile: copy them with locus::to<Dev>.
  template <AnyDevice DX>
  requires(!std::is_same_v<DX, Dev>) std::vector<tensor>
  operator()(const std::vector<Tensor<T, DX>>&) const {
    (void)sizeof(locus::detail::require_same_device<Dev, DX>);
    return {};
  }
  /// A call in training mode when `training` is true (dropout active, batch statistics,
  /// which also updates batch normalisation's moving statistics, as Keras does).
  template <class TX, class DX>
  tensor operator()(const Tensor<TX, DX>& x, bool training) {
    check_input<TX, DX>();
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      if (!training) return std::as_const(*this)(x);
      require_single("operator()");
      const tensor* in[] = {&x};
      check_inputs(in, "locus::Model");
      nn::Tape<Dev, T> tape;
      const auto outs = exec_->forward(tape, in, layer_weights_, step_++);
      return *outs[0];
    } else {
      return tensor();
    }
  }

  /// Keras's predict: outputs for any number of samples, batch_size at a time, so only
  /// one batch of activations is alive at once.
  template <class TX, class DX>
  tensor predict(const Tensor<TX, DX>& x, std::size_t batch_size = 32) const {
    check_input<TX, DX>();
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      require_single("predict");
      return std::move(predict_all({&x}, batch_size)[0]);
    } else {
      return tensor();
    }
  }
  std::vector<tensor> predict(const std::vector<tensor>& xs, std::size_t batch_size = 32) const {
    std::vector<const tensor*> in;
    for (const auto& x : xs) in.push_back(&x);
    return predict_all(in, batch_size);
  }
  template <AnyDevice DX>
  requires(!std::is_same_v<DX, Dev>) std::vector<tensor> predict(const std::vector<Tensor<T, DX>>&,
                                                                 std::size_t = 32)
  const {
    (void)sizeof(locus::detail::require_same_device<Dev, DX>);
    return {};
  }

  // ---- training -------------------------------------------------------------------------------

  /// Loss and parameter gradients of one batch, in training mode (dropout active, batch
  /// statistics). The weights are not changed; apply the gradients with
  /// Optimizer::apply_gradients(grads, model). Gradients are in parameters() order.
  ///
  /// With a loss type (SparseCategoricalCrossentropy{}, MeanSquaredError{}, ...), labels the
  /// loss does not take do not compile; a LossConfig chosen at run time is checked at run
  /// time (argument_error). Sparse labels outside [0, classes) raise label_error: on the
  /// host at once, before anything changes; on a device the one-hot kernel records them on
  /// the device (their rows add nothing to the loss or the gradients) and the model raises
  /// them at its next synchronisation point, check_labels() or the next fit() or
  /// evaluate(), because raising here would cost a round trip per step.
  template <class TX, class DX, class L, class DY, class Loss>
  requires is_loss_v<Loss> LossAndGradients<Dev, T> value_and_gradient(const Tensor<TX, DX>& x,
                                                                       const Tensor<L, DY>& y,
                                                                       const Loss& loss) {
    check_input<TX, DX>();
    (void)sizeof(locus::detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      locus::detail::require_loss_labels<Loss, L, T>();
      if constexpr (loss_takes_labels_v<Loss, L, T>) {
        return gradients_of(x, y, loss);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }
  template <class TX, class DX, class L, class DY>
  LossAndGradients<Dev, T> value_and_gradient(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
                                              const LossConfig& loss) {
    check_input<TX, DX>();
    (void)sizeof(locus::detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      nn::require_label_element<L, T>();
      if constexpr (nn::is_label_element<L, T>) {
        return nn::with_loss<L, T, LossAndGradients<Dev, T>>(
            loss, "locus::Model::value_and_gradient",
            [&](const auto& l) { return gradients_of(x, y, l); });
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// The vector-Jacobian product of a training-mode call: given inputs and dL/d(output)
  /// for every output, dL/d(input) for every input and dL/d(parameter) for every
  /// parameter (parameters() order). The weights are not changed.
  struct VJP {
    std::vector<tensor> outputs, input_grads, param_grads;
  };
  /// Without `input_grads` no input gradient is computed (as in a training step).
  VJP vjp(const std::vector<tensor>& xs, std::vector<tensor> output_grads,
          bool input_grads = true) {
    std::vector<const tensor*> in;
    for (const auto& x : xs) in.push_back(&x);
    check_inputs(in, "locus::Model::vjp");
    if (output_grads.size() != plan().outputs.size()) {
      throw argument_error("locus::Model::vjp: " + std::to_string(output_grads.size()) +
                           " output gradients for a model with " +
                           std::to_string(plan().outputs.size()) + " outputs");
    }
    nn::Tape<Dev, T> tape;
    const auto outs = exec_->forward(tape, in, layer_weights_, step_++);
    VJP r;
    for (std::size_t i = 0; i < outs.size(); ++i) {
      if (!(output_grads[i].shape() == outs[i]->shape())) {
        throw shape_error("locus::Model::vjp: output " + std::to_string(i) + " has shape " +
                          to_string(outs[i]->shape()) + ", its gradient " +
                          to_string(output_grads[i].shape()));
      }
      r.outputs.push_back(*outs[i]);
    }
    backward(tape, std::move(output_grads), input_grads ? &r.input_grads : nullptr);
    for (auto& p : params_) r.param_grads.push_back(std::move(p.grad));
    return r;
  }

  template <AnyDevice DX>
  requires(!std::is_same_v<DX, Dev>) VJP
      vjp(const std::vector<Tensor<T, DX>>&, const std::vector<Tensor<T, DX>>&, bool = true) {
    (void)sizeof(locus::detail::require_same_device<Dev, DX>);
    return {};
  }

  /// The counter that advances the random streams of training calls (dropout masks):
  /// one step per training forward pass. Setting it replays a step's masks.
  /// The seed the model was bound with (its layers' random streams, dropout's included).
  std::uint64_t seed() const { return seed_; }
  std::uint64_t training_step() const { return step_; }
  void set_training_step(std::uint64_t s) { step_ = s; }

  /// Raises label_error if a sparse label outside [0, classes) reached value_and_gradient on
  /// a device since the last check (the record is then cleared). One counted 8-byte read;
  /// call it where a custom loop synchronises anyway (when it reads its loss, say). On the
  /// host value_and_gradient raises at once, so this never throws there.
  void check_labels() {
    if constexpr (!HostDevice<Dev>) {
      if (custom_loop_labels_.status) {
        nn::raise_label_status(*custom_loop_labels_.status, custom_loop_labels_.classes,
                               "locus::Model::value_and_gradient");
      }
    }
  }

  /// Sets the optimizer, loss and metrics used by fit() and evaluate(). With a loss type,
  /// the returned trainer's fit and evaluate check the labels' type at compile time.
  template <class Loss>
  requires(is_loss_v<Loss> || std::is_same_v<Loss, LossConfig>)
      nn::CompiledModel<Model, Loss> compile(OptimizerConfig optimizer, const Loss& loss,
                                             std::vector<Metric> metrics = {}) {
    trainer_.emplace(optimizer, LossConfig(loss), std::move(metrics));
    return nn::CompiledModel<Model, Loss>(*this);
  }
  bool compiled() const { return trainer_.has_value(); }
  Optimizer<Dev, T>& optimizer() {
    if (!trainer_) throw argument_error("locus::Model::optimizer: call compile() first");
    return trainer_->optimizer();
  }
  const Optimizer<Dev, T>& optimizer() const {
    if (!trainer_) throw argument_error("locus::Model::optimizer: call compile() first");
    return trainer_->optimizer();
  }
  /// The loss and metrics compile() was given (a saved model keeps them).
  const LossConfig& loss() const {
    if (!trainer_) throw argument_error("locus::Model::loss: call compile() first");
    return trainer_->loss();
  }
  const std::vector<Metric>& metrics() const {
    if (!trainer_) throw argument_error("locus::Model::metrics: call compile() first");
    return trainer_->metrics();
  }

  /// Keras's fit: trains for o.epochs over (x, y) in batches and returns the history.
  ///
  /// The loss and metrics must take the labels (argument_error) and sparse labels must lie
  /// in [0, classes) (label_error, validation labels included); both are checked before the
  /// first step, so a failing fit leaves the model as it was. On a device the range check
  /// is one 24-byte read per call, not per step.
  template <class TX, class DX, class L, class DY>
  History fit(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
              const FitOptions<Dev, T, L>& o = {}) {
    check_input<TX, DX>();
    (void)sizeof(locus::detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      nn::require_label_element<L, T>();
      if constexpr (nn::is_label_element<L, T>) {
        return trainer("fit").fit(*this, x, y, o);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// Keras's evaluate: mean loss and metrics over (x, y), computed batch by batch. Sparse
  /// labels outside [0, classes) raise label_error (on a device, found by the one-hot
  /// kernel and read with the sums, so at no extra transfer).
  template <class TX, class DX, class L, class DY>
  Logs evaluate(const Tensor<TX, DX>& x, const Tensor<L, DY>& y, std::size_t batch_size = 32) {
    check_input<TX, DX>();
    (void)sizeof(locus::detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      nn::require_label_element<L, T>();
      if constexpr (nn::is_label_element<L, T>) {
        return trainer("evaluate").evaluate(*this, x, y, batch_size);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  // ---- datasets ---------------------------------------------------------------------------------

  /// fit on a batched data::Dataset whose batches arrive on this model's device (a dataset
  /// of another device does not compile: retarget it with locus::to<Dev>(dataset)). Each
  /// epoch is one pass (epoch e opens pass e, so shuffles differ between epochs and repeat
  /// between runs); with o.steps_per_epoch the pass continues across epochs. Shapes and
  /// sparse labels are checked batch by batch before the batch is used (on the host, also
  /// for a device's batches, before their upload); an error of the pipeline ends fit with
  /// that error, after its threads are joined.
  template <AnyDevice DD, class TX, class L>
  History fit(const data::Dataset<DD, TX, L>& ds, const FitOptions<Dev, T, L>& o = {}) {
    (void)sizeof(locus::detail::dataset_device_mismatch<Dev, DD>);
    (void)sizeof(locus::detail::element_type_mismatch<T, TX>);
    if constexpr (std::is_same_v<DD, Dev> && std::is_same_v<TX, T>) {
      nn::require_label_element<L, T>();
      if constexpr (nn::is_label_element<L, T>) {
        return trainer("fit").fit(*this, ds, o);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// Keras's evaluate on a batched dataset of this model's device: one pass.
  template <AnyDevice DD, class TX, class L>
  Logs evaluate(const data::Dataset<DD, TX, L>& ds) {
    (void)sizeof(locus::detail::dataset_device_mismatch<Dev, DD>);
    (void)sizeof(locus::detail::element_type_mismatch<T, TX>);
    if constexpr (std::is_same_v<DD, Dev> && std::is_same_v<TX, T>) {
      nn::require_label_element<L, T>();
      if constexpr (nn::is_label_element<L, T>) {
        return trainer("evaluate").evaluate(*this, ds);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// The outputs for every batch of one pass of a dataset of this model's device, in order,
  /// as one tensor (the labels are not used).
  template <AnyDevice DD, class TX, class L>
  tensor predict(const data::Dataset<DD, TX, L>& ds) const {
    (void)sizeof(locus::detail::dataset_device_mismatch<Dev, DD>);
    (void)sizeof(locus::detail::element_type_mismatch<T, TX>);
    if constexpr (std::is_same_v<DD, Dev> && std::is_same_v<TX, T>) {
      require_single("predict");
      std::vector<tensor> outs;
      std::size_t n = 0;
      auto pass = ds.open();
      while (auto e = pass.next()) {
        const tensor* in[] = {&e->x};
        check_inputs(in, "locus::Model::predict (the batch that starts at record " +
                             std::to_string(e->record) + ")");
        outs.push_back(std::move(exec_->infer(in, layer_weights_)[0]));
        n += outs.back().shape()[0];
      }
      tensor out(uninitialized, nn::with_batch(n, output_shape()));
      std::size_t at = 0;
      for (const tensor& o : outs) {
        backend_t<Dev>::copy(o.storage(), 0, out.storage(), at, o.size());
        at += o.size();
      }
      return out;
    } else {
      return tensor();
    }
  }

  // ---- copies to other devices ------------------------------------------------------------------

  /// This model on device D2 (what locus::to<D2>(model) calls): the same description and
  /// weights, each weight one counted transfer; the optimizer state too when asked.
  template <AnyDevice D2>
  Model<D2, T> copy_to(ModelCopyOptions o = {}) const {
    require_built("to<Dev>");
    Model<D2, T> m;
    copy_into(m, o);
    return m;
  }

 protected:
  template <AnyDevice, class>
  friend class Model;
  template <AnyDevice, class>
  friend class nn::Trainer;
  template <class, AnyDevice...>
  friend class MirroredModel;

  Model() = default;

  /// Binds a description (Sequential builds through this). Without `initialise` the
  /// weights are left empty, to be filled by a copy or a load.
  void bind(const Functional& description, std::uint64_t seed, bool initialise = true) {
    description_.emplace(description);
    seed_ = seed;
    auto plan = std::make_shared<const nn::Plan>(*description_);
    std::vector<std::unique_ptr<const nn::LayerKernel<Dev, T>>> kernels;
    for (const auto& pl : plan->layers) kernels.push_back(nn::bind_layer<Dev, T>(pl.layer));
    // Weights, with the positions of each layer's weights recorded first, so that the
    // pointers taken afterwards stay valid (the vectors never grow again).
    params_.clear();
    state_.clear();
    weight_refs_.clear();
    std::vector<std::vector<weight_ref>> per_layer(plan->layers.size());
    for (std::size_t i = 0; i < plan->layers.size(); ++i) {
      const nn::PlanLayer& pl = plan->layers[i];
      const std::uint64_t layer_seed = seed * 1000003ull + i + 1;
      for (std::size_t j = 0; j < pl.weights.size(); ++j) {
        const nn::WeightSpec& ws = pl.weights[j];
        // The first random weight of a layer uses the layer's seed; later ones their own.
        const std::uint64_t s = j == 0 ? layer_seed : layer_seed + 0x632BE59BD9B4E019ull * j;
        tensor v = initialise ? nn::initial_value<T, Dev>(ws, s) : tensor();
        const std::string name = pl.path + "/" + ws.name;
        if (ws.trainable) {
          per_layer[i].push_back({name, true, params_.size()});
          params_.push_back({name, std::move(v), {}});
        } else {
          per_layer[i].push_back({name, false, state_.size()});
          state_.emplace_back(name, std::move(v));
        }
      }
    }
    layer_weights_.assign(plan->layers.size(), {});
    for (std::size_t i = 0; i < plan->layers.size(); ++i) {
      nn::LayerWeights<Dev, T>& lw = layer_weights_[i];
      lw.seed = seed * 1000003ull + i + 1;
      for (const weight_ref& r : per_layer[i]) {
        weight_refs_.push_back(r);
        if (r.trainable) {
          lw.all.push_back(&params_[r.index].value);
          lw.params.push_back(r.index);
        } else {
          lw.all.push_back(&state_[r.index].second);
          lw.state.push_back(&state_[r.index].second);
        }
      }
    }
    exec_.emplace(std::move(plan), std::move(kernels));
    layers_.clear();
    const bool sequential = description_->class_name() == "Sequential";
    for (const auto& gl : description_->layers()) {
      if (sequential && gl.layer->class_name() == "InputLayer") continue;
      layers_.push_back({gl.name, gl.layer});
    }
  }

  void require_built(const char* what) const {
    if (!built()) {
      throw argument_error(std::string("locus::Model::") + what +
                           ": the model is not built; call build(input_shape) or run it once");
    }
  }

  const nn::Plan& plan() const { return exec_->plan(); }

  template <class TX, class DX>
  static void check_input() {
    (void)sizeof(locus::detail::require_same_device<Dev, DX>);
    static_assert(
        std::is_same_v<TX, T> || !std::is_same_v<DX, Dev>,
        "locus::Model: inputs must have the model's element type; convert with locus::cast<T>(x)");
  }

  template <AnyDevice D2, class T2>
  static void reject_model() {
    if constexpr (!std::is_same_v<D2, Dev>) {
      (void)sizeof(locus::detail::model_device_mismatch<Dev, D2>);
    } else {
      static_assert(
          std::is_same_v<T2, T>,
          "locus::Model: the models compute in different element types; a model's element "
          "type is fixed when it is bound");
    }
  }

  void require_single(const char* what) const {
    require_built(what);
    if (plan().inputs.size() != 1 || plan().outputs.size() != 1) {
      throw argument_error(std::string("locus::Model::") + what + ": the model has " +
                           std::to_string(plan().inputs.size()) + " inputs and " +
                           std::to_string(plan().outputs.size()) +
                           " outputs; pass a std::vector of inputs");
    }
  }

  /// Every input must be [N, ...the model's input shape], with one N for all.
  void check_inputs(std::span<const tensor* const> in, const std::string& where) const {
    require_built("call");
    const nn::Plan& p = plan();
    if (in.size() != p.inputs.size()) {
      throw argument_error(where + ": " + std::to_string(in.size()) + " inputs for a model with " +
                           std::to_string(p.inputs.size()));
    }
    for (std::size_t i = 0; i < in.size(); ++i) {
      const Shape& want = p.shapes[p.inputs[i]];
      const Shape& s = in[i]->shape();
      if (s.rank() != want.rank() + 1 || !std::equal(want.begin(), want.end(), s.begin() + 1) ||
          (i && s[0] != in[0]->shape()[0])) {
        std::string expect = "[N";
        for (auto d : want) expect += ", " + std::to_string(d);
        throw shape_error(
            where + ": input " + (in.size() > 1 ? std::to_string(i) + " " : "") + "of shape " +
            to_string(s) + " does not match the model's input " + expect + "]" +
            (i && s.rank() && s[0] != in[0]->shape()[0] ? " (inputs differ in batch size)" : ""));
      }
    }
  }

  std::vector<tensor> predict_all(std::vector<const tensor*> in, std::size_t batch_size) const {
    check_inputs(in, "locus::Model::predict");
    if (batch_size == 0) throw argument_error("locus::Model::predict: batch_size must be positive");
    const nn::Plan& p = plan();
    const std::size_t n = in[0]->shape()[0];
    std::vector<tensor> out;
    for (auto v : p.outputs) out.emplace_back(uninitialized, nn::with_batch(n, p.shapes[v]));
    for (std::size_t s = 0; s < n || (n == 0 && s == 0); s += batch_size) {
      if (n == 0) break;
      const std::size_t e = std::min(n, s + batch_size);
      std::vector<tensor> slices;
      std::vector<const tensor*> ptrs;
      if (s == 0 && e == n) {
        ptrs = in;  // one batch: no slice copy
      } else {
        for (const tensor* x : in) slices.push_back(x->slice(s, e));
        for (const auto& x : slices) ptrs.push_back(&x);
      }
      std::vector<tensor> yb = exec_->infer(ptrs, layer_weights_);
      for (std::size_t k = 0; k < out.size(); ++k) {
        if (s == 0 && e == n) {
          out[k] = std::move(yb[k]);
        } else {
          const std::size_t row = p.shapes[p.outputs[k]].size();
          backend_t<Dev>::copy(yb[k].storage(), 0, out[k].storage(), s * row, (e - s) * row);
        }
      }
    }
    return out;
  }

  // The number of classes sparse labels index: the width of a [N, classes] output (0 when
  // the output has another shape; the loss then reports the shape).
  std::size_t sparse_classes() const {
    const Shape& s = output_shape();
    return s.rank() == 1 ? s[0] : 0;
  }

  /// The backward pass of a tape into the parameters' gradients.
  void backward(nn::Tape<Dev, T>& tape, std::vector<tensor> dy, std::vector<tensor>* input_grads) {
    std::vector<tensor*> grads;
    std::vector<Shape> shapes;
    for (auto& p : params_) {
      grads.push_back(&p.grad);
      shapes.push_back(p.value.shape());
    }
    exec_->backward(tape, std::move(dy), layer_weights_, grads, shapes, input_grads);
  }

  /// Forward in training mode, loss, backward: leaves the gradients in the parameters and
  /// returns the batch loss. `on_output` sees the output before the backward pass frees it
  /// (fit's metrics). Host labels are checked by the callers; device labels out of range
  /// go to `rec`.
  template <class L, class Loss, class OnOutput>
  tensor train_batch(const tensor& x, const Tensor<L, Dev>& y, const Loss& loss,
                     nn::LabelRecord<Dev>& rec, OnOutput&& on_output) {
    const tensor* in[] = {&x};
    nn::Tape<Dev, T> tape;
    tape.replicas = replicas_;
    const auto outs = exec_->forward(tape, in, layer_weights_, step_++);
    nn::loss_value<T, Dev> lv = nn::loss_of(loss, *outs[0], y, rec);
    on_output(*outs[0]);
    std::vector<tensor> dy;
    dy.push_back(std::move(lv.grad));
    backward(tape, std::move(dy), nullptr);
    return std::move(lv.value);
  }

  // value_and_gradient with a loss that takes the labels.
  template <class L, class Loss>
  LossAndGradients<Dev, T> gradients_of(const tensor& x, const Tensor<L, Dev>& y,
                                        const Loss& loss) {
    require_single("value_and_gradient");
    const tensor* in[] = {&x};
    check_inputs(in, "locus::Model::value_and_gradient");
    // Host labels out of range throw before the forward pass, so that nothing changes (not
    // even batch normalisation's moving statistics).
    if constexpr (HostDevice<Dev> && std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
      if (const std::size_t c = sparse_classes()) {
        nn::check_labels(y.data(), y.size(), c, "locus::Model::value_and_gradient");
      }
    }
    LossAndGradients<Dev, T> r{train_batch(x, y, loss, custom_loop_labels_, [](const tensor&) {}),
                               {}};
    for (auto& p : params_) r.grads.push_back(std::move(p.grad));
    return r;
  }

  nn::Trainer<Dev, T>& trainer(const char* what) {
    if (!trainer_)
      throw argument_error(std::string("locus::Model::") + what + ": call compile() first");
    return *trainer_;
  }

  template <AnyDevice D2>
  void copy_into(Model<D2, T>& m, ModelCopyOptions o) const {
    m.bind(*description_, seed_, /*initialise=*/false);
    for (std::size_t i = 0; i < params_.size(); ++i)
      m.params_[i].value = locus::to<D2>(params_[i].value);
    for (std::size_t i = 0; i < state_.size(); ++i)
      m.state_[i].second = locus::to<D2>(state_[i].second);
    m.step_ = step_;
    if (o.optimizer && trainer_) m.trainer_.emplace(trainer_->template copy_to<D2>());
  }

  static std::string group(std::size_t n) {
    std::string s = std::to_string(n);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
      s.insert(static_cast<std::size_t>(i), ",");
    return s;
  }

  std::vector<Shape> shapes_of(const std::vector<std::size_t>& ids) const {
    require_built("shapes");
    std::vector<Shape> s;
    for (auto v : ids) s.push_back(plan().shapes[v]);
    return s;
  }

  struct weight_ref {
    std::string name;
    bool trainable;
    std::size_t index;
  };

  std::optional<Functional> description_;
  std::optional<nn::Executor<Dev, T>> exec_;
  std::vector<nn::Parameter<Dev, T>> params_;
  std::vector<std::pair<std::string, tensor>> state_;
  std::vector<weight_ref> weight_refs_;
  std::vector<nn::LayerWeights<Dev, T>> layer_weights_;
  std::vector<ModelLayer> layers_;
  std::uint64_t seed_ = 0, step_ = 0;
  std::optional<nn::Trainer<Dev, T>> trainer_;
  // Sparse labels out of range seen on the device by value_and_gradient (read by
  // check_labels, fit and evaluate).
  nn::LabelRecord<Dev> custom_loop_labels_;
  // The other replicas, when this model is one replica of a MirroredModel (which sets it):
  // the training steps' layers that synchronise across replicas meet them through it.
  const nn::CrossReplica<Dev, T>* replicas_ = nullptr;
};

/// A copy of `model` on device Dst: the same description, every weight crossing with one
/// counted transfer (and the optimizer state when o.optimizer is set). The only way a
/// model moves between devices.
template <AnyDevice Dst, AnyDevice Src, class T>
Model<Dst, T> to(const Model<Src, T>& model, ModelCopyOptions o = {}) {
  return model.template copy_to<Dst>(o);
}

}  // namespace locus
