// Mirrored<Devs...>: data-parallel training over several devices of one process (what
// TensorFlow's MirroredStrategy does), with the set of devices in the type.
//
//   using G0 = Device<GPU, 0>; using G1 = Device<GPU, 1>;
//   Mirrored<G0, G1> model(description, /*seed=*/1);      // one replica per device
//   model.compile(Adam{}, SparseCategoricalCrossentropy{}, {"accuracy"});
//   model.fit(train_on_host, {.epochs = 2});               // global batches from the host
//
// Each global batch (made on the host, by tensors or a batched host dataset) is split by
// rows across the replicas; each replica uploads its share, runs forward and backward on
// its own device, on a thread of its own; the gradients, each scaled by its share of the
// global batch (so that the loss is the global batch's mean, as tf.nn.compute_average_loss
// makes it), are summed round a ring of the devices (ring_allreduce.hpp: 2(N-1)/N of the
// gradient bytes sent per device per step); every replica then applies the same update with
// its own optimizer, so the weights stay equal, bitwise on devices of one kind. Batch
// normalisation uses each replica's batch statistics (Keras's default); the moving
// statistics are averaged across the replicas at the end of each epoch, so every replica
// holds the same model after an epoch. BatchNormalization with synchronized = true
// (Keras's flag) uses the global batch's statistics instead, summed round the ring in the
// forward and backward passes of each step.
//
// The training loop is Trainer::run_fit, once per replica: the replicas meet at the points
// GradientReducer names (reducer.hpp). A replica that fails (a bad record in its share, a
// device error) aborts the others at their next meeting point, and fit rethrows its error.
//
// Not here: overlapping the all-reduce with the backward pass.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../data/dataset.hpp"
#include "../detail/contract.hpp"
#include "../device.hpp"
#include "../error.hpp"
#include "../nn/model.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "ring_allreduce.hpp"

namespace locus {

namespace parallel::detail {

template <class D, class... Ds>
inline constexpr std::size_t count_of = (std::size_t{std::is_same_v<D, Ds>} + ... + 0);

// Rows [lo, hi) of a batch of `rows` rows that replica i of n takes.
inline std::pair<std::size_t, std::size_t> share_of(std::size_t rows, std::size_t i,
                                                    std::size_t n) {
  return {rows * i / n, rows * (i + 1) / n};
}

}  // namespace parallel::detail

/// Replicas of one model on Devs... (distinct devices), trained data-parallel. T is the
/// element type; Mirrored<Devs...> is the float one.
template <class T, AnyDevice... Devs>
class MirroredModel {
  static_assert(sizeof...(Devs) >= 1, "locus::Mirrored: name at least one device");

 public:
  static constexpr std::size_t replicas = sizeof...(Devs);
  template <std::size_t I>
  using device = std::tuple_element_t<I, std::tuple<Devs...>>;
  using host = Device<CPU>;
  using host_tensor = Tensor<T, host>;

  /// Replicas of `model` (on any of Devs: it is copied to each device with counted
  /// transfers, compiled as it is). A model on a device outside the set does not compile:
  /// move it first.
  template <AnyDevice D>
  explicit MirroredModel(const Model<D, T>& model) : replicas_(copy_of<Devs>(model)...) {
    check_devices();
    each([&]<std::size_t I>() { replica<I>().replicas_ = &std::get<I>(participants_); });
  }
  /// Replicas of a new model bound from `description` with `seed`: bound once (on the first
  /// device) and copied, so every replica starts from the same weights.
  explicit MirroredModel(const Functional& description, std::uint64_t seed = 0)
      : MirroredModel(Model<device<0>, T>(description, seed)) {}
  // The replicas and the ring refer to this object: it stays where it was made.
  MirroredModel(const MirroredModel&) = delete;
  MirroredModel& operator=(const MirroredModel&) = delete;

  /// Replica I (in the order of Devs).
  template <std::size_t I>
  Model<device<I>, T>& replica() {
    return std::get<I>(replicas_);
  }
  template <std::size_t I>
  const Model<device<I>, T>& replica() const {
    return std::get<I>(replicas_);
  }
  /// The replica on device D; a device outside the set does not compile.
  template <AnyDevice D>
  auto& replica() {
    if constexpr (parallel::detail::count_of < D, Devs... >> 0) {
      return std::get<Model<D, T>>(replicas_);
    } else {
      (void)sizeof(locus::detail::mirrored_no_replica<device<0>, D>);
      return std::get<0>(replicas_);
    }
  }

  /// Each replica gets the optimizer, loss and metrics (its own optimizer state).
  template <class Loss>
  void compile(OptimizerConfig optimizer, const Loss& loss, std::vector<Metric> metrics = {}) {
    each([&]<std::size_t I>() { replica<I>().compile(optimizer, loss, metrics); });
  }

  /// fit on host tensors: shuffled (o.seed) into global batches of o.batch_size rows, each
  /// split across the replicas. Validation data (host) is evaluated by replica 0.
  template <class TX, class DX, class L, class DY>
  History fit(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
              const FitOptions<host, T, L>& o = {}) {
    (void)sizeof(host_data<DX>);
    (void)sizeof(host_data<DY>);
    if constexpr (HostDevice<DX> && HostDevice<DY> && std::is_same_v<TX, T>) {
      auto ds = data::Dataset<host, T, L>::from_tensors(x, y);
      if (o.shuffle) ds = ds.shuffle(x.shape()[0], o.seed);
      return fit(ds.batch(o.batch_size), o);
    } else {
      return {};
    }
  }

  /// fit on a batched host dataset of global batches.
  template <AnyDevice DD, class L>
  History fit(const data::Dataset<DD, T, L>& global_batches, const FitOptions<host, T, L>& o = {}) {
    (void)sizeof(host_data<DD>);
    if constexpr (HostDevice<DD>) {
      return train(global_batches, o);
    } else {
      return {};
    }
  }

  /// Loss and metrics over host tensors, each replica evaluating a contiguous share of the
  /// rows; the logs are the row-weighted means of the replicas' logs.
  template <class TX, class DX, class L, class DY>
  Logs evaluate(const Tensor<TX, DX>& x, const Tensor<L, DY>& y, std::size_t batch_size = 32) {
    (void)sizeof(host_data<DX>);
    (void)sizeof(host_data<DY>);
    if constexpr (HostDevice<DX> && HostDevice<DY> && std::is_same_v<TX, T>) {
      const std::size_t n = x.shape()[0];
      if (y.shape().rank() == 0 || y.shape()[0] != n)
        throw shape_error("locus::Mirrored::evaluate: " + std::to_string(n) +
                          " inputs and labels of shape " + to_string(y.shape()));
      std::array<Logs, replicas> logs;
      std::array<std::size_t, replicas> rows{};
      on_every_replica([&]<std::size_t I>() {
        const auto [lo, hi] = parallel::detail::share_of(n, I, replicas);
        rows[I] = hi - lo;
        if (hi == lo) return;
        logs[I] = replica<I>().evaluate(locus::to<device<I>>(x.slice(lo, hi)),
                                        locus::to<device<I>>(y.slice(lo, hi)), batch_size);
      });
      return weighted_mean(logs, rows);
    } else {
      return {};
    }
  }

  /// Outputs for host inputs, each replica predicting a contiguous share; on the host.
  template <class TX, class DX>
  host_tensor predict(const Tensor<TX, DX>& x, std::size_t batch_size = 32) const {
    (void)sizeof(host_data<DX>);
    if constexpr (HostDevice<DX> && std::is_same_v<TX, T>) {
      const std::size_t n = x.shape()[0];
      std::array<std::optional<host_tensor>, replicas> parts;
      on_every_replica([&]<std::size_t I>() {
        const auto [lo, hi] = parallel::detail::share_of(n, I, replicas);
        if (hi == lo) return;
        parts[I] = locus::to<host>(
            replica<I>().predict(locus::to<device<I>>(x.slice(lo, hi)), batch_size));
      });
      Shape s;
      for (const auto& p : parts)
        if (p) s = p->shape();
      s[0] = n;
      host_tensor out(uninitialized, s);
      std::size_t at = 0;
      for (const auto& p : parts) {
        if (!p) continue;
        std::copy(p->begin(), p->end(), out.begin() + static_cast<std::ptrdiff_t>(at));
        at += p->size();
      }
      return out;
    } else {
      return {};
    }
  }

  /// A custom loop's step: loss and gradients of a global host batch, split across the
  /// replicas, each replica's gradients already summed round the ring (apply them with
  /// apply_gradients). `loss` is the global batch's mean loss, on the host.
  struct Gradients {
    double loss = 0;
    std::tuple<std::vector<Tensor<T, Devs>>...> grads;
  };
  template <class TX, class DX, class L, class DY, class Loss>
  Gradients value_and_gradient(const Tensor<TX, DX>& x, const Tensor<L, DY>& y, const Loss& loss) {
    (void)sizeof(host_data<DX>);
    (void)sizeof(host_data<DY>);
    Gradients g;
    if constexpr (HostDevice<DX> && HostDevice<DY> && std::is_same_v<TX, T>) {
      const std::size_t n =
          check_global_batch(x.shape()[0], "locus::Mirrored::value_and_gradient: the global batch");
      std::array<double, replicas> losses{};
      // On a thread per replica, as fit: synchronized layers meet across replicas mid-step.
      on_every_replica([&]<std::size_t I>() {
        const auto [lo, hi] = parallel::detail::share_of(n, I, replicas);
        auto r = replica<I>().value_and_gradient(locus::to<device<I>>(x.slice(lo, hi)),
                                                 locus::to<device<I>>(y.slice(lo, hi)), loss);
        const T scale = static_cast<T>(hi - lo) / static_cast<T>(n);
        losses[I] =
            static_cast<double>(scale) * static_cast<double>(locus::to<host>(r.loss).item());
        std::get<I>(g.grads) = std::move(r.grads);
        std::vector<Tensor<T, device<I>>*> list;
        for (auto& t : std::get<I>(g.grads)) list.push_back(&t);
        ring_.template run<I>(list, scale);
      });
      for (double l : losses) g.loss += l;
    }
    return g;
  }
  /// Each replica's optimizer applies its (equal) gradients of a value_and_gradient step.
  void apply_gradients(const Gradients& g) {
    each([&]<std::size_t I>() {
      replica<I>().optimizer().apply_gradients(std::get<I>(g.grads), replica<I>());
    });
  }

  /// Bytes each replica sends round the ring per training step: 2(N-1)/N of the gradients.
  std::size_t allreduce_bytes_per_step() const {
    return parallel::ring_allreduce<T, Devs...>::bytes_per_replica(
        std::get<0>(replicas_).count_params());
  }

 private:
  template <class D>
  using host_data = locus::detail::mirrored_data_on_device<D>;

  template <AnyDevice Dst, AnyDevice Src>
  static Model<Dst, T> copy_of(const Model<Src, T>& m) {
    if constexpr (parallel::detail::count_of<Src, Devs...> == 0) {
      (void)sizeof(locus::detail::model_device_mismatch<device<0>, Src>);
    }
    // A compiled model's replicas come compiled, each with its own optimizer state.
    return locus::to<Dst>(m, ModelCopyOptions{.optimizer = true});
  }

  static void check_devices() {
    ((void)sizeof(std::conditional_t<(parallel::detail::count_of<Devs, Devs...> > 1),
                                     locus::detail::mirrored_duplicate_device<Devs>,
                                     locus::detail::require_same_device<Devs, Devs>>),
     ...);
  }

  template <class F>
  static void each(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f.template operator()<I>(), ...);
    }
    (std::index_sequence_for<Devs...>{});
  }

  // f<I>() on a thread per replica (replica 0 on this one); the first error is rethrown
  // after every thread has ended, and aborts the ring so that none waits for the failed one.
  template <class F>
  void on_every_replica(F&& f) const {
    std::exception_ptr first;
    std::mutex m;
    auto guarded = [&]<std::size_t I>() {
      try {
        f.template operator()<I>();
      } catch (const parallel::replica_aborted&) {
        // Another replica failed first; its error is the one to report.
      } catch (...) {
        {
          std::lock_guard lock(m);
          if (!first) first = std::current_exception();
        }
        ring_.abort();
      }
    };
    std::vector<std::thread> threads;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (
          [&] {
            if constexpr (I > 0) threads.emplace_back([&] { guarded.template operator()<I>(); });
          }(),
          ...);
    }
    (std::index_sequence_for<Devs...>{});
    guarded.template operator()<0>();
    for (auto& t : threads) t.join();
    ring_.reset();
    if (first) std::rethrow_exception(first);
  }

  // Every replica needs a row of each global batch; `batch` names the batch in the error.
  static std::size_t check_global_batch(std::size_t rows, const std::string& batch) {
    if (rows < replicas) {
      throw argument_error(batch + " has " + std::to_string(rows) + " rows, fewer than the " +
                           std::to_string(replicas) +
                           " replicas (each needs a row); use a larger batch, or "
                           "batch(n, /*drop_remainder=*/true)");
    }
    return rows;
  }

  static Logs weighted_mean(const std::array<Logs, replicas>& logs,
                            const std::array<std::size_t, replicas>& rows) {
    Logs out;
    std::size_t total = 0;
    for (std::size_t r : rows) total += r;
    for (std::size_t i = 0; i < replicas; ++i) {
      for (const auto& [k, v] : logs[i])
        out[k] += v * static_cast<double>(rows[i]) / static_cast<double>(total);
    }
    return out;
  }

  // Replica I's side of the meeting points of fit (see reducer.hpp).
  template <std::size_t I>
  class participant final : public GradientReducer<device<I>, T>,
                            public nn::CrossReplica<device<I>, T> {
   public:
    explicit participant(MirroredModel& m) : m_(m) {}
    // Synchronized layers (batch normalisation's statistics): a plain sum round the ring.
    void sum(const std::vector<Tensor<T, device<I>>*>& ts) const override {
      m_.ring_.template run<I>(ts, T(1));
    }
    void reduce_gradients(const std::vector<nn::Parameter<device<I>, T>*>& params,
                          std::size_t rows) override {
      const std::size_t total = m_.exchange_rows(I, rows);
      std::vector<Tensor<T, device<I>>*> grads;
      for (auto* p : params) grads.push_back(&p->grad);
      m_.ring_.template run<I>(grads, static_cast<T>(rows) / static_cast<T>(total));
    }
    void end_epoch(Model<device<I>, T>& model, Logs& logs, std::size_t rows) override {
      // Moving statistics: the replicas' mean.
      std::vector<Tensor<T, device<I>>*> state;
      const auto info = model.weight_info();
      auto weights = model.weights();
      for (std::size_t k = 0; k < info.size(); ++k)
        if (!info[k].trainable) state.push_back(weights[k].second);
      if (!state.empty()) m_.ring_.template run<I>(state, T(1) / static_cast<T>(replicas));
      logs = m_.exchange_logs(I, logs, rows);
    }
    bool stop(bool requested) override { return m_.exchange_stop(I, requested); }

   private:
    MirroredModel& m_;
  };

  // The meeting points' exchanges: every replica writes its slot, all meet, every replica
  // reads all slots in the same order (so all compute the same result), all meet again
  // before a slot is written anew.
  std::size_t exchange_rows(std::size_t i, std::size_t rows) {
    rows_[i] = rows;
    ring_.barrier().arrive_and_wait();
    std::size_t total = 0;
    for (std::size_t r : rows_) total += r;
    ring_.barrier().arrive_and_wait();
    return total;
  }
  Logs exchange_logs(std::size_t i, const Logs& logs, std::size_t rows) {
    logs_[i] = logs;
    rows_[i] = rows;
    ring_.barrier().arrive_and_wait();
    Logs merged = weighted_mean(logs_, rows_);
    ring_.barrier().arrive_and_wait();
    return merged;
  }
  bool exchange_stop(std::size_t i, bool requested) {
    stop_[i] = requested;
    ring_.barrier().arrive_and_wait();
    bool any = false;
    for (bool s : stop_) any = any || s;
    ring_.barrier().arrive_and_wait();
    return any;
  }

  template <class L>
  History train(const data::Dataset<host, T, L>& global_batches, const FitOptions<host, T, L>& o) {
    History result;
    // Validation data moves to replica 0's device once, before training.
    std::optional<Tensor<T, device<0>>> vx;
    std::optional<Tensor<L, device<0>>> vy;
    if (o.validation_data.x) {
      vx = locus::to<device<0>>(*o.validation_data.x);
      vy = locus::to<device<0>>(*o.validation_data.y);
    }
    on_every_replica([&]<std::size_t I>() {
      FitOptions<device<I>, T, L> r;
      r.epochs = o.epochs;
      r.batch_size = o.batch_size;
      r.shuffle = false;
      r.steps_per_epoch = o.steps_per_epoch;
      r.initial_epoch = o.initial_epoch;
      r.out = o.out;
      r.reducer = &std::get<I>(participants_);
      r.verbose = I == 0 ? o.verbose : 0;
      if constexpr (I == 0) {
        r.callbacks = o.callbacks;
        if (vx) r.validation_data = ValidationData<device<0>, T, L>(*vx, *vy);
        if (o.validation_data.dataset)
          r.validation_data =
              ValidationData<device<0>, T, L>(locus::to<device<0>>(*o.validation_data.dataset));
      }
      const auto share = global_batches.map([](data::Example<host, T, L> e) {
        const std::size_t rows = check_global_batch(
            e.x.shape()[0], "locus::Mirrored::fit: the global batch that starts at record " +
                                std::to_string(e.record));
        const auto [lo, hi] = parallel::detail::share_of(rows, I, replicas);
        e.x = e.x.slice(lo, hi);
        e.y = e.y.slice(lo, hi);
        return e;
      });
      History h = replica<I>().fit(locus::to<device<I>>(share), r);
      if constexpr (I == 0) result = std::move(h);
    });
    return result;
  }

  template <std::size_t... I>
  static auto make_participants(MirroredModel& m, std::index_sequence<I...>) {
    return std::tuple<participant<I>...>(participant<I>(m)...);
  }

  std::tuple<Model<Devs, T>...> replicas_;
  mutable parallel::ring_allreduce<T, Devs...> ring_;
  decltype(make_participants(std::declval<MirroredModel&>(),
                             std::index_sequence_for<Devs...>{})) participants_ =
      make_participants(*this, std::index_sequence_for<Devs...>{});
  std::array<std::size_t, replicas> rows_{};
  std::array<Logs, replicas> logs_{};
  std::array<bool, replicas> stop_{};
};

/// Float replicas on Devs...: Mirrored<Device<GPU, 0>, Device<GPU, 1>>.
template <AnyDevice... Devs>
using Mirrored = MirroredModel<float, Devs...>;

}  // namespace locus
