// Sequential<Dev, T>: a Keras-style stack of layers that lives on one device.
//
// The device is given once, as a type argument; every layer, parameter, gradient,
// optimizer slot and activation is allocated there, and data of any other device does not
// compile in. Training keeps all running sums (loss, one per metric) on the device and
// reads them together, in one transfer, once per epoch (or a few times a second for a live
// progress bar), so a GPU epoch makes a handful of counted transfers, not one per step.
// Sparse labels out of range are found without a read per step too: fit checks the whole
// label set once before training, and on a device evaluate and value_and_gradient let the
// one-hot kernel record them on the device, read at the next synchronisation point.
#pragma once

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../backend/nn_backend.hpp"
#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "callbacks.hpp"
#include "layer.hpp"
#include "layers/make_layer.hpp"
#include "losses.hpp"
#include "metrics.hpp"
#include "optimizers.hpp"

namespace locus {

using LossConfig =
    std::variant<SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError>;

/// Validation data for fit(): tensors on the model's device.
template <AnyDevice Dev, class T, class L>
struct ValidationData {
  const Tensor<T, Dev>* x = nullptr;
  const Tensor<L, Dev>* y = nullptr;
  ValidationData() = default;
  template <class TX, class DX, class TY, class DY>
  ValidationData(const Tensor<TX, DX>& vx, const Tensor<TY, DY>& vy) {  // NOLINT
    (void)sizeof(detail::require_same_device<Dev, DX>);
    (void)sizeof(detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<Dev, DX> && std::is_same_v<Dev, DY>) {
      x = &vx;
      y = &vy;
    }
  }
};

template <AnyDevice Dev, class T, class L>
struct FitOptions {
  std::size_t epochs = 1;
  std::size_t batch_size = 32;
  ValidationData<Dev, T, L> validation_data{};
  bool shuffle = true;
  /// 0 silent, 1 a progress bar on a terminal and one line per epoch otherwise, 2 one line
  /// per epoch.
  int verbose = 1;
  std::vector<std::shared_ptr<Callback>> callbacks{};
  /// Seed of the per-epoch shuffles.
  std::uint64_t seed = 0;
  std::ostream* out = &std::cout;
};

/// Loss and gradients of one batch (custom training loops).
template <AnyDevice Dev, class T>
struct LossAndGradients {
  Tensor<T, Dev> loss;                ///< rank 0, on the model's device
  std::vector<Tensor<T, Dev>> grads;  ///< one per parameter, in parameters() order
};

template <AnyDevice Dev, class T = float>
class Sequential {
  static_assert(std::is_floating_point_v<T>, "locus::Sequential: models compute in float or double");

 public:
  using device_type = Dev;
  using value_type = T;
  using tensor = Tensor<T, Dev>;

  Sequential() = default;
  /// Layers in order; the first may be locus::Input({...}) to build right away.
  template <class... L>
  explicit Sequential(L&&... layers) {
    (add(std::forward<L>(layers)), ...);
  }
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  void add(const layers::Input& in) {
    if (!layers_.empty()) throw argument_error("locus::Sequential: Input must come first");
    input_shape_ = in.shape;
  }
  template <class Spec>
    requires nn::is_layer_spec<std::remove_cvref_t<Spec>>::value
  void add(const Spec& spec) {
    push(nn::make_layer<Dev, T>(spec));
  }
  /// A layer already bound to a device (nn::Layer or any class derived from it, such as
  /// nn::DenseLayer<Dev, T>): it must be this model's device.
  template <class L>
    requires std::derived_from<L, nn::Layer<typename L::device_type, typename L::value_type>>
  void add(std::unique_ptr<L> layer) {
    using D2 = typename L::device_type;
    (void)sizeof(detail::require_same_device<Dev, D2>);
    static_assert(std::is_same_v<T, typename L::value_type>,
                  "locus::Sequential: the layer computes in another element type");
    if constexpr (std::is_same_v<Dev, D2> && std::is_same_v<T, typename L::value_type>) {
      push(std::move(layer));
    }
  }

  /// Creates every parameter for per-sample input shape `input_shape`. Layer i is seeded
  /// with a value derived from (seed, i), so equal seeds give equal weights on every device.
  void build(const Shape& input_shape, std::uint64_t seed = 0) {
    if (layers_.empty()) throw argument_error("locus::Sequential: the model has no layers");
    seed_ = seed;
    input_shape_ = input_shape;
    Shape s = input_shape;
    output_shapes_.clear();
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      s = layers_[i]->build(s, seed * 1000003ull + i + 1);
      output_shapes_.push_back(s);
    }
    built_ = true;
  }
  /// Builds with the Input shape given at construction.
  void build(std::uint64_t seed = 0) {
    if (!input_shape_) {
      throw argument_error("locus::Sequential: no input shape; add locus::Input({...}) or call build(shape)");
    }
    build(*input_shape_, seed);
  }
  bool built() const { return built_; }
  const Shape& input_shape() const { return *input_shape_; }
  const Shape& output_shape() const { return output_shapes_.back(); }
  std::size_t size() const { return layers_.size(); }
  nn::Layer<Dev, T>& layer(std::size_t i) { return *layers_.at(i); }

  std::vector<nn::Parameter<Dev, T>*> parameters() {
    std::vector<nn::Parameter<Dev, T>*> ps;
    for (auto& l : layers_)
      for (auto* p : l->parameters()) ps.push_back(p);
    return ps;
  }
  std::size_t count_params() {
    std::size_t n = 0;
    for (auto* p : parameters()) n += p->value.size();
    return n;
  }
  /// Every tensor that makes up the model's weights (parameters, then non-trainable state).
  std::vector<std::pair<std::string, tensor*>> weights() {
    std::vector<std::pair<std::string, tensor*>> w;
    for (auto& l : layers_) {
      for (auto* p : l->parameters()) w.emplace_back(l->name + "/" + p->name, &p->value);
      for (auto& [n, t] : l->state()) w.emplace_back(l->name + "/" + n, t);
    }
    return w;
  }

  /// Keras-like table of layers, output shapes and parameter counts.
  std::string summary() {
    require_built("summary");
    std::ostringstream os;
    const std::string rule(75, '_'), dbl(75, '=');
    os << "Model: \"sequential\" on " << device_name<Dev>() << "\n" << rule << "\n";
    os << std::left << std::setw(34) << " Layer (type)" << std::setw(28) << "Output Shape" << "Param #\n"
       << dbl << "\n";
    std::size_t total = 0, non_trainable = 0;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      std::size_t n = 0;
      for (auto* p : layers_[i]->parameters()) n += p->value.size();
      for (auto& st : layers_[i]->state()) non_trainable += st.second->size();
      total += n;
      std::string shape = "(None";
      for (auto d : output_shapes_[i]) shape += ", " + std::to_string(d);
      shape += ")";
      os << std::setw(34) << (" " + layers_[i]->name + " (" + layers_[i]->type_name() + ")")
         << std::setw(28) << shape << group(n) << "\n";
    }
    os << dbl << "\nTotal params: " << group(total + non_trainable) << "\nTrainable params: " << group(total)
       << "\nNon-trainable params: " << group(non_trainable) << "\n"
       << rule << "\n";
    return os.str();
  }

  /// Sets the optimizer, loss and metrics used by fit() and evaluate().
  void compile(OptimizerConfig optimizer, LossConfig loss, std::vector<Metric> metrics = {}) {
    optimizer_ = Optimizer<Dev, T>(optimizer);
    loss_ = loss;
    metrics_ = std::move(metrics);
    compiled_ = true;
  }
  Optimizer<Dev, T>& optimizer() { return *optimizer_; }

  /// Inference forward pass of a batch.
  template <class TX, class DX>
  tensor operator()(const Tensor<TX, DX>& x) {
    check_input<TX, DX>();
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      ensure_built(x);
      return forward(x, false);
    } else {
      return tensor();
    }
  }

  /// Loss and parameter gradients of one batch, in training mode (dropout active, batch
  /// statistics). The model's weights are not changed; the gradients move out of the
  /// parameters into the result, so apply them with Optimizer::apply_gradients(grads, model).
  ///
  /// With a loss type (SparseCategoricalCrossentropy{}, MeanSquaredError{}, ...), labels the
  /// loss does not take do not compile; a LossConfig chosen at run time is checked at run
  /// time (argument_error). Sparse labels outside [0, classes) raise label_error: on the
  /// host at once, before anything changes; on a device the one-hot kernel records them on
  /// the device (their rows add nothing to the loss or the gradients) and the model raises
  /// them at its next synchronisation point, check_labels() or the next fit() or
  /// evaluate(), because raising here would cost a round trip per step.
  template <class TX, class DX, class L, class DY, class Loss>
    requires is_loss_v<Loss>
  LossAndGradients<Dev, T> value_and_gradient(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
                                              const Loss& loss) {
    check_input<TX, DX>();
    (void)sizeof(detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      detail::require_loss_labels<Loss, L, T>();
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
    (void)sizeof(detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      require_label_element<L>();
      if constexpr (is_label_element<L>) {
        return with_loss<L, LossAndGradients<Dev, T>>(
            loss, "locus::Sequential::value_and_gradient",
            [&](const auto& l) { return gradients_of(x, y, l); });
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// Raises label_error if a sparse label outside [0, classes) reached value_and_gradient on
  /// a device since the last check (the record is then cleared). One counted 8-byte read;
  /// call it where a custom loop synchronises anyway (when it reads its loss, say). On the
  /// host value_and_gradient raises at once, so this never throws there.
  void check_labels() {
    if constexpr (!HostDevice<Dev>) {
      if (custom_loop_labels_.status) {
        nn::raise_label_status(*custom_loop_labels_.status, custom_loop_labels_.classes,
                               "locus::Sequential::value_and_gradient");
      }
    }
  }

  /// Keras's fit: trains for o.epochs over (x, y) in batches and returns the history.
  ///
  /// The loss and metrics must take the labels (argument_error) and sparse labels must lie
  /// in [0, classes) (label_error, validation labels included); both are checked before the
  /// first step, so a failing fit leaves the model as it was. On a device the range check
  /// is one 24-byte read per call, not per step.
  template <class TX, class DX, class L, class DY>
  History fit(const Tensor<TX, DX>& x, const Tensor<L, DY>& y, const FitOptions<Dev, T, L>& o = {}) {
    check_input<TX, DX>();
    (void)sizeof(detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      require_label_element<L>();
      if constexpr (is_label_element<L>) {
        return fit_impl(x, y, o);
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
    (void)sizeof(detail::require_same_device<Dev, DY>);
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<DY, Dev> && std::is_same_v<TX, T>) {
      require_label_element<L>();
      if constexpr (is_label_element<L>) {
        return evaluate_impl(x, y, batch_size, "", true);
      } else {
        return {};
      }
    } else {
      return {};
    }
  }

  /// Keras's predict: outputs for any number of samples, computed batch_size at a time so
  /// only one batch of activations is alive at once.
  template <class TX, class DX>
  tensor predict(const Tensor<TX, DX>& x, std::size_t batch_size = 32) {
    check_input<TX, DX>();
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      ensure_built(x);
      check_batch_size(batch_size);
      const std::size_t n = x.shape()[0];
      Shape out_shape = output_shapes_.back();
      Shape full{n};
      for (auto d : out_shape) full.push_back(d);
      tensor out(uninitialized, full);
      const std::size_t row = out_shape.size();
      for (std::size_t s = 0; s < n; s += batch_size) {
        const std::size_t e = std::min(n, s + batch_size);
        const tensor yb = forward(x.slice(s, e), false);
        backend_t<Dev>::copy(yb.storage(), 0, out.storage(), s * row, (e - s) * row);
      }
      return out;
    } else {
      return tensor();
    }
  }

 private:
  template <class TX, class DX>
  static void check_input() {
    (void)sizeof(detail::require_same_device<Dev, DX>);
    static_assert(std::is_same_v<TX, T> || !std::is_same_v<DX, Dev>,
                  "locus::Sequential: inputs must have the model's element type; convert with "
                  "locus::cast<T>(x)");
  }

  // A record of sparse labels out of range on the device (the status of nn_backend.hpp's
  // checked one_hot, made at first use) and the class count they were checked against.
  struct label_record {
    std::optional<Tensor<std::int32_t, Dev>> status;
    std::size_t classes = 0;
    Tensor<std::int32_t, Dev>& get() {
      if (!status) status = nn::new_label_status<Dev>();
      return *status;
    }
  };

  // Labels are int32 class indices (sparse loss) or targets of the model's element type.
  template <class L>
  static constexpr bool is_label_element = std::is_same_v<L, std::int32_t> || std::is_same_v<L, T>;
  template <class L>
  static void require_label_element() {
    static_assert(
        is_label_element<L>,
        "locus::Sequential: labels must be int32 class indices (for "
        "SparseCategoricalCrossentropy) or targets of the model's element type T (for the "
        "other losses); convert them with locus::cast<std::int32_t>(labels) or "
        "locus::cast<T>(labels)");
  }

  // Calls f with the compiled (or given) loss when it takes labels of element type L, and
  // throws argument_error otherwise: the one run-time check of a loss chosen at run time
  // (a loss type given to value_and_gradient is checked at compile time instead).
  template <class L, class R, class F>
  static R with_loss(const LossConfig& cfg, const char* where, F&& f) {
    return std::visit(
        [&](const auto& l) -> R {
          using Loss = std::remove_cvref_t<decltype(l)>;
          if constexpr (loss_takes_labels_v<Loss, L, T>) {
            return f(l);
          } else if constexpr (std::is_same_v<L, std::int32_t>) {
            throw argument_error(std::string(where) + ": the loss " + Loss::name +
                                 " needs float targets shaped like the output, but the labels are "
                                 "int32 class indices; use SparseCategoricalCrossentropy, or "
                                 "float targets (one-hot rows for categorical_crossentropy)");
          } else {
            throw argument_error(std::string(where) + ": the loss " + Loss::name +
                                 " needs int32 class labels, but the labels are floating-point; "
                                 "use CategoricalCrossentropy for one-hot targets or "
                                 "locus::cast<std::int32_t>(labels)");
          }
        },
        cfg);
  }

  // The metrics must take the labels: sparse accuracy takes int32 class indices, the other
  // accuracies float targets. Checked before the first step.
  template <class L>
  void check_metrics(const char* where) const {
    for (Metric m : metrics_) {
      const Metric r = resolve(m);
      const bool sparse = r == Metric::sparse_categorical_accuracy;
      if (sparse != std::is_same_v<L, std::int32_t>) {
        throw argument_error(std::string(where) + ": the metric " + metric_name(m) +
                             (sparse
                                  ? " needs int32 class labels, but the labels are floating-point"
                                  : " (" + metric_name(r) +
                                        ") needs float targets, but the labels are int32 class "
                                        "indices; use Metric::sparse_categorical_accuracy"));
      }
    }
  }

  static std::string group(std::size_t n) {
    std::string s = std::to_string(n);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
    return s;
  }

  void push(std::unique_ptr<nn::Layer<Dev, T>> l) {
    if (built_) throw argument_error("locus::Sequential: cannot add layers after build()");
    std::string base = l->type_name();
    std::string lower;
    for (std::size_t i = 0; i < base.size(); ++i) {
      const char c = base[i];
      // Keras's snake case: "MaxPooling2D" -> "max_pooling2d".
      if (std::isupper(static_cast<unsigned char>(c)) && i && std::islower(static_cast<unsigned char>(base[i - 1])))
        lower += '_';
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    const std::size_t k = name_counts_[lower]++;
    l->name = k ? lower + "_" + std::to_string(k) : lower;
    layers_.push_back(std::move(l));
  }

  void require_built(const char* what) const {
    if (!built_) {
      throw argument_error(std::string("locus::Sequential::") + what +
                           ": the model is not built; call build(input_shape) or run it once");
    }
  }

  // Keras builds a model at its first call when no Input was given.
  void ensure_built(const tensor& x) {
    if (!built_) {
      if (x.rank() < 1) throw shape_error("locus::Sequential: input needs a batch axis");
      build(input_shape_ ? *input_shape_ : Shape(x.shape().begin() + 1, x.shape().end()), seed_);
    }
    if (x.rank() != input_shape_->rank() + 1 ||
        !std::equal(input_shape_->begin(), input_shape_->end(), x.shape().begin() + 1)) {
      std::string expect = "[N";
      for (auto d : *input_shape_) expect += ", " + std::to_string(d);
      throw shape_error("locus::Sequential: input of shape " + to_string(x.shape()) +
                        " does not match the model's input " + expect + "]");
    }
  }

  static void check_batch_size(std::size_t b) {
    if (b == 0) throw argument_error("locus::Sequential: batch_size must be positive");
  }

  tensor forward(const tensor& x, bool training) {
    tensor h = layers_[0]->forward(x, training);
    for (std::size_t i = 1; i < layers_.size(); ++i) h = layers_[i]->forward(h, training);
    return h;
  }

  // value_and_gradient with a loss that takes the labels.
  template <class L, class Loss>
  LossAndGradients<Dev, T> gradients_of(const tensor& x, const Tensor<L, Dev>& y,
                                        const Loss& loss) {
    ensure_built(x);
    // Host labels out of range throw before the forward pass, so that nothing changes (not
    // even batch normalisation's moving statistics).
    if constexpr (HostDevice<Dev> && std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
      if (const std::size_t c = sparse_classes()) {
        nn::check_labels(y.data(), y.size(), c, "locus::Sequential::value_and_gradient");
      }
    }
    LossAndGradients<Dev, T> r{train_batch(x, y, loss, custom_loop_labels_), {}};
    for (auto* p : parameters()) r.grads.push_back(std::move(p->grad));
    return r;
  }

  // Forward in training mode keeping every activation, loss, backward. Leaves the
  // gradients in the parameters; returns the batch loss and keeps the output in acts_.
  // The callers check host labels first; device labels out of range go to `rec`.
  template <class L, class Loss>
  tensor train_batch(const tensor& x, const Tensor<L, Dev>& y, const Loss& loss,
                     label_record& rec) {
    const std::size_t n = layers_.size();
    acts_.resize(n);
    acts_[0] = layers_[0]->forward(x, true);
    for (std::size_t i = 1; i < n; ++i) acts_[i] = layers_[i]->forward(acts_[i - 1], true);
    nn::loss_value<T, Dev> lv = loss_of(loss, acts_[n - 1], y, rec);
    tensor dy = std::move(lv.grad);
    for (std::size_t i = n; i-- > 0;) {
      const tensor& in = i ? acts_[i - 1] : x;
      dy = layers_[i]->backward(in, acts_[i], dy, i > 0);
    }
    return std::move(lv.value);
  }

  // The loss of a batch; on a device, sparse labels out of range are recorded in `rec`
  // (read at the next synchronisation point) instead of read back.
  template <class L, class Loss>
  nn::loss_value<T, Dev> loss_of(const Loss& loss, const tensor& out, const Tensor<L, Dev>& y,
                                 label_record& rec) {
    if constexpr (!HostDevice<Dev> && std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
      if (out.rank() == 2) rec.classes = out.shape()[1];
      return nn::compute_loss(loss, out, y, &rec.get());
    } else {
      return nn::compute_loss(loss, out, y);
    }
  }

  // The number of classes sparse labels index: the width of a [N, classes] output (0 when
  // the output has another shape; the loss then reports the shape).
  std::size_t sparse_classes() const {
    const Shape& s = output_shapes_.back();
    return s.rank() == 1 ? s[0] : 0;
  }

  // fit's check of sparse labels (and validation labels) before the first step. On a device,
  // one read of 6 int32: the minimum and maximum of each, and the record left by earlier
  // value_and_gradient calls.
  template <class L>
  void check_label_range(const Tensor<L, Dev>& y, const Tensor<L, Dev>* vy,
                         const std::string& where) {
    if constexpr (std::is_same_v<L, std::int32_t>) {
      const std::size_t classes = sparse_classes();
      if (!classes) return;
      if constexpr (HostDevice<Dev>) {
        nn::check_labels(y.data(), y.size(), classes, where);
        if (vy) nn::check_labels(vy->data(), vy->size(), classes, where + " (validation labels)");
      } else {
        using B = backend_t<Dev>;
        Tensor<std::int32_t, Dev> packed = Tensor<std::int32_t, Dev>::zeros({6});
        const auto put = [&](const Tensor<std::int32_t, Dev>& labels, std::size_t at) {
          if (labels.size() == 0) return;
          B::copy(min(labels).storage(), 0, packed.storage(), at, 1);
          B::copy(max(labels).storage(), 0, packed.storage(), at + 1, 1);
        };
        put(y, 0);
        if (vy) put(*vy, 2);
        auto& pending = custom_loop_labels_;
        if (pending.status) B::copy(pending.status->storage(), 0, packed.storage(), 4, 2);
        const Tensor<std::int32_t, Device<CPU>> h = to<Device<CPU>>(packed);
        const std::int32_t* v = h.data();
        const auto too_big = [&](std::int32_t m) {
          return m >= 0 && static_cast<std::size_t>(m) >= classes ? m : 0;
        };
        const auto bad = [&](std::int32_t lo, std::int32_t hi, std::size_t c,
                             const std::string& w) {
          if (lo < 0 || hi > 0) {
            if (pending.status) B::fill(pending.status->storage(), std::int32_t(0));
            nn::throw_label_range(lo, hi, c, w);
          }
        };
        bad(v[4], v[5], pending.classes ? pending.classes : classes,
            "locus::Sequential::value_and_gradient (an earlier call, found by " + where + ")");
        bad(std::min(v[0], 0), too_big(v[1]), classes, where);
        bad(std::min(v[2], 0), too_big(v[3]), classes, where + " (validation labels)");
      }
    }
  }

  template <class U>
  static Tensor<U, Dev> rows_of(const Tensor<U, Dev>& src, const Tensor<std::int32_t, Dev>* perm,
                                std::size_t s, std::size_t e) {
    if (!perm) return src.slice(s, e);
    Shape shape = src.shape();
    shape[0] = e - s;
    const std::size_t row = src.shape()[0] ? src.size() / src.shape()[0] : 0;
    Tensor<U, Dev> out(uninitialized, shape);
    const Tensor<std::int32_t, Dev> idx = perm->slice(s, e);
    nn_backend_for<Dev>::gather_rows(src.storage(), row, idx.storage(), e - s, out.storage());
    return out;
  }

  template <class L>
  History fit_impl(const tensor& x, const Tensor<L, Dev>& y, const FitOptions<Dev, T, L>& o) {
    if (!compiled_) throw argument_error("locus::Sequential::fit: call compile() first");
    check_batch_size(o.batch_size);
    ensure_built(x);
    const std::size_t n = x.shape()[0];
    if (y.rank() == 0 || y.shape()[0] != n) {
      throw shape_error("locus::Sequential::fit: " + std::to_string(n) + " samples but labels of shape " +
                        to_string(y.shape()));
    }
    // Everything that can be told before training is checked before the first step.
    constexpr const char* where = "locus::Sequential::fit";
    with_loss<L, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    check_label_range(y, o.validation_data.y, where);
    const std::vector<std::string> keys = metric_keys(metrics_);
    const std::size_t steps = (n + o.batch_size - 1) / o.batch_size;
    const bool live = o.verbose == 1 && isatty(fileno(stdout)) && o.out == &std::cout;
    History h;
    std::vector<tensor> best;
    for (auto& cb : o.callbacks) cb->on_train_begin();
    std::mt19937_64 rng(o.seed);
    std::vector<std::int32_t> order(n);
    for (std::size_t epoch = 0; epoch < o.epochs; ++epoch) {
      const auto t0 = std::chrono::steady_clock::now();
      std::optional<Tensor<std::int32_t, Dev>> perm;
      if (o.shuffle) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        // One counted upload per epoch; every batch is then gathered on the device.
        perm = to<Dev>(Tensor<std::int32_t, Device<CPU>>::from_data({n}, order.data()));
      }
      if (o.verbose) *o.out << "Epoch " << epoch + 1 << "/" << o.epochs << "\n";
      // One accumulator per metric, all on the device.
      tensor loss_sum = tensor::zeros({});
      std::vector<tensor> metric_sums(metrics_.size(), tensor::zeros({}));
      auto last_print = t0;
      for (std::size_t step = 0; step < steps; ++step) {
        const std::size_t s = step * o.batch_size, e = std::min(n, s + o.batch_size);
        const tensor xb = rows_of(x, perm ? &*perm : nullptr, s, e);
        const Tensor<L, Dev> yb = rows_of(y, perm ? &*perm : nullptr, s, e);
        const tensor loss = with_loss<L, tensor>(
            loss_, where, [&](const auto& l) { return train_batch(xb, yb, l, batch_labels_); });
        optimizer_->apply(parameters());
        loss_sum += loss * static_cast<T>(e - s);
        for (std::size_t i = 0; i < metrics_.size(); ++i) {
          metric_sums[i] += nn::correct_count(resolve(metrics_[i]), acts_.back(), yb);
        }
        if (live) {
          const auto now = std::chrono::steady_clock::now();
          if (now - last_print > std::chrono::milliseconds(250) || step + 1 == steps) {
            last_print = now;
            Logs logs = read_logs(loss_sum, metric_sums, keys, e, "", false, where);
            progress_bar(*o.out, step + 1, steps, seconds(t0, now), logs);
          }
        }
      }
      Logs logs = read_logs(loss_sum, metric_sums, keys, n, "", false, where);
      if (o.validation_data.x) {
        // The validation labels were checked with the training labels.
        const Logs v =
            evaluate_impl(*o.validation_data.x, *o.validation_data.y, o.batch_size, "val_", false);
        logs.insert(v.begin(), v.end());
      }
      const double secs = seconds(t0, std::chrono::steady_clock::now());
      for (auto& [k, v] : logs) h.history[k].push_back(v);
      h.epochs = epoch + 1;
      if (o.verbose) epoch_line(*o.out, steps, secs, logs, live);
      bool stop = false;
      for (auto& cb : o.callbacks) {
        stop = cb->on_epoch_end(epoch, logs) || stop;
        if (auto* es = dynamic_cast<EarlyStopping*>(cb.get()); es && es->options().restore_best_weights) {
          if (es->improved()) {
            best.clear();
            for (auto& w : weights()) best.push_back(*w.second);
          }
        }
      }
      if (stop) break;
    }
    for (auto& cb : o.callbacks) {
      if (auto* es = dynamic_cast<EarlyStopping*>(cb.get()); es && es->options().restore_best_weights && !best.empty()) {
        std::size_t i = 0;
        for (auto& w : weights()) *w.second = best[i++];
      }
    }
    return h;
  }

  // check_range: whether sparse labels still need their range check (false for fit's
  // validation pass, whose labels fit checked before training).
  template <class L>
  Logs evaluate_impl(const tensor& x, const Tensor<L, Dev>& y, std::size_t batch_size,
                     const std::string& prefix, bool check_range) {
    constexpr const char* where = "locus::Sequential::evaluate";
    if (!compiled_) throw argument_error("locus::Sequential::evaluate: call compile() first");
    check_batch_size(batch_size);
    ensure_built(x);
    const std::size_t n = x.shape()[0];
    if (y.rank() == 0 || y.shape()[0] != n) {
      throw shape_error("locus::Sequential::evaluate: " + std::to_string(n) + " samples but labels of shape " +
                        to_string(y.shape()));
    }
    with_loss<L, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    // Host labels are checked here; on a device the one-hot kernel records them (in a
    // record of this call's own) and the record is read with the sums.
    if constexpr (HostDevice<Dev>) {
      if (check_range) check_label_range<L>(y, nullptr, where);
    } else {
      if (batch_labels_.status)
        backend_t<Dev>::fill(batch_labels_.status->storage(), std::int32_t(0));
    }
    tensor loss_sum = tensor::zeros({});
    std::vector<tensor> metric_sums(metrics_.size(), tensor::zeros({}));
    for (std::size_t s = 0; s < n; s += batch_size) {
      const std::size_t e = std::min(n, s + batch_size);
      const tensor xb = x.slice(s, e);
      const Tensor<L, Dev> yb = y.slice(s, e);
      const tensor out = forward(xb, false);
      const tensor loss = with_loss<L, tensor>(
          loss_, where, [&](const auto& l) { return loss_of(l, out, yb, batch_labels_).value; });
      loss_sum += loss * static_cast<T>(e - s);
      for (std::size_t i = 0; i < metrics_.size(); ++i) {
        metric_sums[i] += nn::correct_count(resolve(metrics_[i]), out, yb);
      }
    }
    const bool with_status = check_range && !HostDevice<Dev> && std::is_same_v<L, std::int32_t>;
    return read_logs(loss_sum, metric_sums, metric_keys(metrics_), n, prefix, with_status, where);
  }

  Metric resolve(Metric m) const {
    return std::visit([&](const auto& l) { return resolve_metric<std::remove_cvref_t<decltype(l)>>(m); }, loss_);
  }

  // The device-to-host reads of training: one per evaluation of the logs, of the loss sum
  // and every metric's sum packed into one small vector on the device (with_status: and the
  // label records, this evaluate's and the custom loop's, so evaluate's range check costs no
  // transfer of its own; only when one records a bad label is it read once more, exactly,
  // to name the label).
  Logs read_logs(const tensor& loss_sum, const std::vector<tensor>& metric_sums,
                 const std::vector<std::string>& keys, std::size_t count, const std::string& prefix,
                 bool with_status, const char* where) {
    using B = backend_t<Dev>;
    const std::size_t m = metric_sums.size();
    tensor packed(uninitialized, {1 + m + (with_status ? 4 : 0)});
    B::copy(loss_sum.storage(), 0, packed.storage(), 0, 1);
    for (std::size_t i = 0; i < m; ++i)
      B::copy(metric_sums[i].storage(), 0, packed.storage(), 1 + i, 1);
    if (with_status) {
      const tensor own = cast<T>(batch_labels_.get());
      const tensor pending = cast<T>(custom_loop_labels_.get());
      B::copy(own.storage(), 0, packed.storage(), 1 + m, 2);
      B::copy(pending.storage(), 0, packed.storage(), 3 + m, 2);
    }
    const Tensor<T, Device<CPU>> h = to<Device<CPU>>(packed);
    const T* v = h.data();
    if (with_status) {
      if (v[1 + m] != T(0) || v[2 + m] != T(0)) {
        nn::raise_label_status(batch_labels_.get(), batch_labels_.classes, where);
      }
      if (v[3 + m] != T(0) || v[4 + m] != T(0)) {
        nn::raise_label_status(
            custom_loop_labels_.get(), custom_loop_labels_.classes,
            std::string("locus::Sequential::value_and_gradient (an earlier call, found by ") +
                where + ")");
      }
    }
    Logs logs;
    const double denom = static_cast<double>(count ? count : 1);
    logs[prefix + "loss"] = static_cast<double>(v[0]) / denom;
    for (std::size_t i = 0; i < m; ++i)
      logs[prefix + keys[i]] = static_cast<double>(v[1 + i]) / denom;
    return logs;
  }

  static double seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }

  static std::string format_logs(const Logs& logs) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(4);
    // Keras order: training before validation, and within each, metrics before the loss.
    for (const bool validation : {false, true}) {
      const std::string loss_key = validation ? "val_loss" : "loss";
      for (const auto& [k, v] : logs) {
        if ((k.rfind("val_", 0) == 0) == validation && k != loss_key) os << " - " << k << ": " << v;
      }
      if (auto it = logs.find(loss_key); it != logs.end()) os << " - " << loss_key << ": " << it->second;
    }
    return os.str();
  }

  static void progress_bar(std::ostream& out, std::size_t step, std::size_t steps, double secs, const Logs& logs) {
    constexpr std::size_t width = 20;
    const std::size_t done = steps ? step * width / steps : width;
    std::string bar(done, '=');
    if (done < width) bar += '>' + std::string(width - done - 1, '.');
    std::ostringstream os;  // formatted apart, so the caller's stream flags stay untouched
    os << "\r" << std::setw(static_cast<int>(std::to_string(steps).size())) << step << "/" << steps << " [" << bar
       << "] " << static_cast<long>(secs) << "s" << format_logs(logs);
    out << os.str() << std::flush;
  }

  static void epoch_line(std::ostream& out, std::size_t steps, double secs, const Logs& logs, bool live) {
    const double ms = steps ? secs * 1000.0 / static_cast<double>(steps) : 0.0;
    std::ostringstream os;  // formatted apart, so the caller's stream flags stay untouched
    os << (live ? "\r" : "") << steps << "/" << steps << " - " << std::fixed << std::setprecision(1) << secs
       << "s - " << std::setprecision(ms < 10 ? 1 : 0) << ms << "ms/step" << format_logs(logs) << "\n";
    out << os.str();
  }

  std::vector<std::unique_ptr<nn::Layer<Dev, T>>> layers_;
  std::vector<Shape> output_shapes_;
  std::optional<Shape> input_shape_;
  std::map<std::string, std::size_t> name_counts_;
  std::uint64_t seed_ = 0;
  bool built_ = false, compiled_ = false;
  std::optional<Optimizer<Dev, T>> optimizer_;
  LossConfig loss_{};
  std::vector<Metric> metrics_;
  std::vector<tensor> acts_;
  // Sparse labels out of range seen on the device: those of value_and_gradient calls (read
  // by check_labels, fit and evaluate), and those of fit's steps and evaluate's batches.
  label_record custom_loop_labels_, batch_labels_;
};

}  // namespace locus
