// Callbacks in the spirit of Keras: hooks at the beginning and end of training, of each
// epoch and of each batch, that observe training and may stop it.
//
// A callback sees fit() through a TrainingContext, which names no device and no model
// type, so one callback serves models on every device: it can ask for the running logs
// (one small device read, so the per-batch hooks receive none unasked), snapshot the
// weights on the model's device and put a snapshot back, and ask training to stop.
// History, EarlyStopping and the progress output are callbacks like any other.
#pragma once

#include <cmath>
#include <cstddef>
#include <iosfwd>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../../error.hpp"

namespace locus {

/// Metric values of one epoch ("loss", "accuracy", "val_loss", ...).
using Logs = std::map<std::string, double>;

/// A copy of a model's weights on its own device (opaque to callbacks).
class WeightsSnapshot {
 public:
  virtual ~WeightsSnapshot() = default;
};

/// What a callback can see and do of the fit() that calls it.
class TrainingContext {
 public:
  virtual ~TrainingContext() = default;

  /// Asks fit() to stop at the end of the current epoch (Keras's model.stop_training).
  void stop_training() { stop_ = true; }
  bool stop_requested() const { return stop_; }

  std::size_t epochs() const { return epochs_; }
  /// Steps of an epoch; 0 during the first epoch over a dataset of unknown length.
  std::size_t steps_per_epoch() const { return steps_; }
  int verbose() const { return verbose_; }

  /// The running logs of the current epoch so far (loss and metrics of the batches
  /// seen). One counted read of a few bytes on a device: call it sparingly.
  virtual Logs current_logs() = 0;
  /// The number of samples the current epoch has trained on so far.
  virtual std::size_t samples_seen() const = 0;
  /// A copy of every weight, on the model's device.
  virtual std::shared_ptr<const WeightsSnapshot> snapshot_weights() const = 0;
  /// Puts a snapshot of this model back (throws argument_error for another model's).
  virtual void restore_weights(const WeightsSnapshot& s) = 0;
  /// Where fit() prints.
  virtual std::ostream& out() = 0;

 protected:
  TrainingContext(std::size_t epochs, std::size_t steps, int verbose)
      : epochs_(epochs), steps_(steps), verbose_(verbose) {}
  void set_steps_per_epoch(std::size_t steps) { steps_ = steps; }

 private:
  std::size_t epochs_, steps_;
  int verbose_;
  bool stop_ = false;
};

/// Keras's Callback. Every hook does nothing by default.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(TrainingContext&) {}
  virtual void on_train_end(TrainingContext&, const Logs& /*last epoch*/) {}
  virtual void on_epoch_begin(TrainingContext&, std::size_t /*epoch*/) {}
  virtual void on_epoch_end(TrainingContext&, std::size_t /*epoch*/, const Logs&) {}
  virtual void on_train_batch_begin(TrainingContext&, std::size_t /*batch*/) {}
  virtual void on_train_batch_end(TrainingContext&, std::size_t /*batch*/) {}
  /// Around the validation pass at the end of an epoch.
  virtual void on_test_begin(TrainingContext&) {}
  virtual void on_test_end(TrainingContext&, const Logs& /*validation logs*/) {}
};

/// What fit() returns: one value per epoch for every logged quantity. fit() records it
/// as a callback, as Keras does.
class History final : public Callback {
 public:
  std::map<std::string, std::vector<double>> history;
  std::size_t epochs = 0;

  /// The value of `key` after the last epoch (throws argument_error when not logged).
  double last(const std::string& key) const {
    auto it = history.find(key);
    if (it == history.end() || it->second.empty()) {
      throw argument_error("locus::History: nothing logged under '" + key + "'");
    }
    return it->second.back();
  }

  void on_train_begin(TrainingContext&) override {
    history.clear();
    epochs = 0;
  }
  void on_epoch_end(TrainingContext&, std::size_t epoch, const Logs& logs) override {
    for (const auto& [k, v] : logs) history[k].push_back(v);
    epochs = epoch + 1;
  }
};

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0.0;
  std::size_t patience = 0;
  /// Put back the weights of the best epoch when training ends.
  bool restore_best_weights = false;
};

/// Keras's EarlyStopping: stops when `monitor` has not improved by more than min_delta
/// for `patience` epochs. Quantities whose name contains "acc" are maximised, the rest
/// minimised (Keras's mode="auto").
class EarlyStopping final : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o = {}) : o_(std::move(o)) {}

  void on_train_begin(TrainingContext&) override { reset(); }

  void on_epoch_end(TrainingContext& ctx, std::size_t epoch, const Logs& logs) override {
    if (observe(epoch, logs)) ctx.stop_training();
    if (improved_ && o_.restore_best_weights) best_weights_ = ctx.snapshot_weights();
  }

  void on_train_end(TrainingContext& ctx, const Logs&) override {
    if (o_.restore_best_weights && best_weights_) ctx.restore_weights(*best_weights_);
    best_weights_.reset();
  }

  /// The decision of one epoch without a running fit (what on_epoch_end does): records
  /// `logs` and returns whether training should stop.
  bool observe(std::size_t epoch, const Logs& logs) {
    auto it = logs.find(o_.monitor);
    if (it == logs.end()) {
      throw argument_error("locus::EarlyStopping: monitored quantity '" + o_.monitor +
                           "' is not logged (is validation_data set?)");
    }
    const double v = it->second;
    const bool better = maximise() ? v - o_.min_delta > best_ : v + o_.min_delta < best_;
    if (better || epoch == 0) {
      best_ = v;
      best_epoch_ = epoch;
      wait_ = 0;
      improved_ = true;
      return false;
    }
    improved_ = false;
    if (++wait_ >= o_.patience) {  // as Keras: patience 0 and 1 both stop at once
      stopped_epoch_ = static_cast<long>(epoch);
      return true;
    }
    return false;
  }

  /// Forgets everything seen (what on_train_begin does).
  void reset() {
    wait_ = 0;
    best_epoch_ = 0;
    stopped_epoch_ = -1;
    improved_ = false;
    best_weights_.reset();
    best_ = maximise() ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  }

  const EarlyStoppingOptions& options() const { return o_; }
  /// Whether the last epoch seen was the best so far.
  bool improved() const { return improved_; }
  std::size_t best_epoch() const { return best_epoch_; }
  double best() const { return best_; }
  /// The epoch at which training was stopped, or -1.
  long stopped_epoch() const { return stopped_epoch_; }

 private:
  bool maximise() const { return o_.monitor.find("acc") != std::string::npos; }
  EarlyStoppingOptions o_;
  double best_ = std::numeric_limits<double>::infinity();
  std::size_t wait_ = 0, best_epoch_ = 0;
  long stopped_epoch_ = -1;
  bool improved_ = false;
  std::shared_ptr<const WeightsSnapshot> best_weights_;
};

}  // namespace locus
