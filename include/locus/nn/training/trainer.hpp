// Trainer: the training loop behind Model::fit and Model::evaluate, apart from the model.
//
// compile() gives a model a Trainer: the optimizer (bound to the model's device), the loss
// and the metrics. fit() runs epochs of shuffled batches; every running sum (the loss and
// one per metric) stays on the device and is read, all together in one transfer, once per
// epoch (and when a callback asks, e.g. a live progress bar). Sparse labels out of range
// cost no read per step either: fit checks the whole label set once before training, and
// on a device evaluate and value_and_gradient let the one-hot kernel record them on the
// device, read at the next synchronisation point.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../../backend/nn_backend.hpp"
#include "../../data/dataset.hpp"
#include "../../detail/contract.hpp"
#include "../../error.hpp"
#include "../../tensor.hpp"
#include "../../transfer.hpp"
#include "../losses.hpp"
#include "../metrics.hpp"
#include "../optimizers.hpp"
#include "callbacks.hpp"
#include "progress.hpp"
#include "reducer.hpp"

namespace locus {

using LossConfig = std::variant<SparseCategoricalCrossentropy, CategoricalCrossentropy,
                                BinaryCrossentropy, MeanSquaredError, MeanAbsoluteError>;

/// Validation data for fit(): tensors or a batched dataset on the model's device.
template <AnyDevice Dev, class T, class L>
struct ValidationData {
  const Tensor<T, Dev>* x = nullptr;
  const Tensor<L, Dev>* y = nullptr;
  std::optional<data::Dataset<Dev, T, L>> dataset;
  ValidationData() = default;
  template <AnyDevice DD>
  ValidationData(const data::Dataset<DD, T, L>& ds) {  // NOLINT
    (void)sizeof(locus::detail::dataset_device_mismatch<Dev, DD>);
    if constexpr (std::is_same_v<Dev, DD>) dataset = ds;
  }
  template <class TX, class DX, class TY, class DY>
  ValidationData(const Tensor<TX, DX>& vx, const Tensor<TY, DY>& vy) {  // NOLINT
    (void)sizeof(locus::detail::require_same_device<Dev, DX>);
    (void)sizeof(locus::detail::require_same_device<Dev, DY>);
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
  /// Seed of the per-epoch shuffles (of tensors; a dataset shuffles with its own seed).
  std::uint64_t seed = 0;
  /// Training on a dataset: steps per epoch, 0 for "until the pass ends". With a count, the
  /// pass continues across epochs and a pass that ends is followed by the next (as repeat()).
  std::size_t steps_per_epoch = 0;
  std::ostream* out = &std::cout;
  /// The epoch to start at (Keras's initial_epoch): a run resumed from a checkpoint of
  /// epoch k passes k, so that epochs are numbered, and datasets shuffled, as in one run.
  std::size_t initial_epoch = 0;
  /// Data-parallel training: the replicas' common gradients, state, logs and stopping (set
  /// by Mirrored and mpi::DataParallel; see reducer.hpp).
  GradientReducer<Dev, T>* reducer = nullptr;
};

/// Loss and gradients of one batch (custom training loops).
template <AnyDevice Dev, class T>
struct LossAndGradients {
  Tensor<T, Dev> loss;                ///< rank 0, on the model's device
  std::vector<Tensor<T, Dev>> grads;  ///< one per parameter, in parameters() order
};

template <AnyDevice Dev, class T>
class Model;

namespace nn {

/// Labels are int32 class indices (sparse loss) or targets of the model's element type.
template <class L, class T>
inline constexpr bool is_label_element = std::is_same_v<L, std::int32_t> || std::is_same_v<L, T>;

template <class L, class T>
constexpr void require_label_element() {
  static_assert(
      is_label_element<L, T>,
      "locus::Model: labels must be int32 class indices (for SparseCategoricalCrossentropy) or "
      "targets of the model's element type T (for the other losses); convert them with "
      "locus::cast<std::int32_t>(labels) or locus::cast<T>(labels)");
}

/// Calls f with the loss of `cfg` when it takes labels of element type L, and throws
/// argument_error otherwise: the one run-time check of a loss chosen at run time (a loss
/// type given to value_and_gradient or to a typed CompiledModel is checked at compile time).
template <class L, class T, class R, class F>
R with_loss(const LossConfig& cfg, const char* where, F&& f) {
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

/// A record of sparse labels out of range on the device (the status of nn_backend.hpp's
/// checked one_hot, made at first use) and the class count they were checked against.
template <AnyDevice Dev>
struct LabelRecord {
  std::optional<Tensor<std::int32_t, Dev>> status;
  std::size_t classes = 0;
  Tensor<std::int32_t, Dev>& get() {
    if (!status) status = new_label_status<Dev>();
    return *status;
  }
};

/// The loss of a batch; on a device, sparse labels out of range are recorded in `rec`
/// (read at the next synchronisation point) instead of read back.
template <class T, AnyDevice Dev, class L, class Loss>
loss_value<T, Dev> loss_of(const Loss& loss, const Tensor<T, Dev>& out, const Tensor<L, Dev>& y,
                           LabelRecord<Dev>& rec) {
  if constexpr (!HostDevice<Dev> && std::is_same_v<Loss, SparseCategoricalCrossentropy>) {
    if (out.rank() == 2) rec.classes = out.shape()[1];
    return compute_loss(loss, out, y, &rec.get());
  } else {
    (void)rec;
    return compute_loss(loss, out, y);
  }
}

template <AnyDevice Dev, class T>
class Trainer {
 public:
  using tensor = Tensor<T, Dev>;

  Trainer(OptimizerConfig optimizer, LossConfig loss, std::vector<Metric> metrics)
      : optimizer_(optimizer), loss_(loss), metrics_(std::move(metrics)) {}

  Optimizer<Dev, T>& optimizer() { return optimizer_; }
  const Optimizer<Dev, T>& optimizer() const { return optimizer_; }
  const LossConfig& loss() const { return loss_; }
  const std::vector<Metric>& metrics() const { return metrics_; }

  /// The same trainer on device D2 (optimizer slots copied with counted transfers).
  template <AnyDevice D2>
  Trainer<D2, T> copy_to() const {
    Trainer<D2, T> t(optimizer_.config(), loss_, metrics_);
    t.optimizer_ = optimizer_.template copy_to<D2>();
    return t;
  }

  template <class M, class L>
  History fit(M& model, const tensor& x, const Tensor<L, Dev>& y, const FitOptions<Dev, T, L>& o) {
    constexpr const char* where = "locus::Model::fit";
    check_batch_size(o.batch_size);
    model.require_single("fit");
    {
      const tensor* in[] = {&x};
      model.check_inputs(in, where);
    }
    const std::size_t n = x.shape()[0];
    check_label_count(n, y, where);
    check_validation(model, o, where);
    // Everything that can be told before training is checked before the first step.
    with_loss<L, T, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    check_label_range(model, y, o.validation_data.y, where);
    tensor_batches<L> batches(x, y, o.batch_size, o.shuffle, o.seed);
    return run_fit(model, batches, (n + o.batch_size - 1) / o.batch_size, o, false);
  }

  /// fit on a batched dataset of the model's device: the batches arrive as the pipeline
  /// makes them (prefetched when it prefetches); labels are checked as they come.
  template <class M, class L>
  History fit(M& model, const data::Dataset<Dev, T, L>& ds, const FitOptions<Dev, T, L>& o) {
    constexpr const char* where = "locus::Model::fit";
    model.require_single("fit");
    check_validation(model, o, where);
    with_loss<L, T, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    check_label_range(model, Tensor<L, Dev>(), o.validation_data.y, where);
    clear_label_record();
    const std::size_t card = ds.cardinality();
    if (card == data::infinite_cardinality && o.steps_per_epoch == 0) {
      throw argument_error(std::string(where) +
                           ": the dataset never ends (repeat() without a count); give "
                           "steps_per_epoch");
    }
    const std::size_t steps = o.steps_per_epoch                   ? o.steps_per_epoch
                              : card == data::unknown_cardinality ? 0
                                                                  : card;
    dataset_batches<M, L> batches(model, ds, o.steps_per_epoch > 0, where);
    return run_fit(model, batches, steps, o, device_label_status<L>());
  }

  template <class M, class L>
  Logs evaluate(M& model, const data::Dataset<Dev, T, L>& ds) {
    constexpr const char* where = "locus::Model::evaluate";
    with_loss<L, T, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    return evaluate_dataset(model, ds, "", where);
  }

  template <class M, class L>
  Logs evaluate(M& model, const tensor& x, const Tensor<L, Dev>& y, std::size_t batch_size) {
    return evaluate_impl(model, x, y, batch_size, "", true);
  }

 private:
  template <AnyDevice, class>
  friend class Trainer;

  // Batches of tensors already on the device, shuffled each epoch by one counted upload of
  // a permutation; every batch is then gathered on the device.
  template <class L>
  class tensor_batches {
   public:
    tensor_batches(const tensor& x, const Tensor<L, Dev>& y, std::size_t batch, bool shuffle,
                   std::uint64_t seed)
        : x_(x), y_(y), batch_(batch), shuffle_(shuffle), seed_(seed), order_(x.shape()[0]) {}
    void begin_epoch(std::size_t epoch) {
      s_ = 0;
      if (!shuffle_) return;
      // Each epoch's order depends on (seed, epoch) alone, so that a run resumed at
      // initial_epoch shuffles as the uninterrupted run did.
      std::mt19937_64 rng(seed_ + 0x9E3779B97F4A7C15ull * (epoch + 1));
      std::iota(order_.begin(), order_.end(), 0);
      std::shuffle(order_.begin(), order_.end(), rng);
      perm_ = to<Dev>(Tensor<std::int32_t, Device<CPU>>::from_data({order_.size()}, order_.data()));
    }
    bool next(std::optional<tensor>& xb, std::optional<Tensor<L, Dev>>& yb) {
      const std::size_t n = order_.size();
      if (s_ >= n) return false;
      const std::size_t e = std::min(n, s_ + batch_);
      xb = rows_of(x_, perm_ ? &*perm_ : nullptr, s_, e);
      yb = rows_of(y_, perm_ ? &*perm_ : nullptr, s_, e);
      s_ = e;
      return true;
    }

   private:
    const tensor& x_;
    const Tensor<L, Dev>& y_;
    std::size_t batch_;
    bool shuffle_;
    std::uint64_t seed_;
    std::vector<std::int32_t> order_;
    std::optional<Tensor<std::int32_t, Dev>> perm_;
    std::size_t s_ = 0;
  };

  // The batches of a dataset, pass e for epoch e (or one pass continued across epochs when
  // steps_per_epoch is given). Each batch's shapes and sparse labels are checked before it
  // is used: on the host here, on the way to a device by the pipeline's transfer.
  template <class M, class L>
  class dataset_batches {
   public:
    dataset_batches(const M& model, const data::Dataset<Dev, T, L>& ds, bool continued,
                    const char* where)
        : model_(model), ds_(ds), continued_(continued), where_(where) {
      if constexpr (std::is_same_v<L, std::int32_t>) classes_ = model.sparse_classes();
    }
    void begin_epoch(std::size_t epoch) {
      if (!continued_ || !pass_) open(epoch);
    }
    bool next(std::optional<tensor>& xb, std::optional<Tensor<L, Dev>>& yb) {
      std::optional<data::Example<Dev, T, L>> e = pass_->next();
      if (!e && continued_) {
        open(passes_);
        e = pass_->next();
        if (!e) throw argument_error(std::string(where_) + ": the dataset is empty");
      }
      if (!e) return false;
      check(*e);
      xb = std::move(e->x);
      yb = std::move(e->y);
      return true;
    }

   private:
    void open(std::size_t pass) {
      pass_.reset();  // the previous pass's threads end first
      pass_.emplace(ds_.open(pass, classes_));
      passes_ = pass + 1;
    }
    void check(const data::Example<Dev, T, L>& e) const {
      const std::string at = std::string(where_) + " (the batch that starts at record " +
                             std::to_string(e.record) + ")";
      const tensor* in[] = {&e.x};
      if (e.x.rank() == 0) {
        throw shape_error(at + ": a scalar element; batch the dataset with .batch(n)");
      }
      model_.check_inputs(in, at);
      check_label_count(e.x.shape()[0], e.y, at);
      if constexpr (HostDevice<Dev> && std::is_same_v<L, std::int32_t>) {
        if (classes_) check_labels(e.y.data(), e.y.size(), classes_, at);
      }
    }

    const M& model_;
    const data::Dataset<Dev, T, L>& ds_;
    bool continued_;
    const char* where_;
    std::size_t classes_ = 0;
    std::optional<typename data::Dataset<Dev, T, L>::pass> pass_;
    std::size_t passes_ = 0;
  };

  // fit's epochs over a batch source (tensor_batches, dataset_batches). steps: per epoch,
  // 0 when unknown until the first epoch ends. label_status: read the device's record of
  // out-of-range sparse labels with each epoch's logs.
  template <class M, class L, class Batches>
  History run_fit(M& model, Batches& batches, std::size_t steps, const FitOptions<Dev, T, L>& o,
                  bool label_status) {
    constexpr const char* where = "locus::Model::fit";
    const std::vector<std::string> keys = metric_keys(metrics_);
    History history;
    ProgressLogger progress(o.verbose);
    std::vector<Callback*> cbs;
    if (o.verbose) cbs.push_back(&progress);
    for (const auto& cb : o.callbacks) cbs.push_back(cb.get());
    cbs.push_back(&history);
    fit_context<M> ctx(model, *this, o.epochs, steps, o.verbose, *o.out, keys);

    for (auto* cb : cbs) cb->on_train_begin(ctx);
    Logs last;
    if (o.initial_epoch >= o.epochs && o.epochs > 0) {
      throw argument_error(std::string(where) + ": initial_epoch " +
                           std::to_string(o.initial_epoch) + " leaves none of the " +
                           std::to_string(o.epochs) + " epochs to run");
    }
    for (std::size_t epoch = o.initial_epoch; epoch < o.epochs; ++epoch) {
      for (auto* cb : cbs) cb->on_epoch_begin(ctx, epoch);
      batches.begin_epoch(epoch);
      ctx.begin_epoch(fresh_metrics());
      std::size_t step = 0;
      for (; !steps || step < steps; ++step) {
        std::optional<tensor> xb;
        std::optional<Tensor<L, Dev>> yb;
        if (!batches.next(xb, yb)) break;
        for (auto* cb : cbs) cb->on_train_batch_begin(ctx, step);
        const tensor loss = with_loss<L, T, tensor>(loss_, where, [&](const auto& l) {
          return model.train_batch(*xb, *yb, l, batch_labels_, [&](const tensor& out) {
            for (auto& m : ctx.metrics) m.update_state(out, *yb);
          });
        });
        const std::size_t count = xb->shape()[0];
        if (o.reducer) o.reducer->reduce_gradients(model.parameters(), count);
        optimizer_.apply(model.parameters());
        ctx.loss_sum += loss * static_cast<T>(count);
        ctx.seen += count;
        for (auto* cb : cbs) cb->on_train_batch_end(ctx, step);
      }
      if (ctx.seen == 0) {
        throw argument_error(std::string(where) + ": epoch " + std::to_string(epoch + 1) +
                             " has no batch (an empty dataset?)");
      }
      if (!steps) ctx.learned_steps(step);
      Logs logs =
          read_logs(model, ctx.loss_sum, ctx.metrics, keys, ctx.seen, "", label_status, where);
      if (o.reducer) o.reducer->end_epoch(model, logs, ctx.seen);
      if (o.validation_data.x || o.validation_data.dataset) {
        for (auto* cb : cbs) cb->on_test_begin(ctx);
        // Validation tensors were checked with the training labels; a validation dataset
        // is checked as it comes.
        const Logs v = o.validation_data.x
                           ? evaluate_impl(model, *o.validation_data.x, *o.validation_data.y,
                                           o.batch_size, "val_", false)
                           : evaluate_dataset(model, *o.validation_data.dataset, "val_", where);
        for (auto* cb : cbs) cb->on_test_end(ctx, v);
        logs.insert(v.begin(), v.end());
      }
      for (auto* cb : cbs) cb->on_epoch_end(ctx, epoch, logs);
      last = logs;
      if (o.reducer ? o.reducer->stop(ctx.stop_requested()) : ctx.stop_requested()) break;
    }
    for (auto* cb : cbs) cb->on_train_end(ctx, last);
    return history;
  }

  template <class M, class L>
  void check_validation(const M& model, const FitOptions<Dev, T, L>& o, const char* where) const {
    if (!o.validation_data.x) return;
    const tensor* vin[] = {o.validation_data.x};
    model.check_inputs(vin, std::string(where) + " (validation data)");
    check_label_count(o.validation_data.x->shape()[0], *o.validation_data.y,
                      std::string(where) + " (validation data)");
  }

  // Whether a dataset's sparse labels on a device are also checked by the one-hot kernel's
  // record, read with the logs (the pipeline checks them on the host before the upload;
  // this catches labels made on the device, by a map after to<Dev>).
  template <class L>
  static constexpr bool device_label_status() {
    return !HostDevice<Dev> && std::is_same_v<L, std::int32_t>;
  }
  void clear_label_record() {
    if constexpr (!HostDevice<Dev>) {
      if (batch_labels_.status)
        backend_t<Dev>::fill(batch_labels_.status->storage(), std::int32_t(0));
    }
  }

  template <class M, class L>
  Logs evaluate_dataset(M& model, const data::Dataset<Dev, T, L>& ds, const std::string& prefix,
                        const char* where) {
    model.require_single("evaluate");
    clear_label_record();
    dataset_batches<M, L> batches(model, ds, false, where);
    batches.begin_epoch(0);
    bool any = false;
    Logs logs = evaluate_batches<L>(
        model,
        [&](const auto& use) {
          std::optional<tensor> xb;
          std::optional<Tensor<L, Dev>> yb;
          while (batches.next(xb, yb)) {
            use(*xb, *yb);
            any = true;
          }
        },
        prefix, device_label_status<L>(), where);
    if (!any) throw argument_error(std::string(where) + ": the dataset is empty");
    return logs;
  }

  struct snapshot final : WeightsSnapshot {
    const void* owner = nullptr;
    std::vector<tensor> weights;
  };

  // What callbacks see of a running fit.
  template <class M>
  class fit_context final : public TrainingContext {
   public:
    fit_context(M& model, Trainer& trainer, std::size_t epochs, std::size_t steps, int verbose,
                std::ostream& out, const std::vector<std::string>& keys)
        : TrainingContext(epochs, steps, verbose),
          model_(model),
          trainer_(trainer),
          out_(out),
          keys_(keys) {}

    void begin_epoch(std::vector<MetricState<Dev, T>> fresh) {
      loss_sum = tensor::zeros({});
      metrics = std::move(fresh);
      seen = 0;
    }
    Logs current_logs() override {
      return trainer_.read_logs(model_, loss_sum, metrics, keys_, seen, "", false,
                                "locus::Model::fit");
    }
    std::size_t samples_seen() const override { return seen; }
    void learned_steps(std::size_t steps) { set_steps_per_epoch(steps); }
    std::shared_ptr<const WeightsSnapshot> snapshot_weights() const override {
      auto s = std::make_shared<snapshot>();
      s->owner = &model_;
      for (const auto& w : std::as_const(model_).weights()) s->weights.push_back(*w.second);
      return s;
    }
    void restore_weights(const WeightsSnapshot& base) override {
      const auto* s = dynamic_cast<const snapshot*>(&base);
      if (!s || s->owner != &model_)
        throw argument_error("locus: restore_weights with a snapshot of another model");
      std::size_t i = 0;
      for (auto& w : model_.weights()) *w.second = s->weights[i++];
    }
    std::ostream& out() override { return out_; }

    tensor loss_sum;
    std::vector<MetricState<Dev, T>> metrics;
    std::size_t seen = 0;

   private:
    M& model_;
    Trainer& trainer_;
    std::ostream& out_;
    const std::vector<std::string>& keys_;
  };

  static void check_batch_size(std::size_t b) {
    if (b == 0) throw argument_error("locus::Model: batch_size must be positive");
  }

  template <class L>
  static void check_label_count(std::size_t n, const Tensor<L, Dev>& y, const std::string& where) {
    if (y.rank() == 0 || y.shape()[0] != n) {
      throw shape_error(where + ": " + std::to_string(n) + " samples but labels of shape " +
                        to_string(y.shape()));
    }
  }

  // One accumulator per compiled metric ("accuracy" resolved for the loss).
  std::vector<MetricState<Dev, T>> fresh_metrics() const {
    std::vector<MetricState<Dev, T>> out;
    for (const Metric& m : metrics_) out.emplace_back(resolve(m));
    return out;
  }

  Metric resolve(const Metric& m) const {
    return std::visit(
        [&](const auto& l) { return resolve_metric<std::remove_cvref_t<decltype(l)>>(m); }, loss_);
  }

  // The metrics must take the labels: sparse metrics take int32 class indices, the others
  // targets shaped like the output. Checked before the first step.
  template <class L>
  void check_metrics(const char* where) const {
    for (const Metric& m : metrics_) {
      const Metric r = resolve(m);
      const bool sparse = r.sparse();
      if (sparse != std::is_same_v<L, std::int32_t>) {
        throw argument_error(std::string(where) + ": the metric " + metric_name(m) +
                             (sparse
                                  ? " needs int32 class labels, but the labels are floating-point"
                                  : " (" + metric_kind_name(r) +
                                        ") needs float targets, but the labels are int32 class "
                                        "indices; use Metric::sparse_categorical_accuracy"));
      }
    }
  }

  static std::string metric_kind_name(const Metric& m) {
    switch (m.type()) {
      case Metric::kind::categorical_accuracy:
        return "categorical_accuracy";
      case Metric::kind::binary_accuracy:
        return "binary_accuracy";
      case Metric::kind::top_k_categorical_accuracy:
        return "top_k_categorical_accuracy";
      case Metric::kind::mean_absolute_error:
        return "mean_absolute_error";
      case Metric::kind::mean_squared_error:
        return "mean_squared_error";
      default:
        return m.name();
    }
  }

  // fit's check of sparse labels (and validation labels) before the first step. On a device,
  // one read of 6 int32: the minimum and maximum of each, and the record left by earlier
  // value_and_gradient calls.
  template <class M, class L>
  void check_label_range(M& model, const Tensor<L, Dev>& y, const Tensor<L, Dev>* vy,
                         const std::string& where) {
    if constexpr (std::is_same_v<L, std::int32_t>) {
      const std::size_t classes = model.sparse_classes();
      if (!classes) return;
      if constexpr (HostDevice<Dev>) {
        check_labels(y.data(), y.size(), classes, where);
        if (vy) check_labels(vy->data(), vy->size(), classes, where + " (validation labels)");
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
        auto& pending = model.custom_loop_labels_;
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
            throw_label_range(lo, hi, c, w);
          }
        };
        bad(v[4], v[5], pending.classes ? pending.classes : classes,
            "locus::Model::value_and_gradient (an earlier call, found by " + where + ")");
        bad(std::min(v[0], 0), too_big(v[1]), classes, where);
        bad(std::min(v[2], 0), too_big(v[3]), classes, where + " (validation labels)");
      }
    } else {
      (void)model;
      (void)y;
      (void)vy;
      (void)where;
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

  // check_range: whether sparse labels still need their range check (false for fit's
  // validation pass, whose labels fit checked before training).
  template <class M, class L>
  Logs evaluate_impl(M& model, const tensor& x, const Tensor<L, Dev>& y, std::size_t batch_size,
                     const std::string& prefix, bool check_range) {
    constexpr const char* where = "locus::Model::evaluate";
    check_batch_size(batch_size);
    model.require_single("evaluate");
    {
      const tensor* in[] = {&x};
      model.check_inputs(in, where);
    }
    const std::size_t n = x.shape()[0];
    check_label_count(n, y, where);
    with_loss<L, T, void>(loss_, where, [](const auto&) {});
    check_metrics<L>(where);
    // Host labels are checked here; on a device the one-hot kernel records them (in a
    // record of this call's own) and the record is read with the sums.
    if constexpr (HostDevice<Dev>) {
      if (check_range) check_label_range<M, L>(model, y, nullptr, where);
    } else {
      clear_label_record();
    }
    const bool with_status = check_range && device_label_status<L>();
    return evaluate_batches<L>(
        model,
        [&](const auto& use) {
          for (std::size_t s = 0; s < n; s += batch_size) {
            const std::size_t e = std::min(n, s + batch_size);
            if (s == 0 && e == n) {
              use(x, y);  // one batch: no slice copy
            } else {
              use(x.slice(s, e), y.slice(s, e));
            }
          }
        },
        prefix, with_status, where);
  }

  // Keras's evaluate over the batches `for_each_batch(use)` passes to use(x, y): the mean
  // loss and metrics, summed on the device and read once (with the label record when
  // with_status). Returns nothing for no batch; the callers say whether that is an error.
  template <class L, class M, class ForEachBatch>
  Logs evaluate_batches(M& model, ForEachBatch&& for_each_batch, const std::string& prefix,
                        bool with_status, const char* where) {
    tensor loss_sum = tensor::zeros({});
    std::vector<MetricState<Dev, T>> metrics = fresh_metrics();
    std::size_t n = 0;
    for_each_batch([&](const tensor& xb, const Tensor<L, Dev>& yb) {
      const tensor out = model(xb);
      const tensor loss = with_loss<L, T, tensor>(
          loss_, where, [&](const auto& l) { return loss_of(l, out, yb, batch_labels_).value; });
      const std::size_t count = xb.shape()[0];
      loss_sum += loss * static_cast<T>(count);
      for (auto& m : metrics) m.update_state(out, yb);
      n += count;
    });
    return read_logs(model, loss_sum, metrics, metric_keys(metrics_), n, prefix, with_status,
                     where);
  }

  // The device-to-host reads of training: one per evaluation of the logs, of the loss sum
  // and every metric's sum packed into one small vector on the device (with_status: and the
  // label records, this evaluate's and the custom loop's, so evaluate's range check costs no
  // transfer of its own; only when one records a bad label is it read once more, exactly,
  // to name the label).
  template <class M>
  Logs read_logs(M& model, const tensor& loss_sum, const std::vector<MetricState<Dev, T>>& metrics,
                 const std::vector<std::string>& keys, std::size_t count, const std::string& prefix,
                 bool with_status, const char* where) {
    using B = backend_t<Dev>;
    const std::size_t m = metrics.size();
    tensor packed(uninitialized, {1 + m + (with_status ? 4 : 0)});
    B::copy(loss_sum.storage(), 0, packed.storage(), 0, 1);
    for (std::size_t i = 0; i < m; ++i)
      B::copy(metrics[i].sum().storage(), 0, packed.storage(), 1 + i, 1);
    auto& pending = model.custom_loop_labels_;
    if (with_status) {
      const tensor own = cast<T>(batch_labels_.get());
      const tensor other = cast<T>(pending.get());
      B::copy(own.storage(), 0, packed.storage(), 1 + m, 2);
      B::copy(other.storage(), 0, packed.storage(), 3 + m, 2);
    }
    const Tensor<T, Device<CPU>> h = to<Device<CPU>>(packed);
    const T* v = h.data();
    if (with_status) {
      if (v[1 + m] != T(0) || v[2 + m] != T(0))
        raise_label_status(batch_labels_.get(), batch_labels_.classes, where);
      if (v[3 + m] != T(0) || v[4 + m] != T(0)) {
        raise_label_status(
            pending.get(), pending.classes,
            std::string("locus::Model::value_and_gradient (an earlier call, found by ") + where +
                ")");
      }
    }
    Logs logs;
    const double denom = static_cast<double>(count ? count : 1);
    logs[prefix + "loss"] = static_cast<double>(v[0]) / denom;
    for (std::size_t i = 0; i < m; ++i)
      logs[prefix + keys[i]] = static_cast<double>(v[1 + i]) / denom;
    return logs;
  }

  Optimizer<Dev, T> optimizer_;
  LossConfig loss_;
  std::vector<Metric> metrics_;
  // Sparse labels out of range seen on the device by fit's steps and evaluate's batches.
  LabelRecord<Dev> batch_labels_;
};

/// What compile() returns: the model with its loss type known at compile time, so that
/// fit and evaluate with labels the loss does not take do not compile.
template <class M, class Loss>
class CompiledModel {
 public:
  using device_type = typename M::device_type;
  using value_type = typename M::value_type;

  explicit CompiledModel(M& m) : m_(&m) {}
  M& model() const { return *m_; }

  template <class TX, class DX, class L, class DY>
  History fit(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
              const FitOptions<device_type, value_type, L>& o = {}) const {
    if constexpr (is_loss_v<Loss>) locus::detail::require_loss_labels<Loss, L, value_type>();
    return m_->fit(x, y, o);
  }
  template <class TX, class DX, class L, class DY>
  Logs evaluate(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
                std::size_t batch_size = 32) const {
    if constexpr (is_loss_v<Loss>) locus::detail::require_loss_labels<Loss, L, value_type>();
    return m_->evaluate(x, y, batch_size);
  }

 private:
  M* m_;
};

}  // namespace nn
}  // namespace locus
