// mpi::DataParallel<Dev, T>: data-parallel training across the ranks of an MPI job.
//
//   locus::mpi::Session mpi;
//   Sequential<Device<GPU>> model(...);            // the same on every rank
//   model.build(42);
//   model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
//   auto train = data::Dataset<>::from_idx(images, labels).shuffle(60000, 1);  // unbatched
//   locus::mpi::DataParallel<Device<GPU>> dp(mpi);
//   dp.fit(model, train, /*global_batch=*/256, {.epochs = 5},
//          /*rank0_callbacks=*/{std::make_shared<ModelCheckpoint<Device<GPU>>>(model, "m.keras")});
//
// Every rank runs the ordinary training loop (Trainer::run_fit) on its shard of each global
// batch and this reducer makes the ranks agree (reducer.hpp): after each backward pass the
// gradients become the global batch's (one fused all-reduce per step), at the end of an
// epoch the non-trainable weights and the logs become the ranks' common ones, and stopping
// is decided by all at once. The ranks start from rank 0's model (broadcast_model) and so
// stay identical: the same weights and optimizer state on every rank after every step.
//
// A failure of one rank (an exception of its pipeline or model, a collective that timed
// out) stops the whole job with a line naming the rank and the error: left alone, the other
// ranks would wait in their next collective.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../detail/contract.hpp"
#include "../../error.hpp"
#include "../../locus.hpp"
#include "../../nn/training/reducer.hpp"
#include "broadcast_model.hpp"
#include "collectives.hpp"
#include "session.hpp"
#include "staging.hpp"

namespace locus::mpi {

template <AnyDevice Dev, class T = float>
class DataParallel final : public GradientReducer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;

  explicit DataParallel(Session& session) : session_(&session) {}

  /// Keras's fit over the ranks: `unbatched` (a host dataset of single examples, the same
  /// pipeline on every rank, shuffled with one seed) is sharded by rank
  /// (shard(size, rank)) and batched by global_batch / size, so that each step's shards
  /// make one global batch of the shuffled order; the batches cross to Dev prefetched. The
  /// model is first made rank 0's (broadcast_model: every rank's model must match it).
  /// Progress output is rank 0's only; o.callbacks run on every rank, rank0_callbacks
  /// (checkpoints, loggers) on rank 0 only. Each epoch is as long on every rank: a dataset
  /// of unknown length needs o.steps_per_epoch, and a known length whose last global batch
  /// has rows for only some ranks is an argument_error.
  ///
  /// Any exception on this rank (those arguments included) stops all ranks
  /// (Session::abort: "locus::mpi: rank R failed: <what>; stopping all ranks").
  template <AnyDevice MD, class MT, AnyDevice DD, class TX, class L>
  History fit(Model<MD, MT>& model, const data::Dataset<DD, TX, L>& unbatched,
              std::size_t global_batch, FitOptions<Dev, T, L> o = {},
              std::vector<std::shared_ptr<Callback>> rank0_callbacks = {}) {
    // The model trains on this reducer's device; the shards are cut from a host pipeline
    // (and cross to Dev after), so a pipeline already on a device cannot be sharded here.
    (void)sizeof(locus::detail::model_device_mismatch<Dev, MD>);
    (void)sizeof(locus::detail::dataset_device_mismatch<Device<CPU>, DD>);
    (void)sizeof(locus::detail::element_type_mismatch<T, MT>);
    (void)sizeof(locus::detail::element_type_mismatch<T, TX>);
    if constexpr (std::is_same_v<MD, Dev> && HostDevice<DD> && std::is_same_v<MT, T> &&
                  std::is_same_v<TX, T>) {
      Session& s = *session_;
      try {
        check_split(unbatched.cardinality(), global_batch, o.steps_per_epoch);
        broadcast_model(model, s);
        const auto shard =
            unbatched.shard(static_cast<std::size_t>(s.size()), static_cast<std::size_t>(s.rank()))
                .batch(global_batch / static_cast<std::size_t>(s.size()));
        const auto batches = locus::to<Dev>(shard).prefetch(2);
        o.reducer = this;
        if (s.rank() == 0) {
          o.callbacks.insert(o.callbacks.end(), rank0_callbacks.begin(), rank0_callbacks.end());
        } else {
          o.verbose = 0;
        }
        epoch_ = o.initial_epoch;
        step_ = 0;
        return model.fit(batches, o);
      } catch (const std::exception& e) {
        s.abort(1, e.what());
      } catch (...) {
        s.abort(1, "an exception that is not a std::exception");
      }
    } else {
      return {};
    }
  }

  /// After each backward pass: all gradients, each times this rank's rows, and the row
  /// count cross in one buffer, are summed over the ranks, and come back divided by the
  /// total rows: the gradient of the global batch, the same on every rank.
  void reduce_gradients(const std::vector<nn::Parameter<Dev, T>*>& params,
                        std::size_t rows) override {
    ++step_;
    grads_.clear();
    sources_.clear();
    shapes_.clear();
    for (auto* p : params) {
      if (!(p->grad.shape() == p->value.shape())) {
        throw argument_error("locus::mpi::DataParallel: parameter '" + p->name +
                             "' has no gradient of its shape (" + to_string(p->grad.shape()) + ")");
      }
      grads_.push_back(&p->grad);
      sources_.push_back(&p->grad);
      shapes_.push_back(p->grad.shape());
    }
    const std::span<T> buf = gradients_.gather(sources_, 1);
    const std::size_t n = buf.size() - 1;
    const T weight = static_cast<T>(rows);
    for (std::size_t i = 0; i < n; ++i) buf[i] *= weight;
    buf[n] = weight;
    allreduce_sum(*session_, buf,
                  "the gradient all-reduce of step " + std::to_string(step_) + " of epoch " +
                      std::to_string(epoch_ + 1));
    const T total = buf[n];
    for (std::size_t i = 0; i < n; ++i) buf[i] /= total;
    gradients_.scatter(buf.first(n), grads_, shapes_);
    step_bytes_ = buf.size() * sizeof(T);
  }

  /// At the end of an epoch: the non-trainable weights (batch normalisation's moving
  /// statistics, which each rank updated from its own rows) become their mean over the
  /// ranks, and the logs the mean over all rows (each rank's weighted by its rows).
  void end_epoch(Model<Dev, T>& model, Logs& logs, std::size_t rows) override {
    const std::string epoch = std::to_string(epoch_ + 1);
    const auto info = model.weight_info();
    std::vector<tensor*> state;
    std::vector<const tensor*> sources;
    std::vector<Shape> shapes;
    std::size_t i = 0;
    for (auto& w : model.weights()) {
      if (!info[i++].trainable) {
        state.push_back(w.second);
        sources.push_back(w.second);
        shapes.push_back(w.second->shape());
      }
    }
    if (!state.empty()) {
      const std::span<T> buf = state_.gather(sources, 0);
      allreduce_sum(*session_, buf, "the non-trainable weights' all-reduce of epoch " + epoch);
      const T ranks = static_cast<T>(session_->size());
      for (T& v : buf) v /= ranks;
      state_.scatter(buf, state, shapes);
    }
    // Logs in double (their own small collective): EarlyStopping compares them to min_delta.
    // A std::map lists the keys in one order on every rank.
    std::vector<double> sums;
    for (const auto& [key, value] : logs) sums.push_back(value * static_cast<double>(rows));
    sums.push_back(static_cast<double>(rows));
    allreduce_sum(*session_, std::span(sums), "the logs' all-reduce of epoch " + epoch);
    std::size_t k = 0;
    for (auto& [key, value] : logs) value = sums[k++] / sums.back();
  }

  /// Whether any rank asked to stop (EarlyStopping, a callback's stop_training): then all
  /// stop after this epoch.
  bool stop(bool requested) override {
    const bool any =
        any_rank(*session_, requested, "the stop decision of epoch " + std::to_string(epoch_ + 1));
    ++epoch_;
    step_ = 0;
    return any;
  }

  /// The bytes each step all-reduces for `model`: every gradient and the row count.
  static std::size_t step_bytes(const Model<Dev, T>& model) {
    return (model.count_params() + 1) * sizeof(T);
  }
  /// The bytes the last step all-reduced (0 before the first).
  std::size_t last_step_bytes() const { return step_bytes_; }

 private:
  // Every rank must run as many steps per epoch, or one would wait for a step the others
  // never take. Rank r holds n / size rows, plus one when r < n % size: all run as many
  // batches of global_batch / size unless the last global batch has fewer rows than ranks.
  void check_split(std::size_t n, std::size_t global_batch, std::size_t steps_per_epoch) const {
    const std::string where = "locus::mpi::DataParallel::fit";
    const auto size = static_cast<std::size_t>(session_->size());
    if (global_batch == 0 || global_batch % size != 0) {
      throw argument_error(where + ": the global batch (" + std::to_string(global_batch) +
                           ") must be a positive multiple of the number of ranks (" +
                           std::to_string(size) + ")");
    }
    if (steps_per_epoch > 0) return;
    if (n == data::unknown_cardinality || n == data::infinite_cardinality) {
      throw argument_error(where +
                           ": the dataset's length is unknown, so the ranks' epochs could "
                           "differ; give steps_per_epoch");
    }
    const auto examples = [](std::size_t k) {
      return std::to_string(k) + (k == 1 ? " example" : " examples");
    };
    if (n < size) {
      throw argument_error(where + ": " + examples(n) + " for " + std::to_string(size) +
                           " ranks; every rank needs a part of every batch");
    }
    const std::size_t rest = n % global_batch;
    if (rest > 0 && rest < size) {
      throw argument_error(where + ": " + examples(n) + " in global batches of " +
                           std::to_string(global_batch) + " leave a last batch of " +
                           examples(rest) + " for " + std::to_string(size) +
                           " ranks, and every rank needs a part of every batch; drop them with "
                           "dataset.take(" +
                           std::to_string(n - rest) + ") or choose another global batch");
    }
  }

  Session* session_;
  std::size_t epoch_ = 0, step_ = 0;  // for messages: the epoch and step under way
  std::size_t step_bytes_ = 0;
  detail::host_staging<Dev, T> gradients_, state_;
  std::vector<tensor*> grads_;  // this step's, kept to reuse their memory
  std::vector<const tensor*> sources_;
  std::vector<Shape> shapes_;
};

}  // namespace locus::mpi
