// Training history and callbacks.
#pragma once

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../error.hpp"

namespace locus {

/// Metric values of one epoch ("loss", "accuracy", "val_loss", ...).
using Logs = std::map<std::string, double>;

/// What fit() returns: one value per epoch for every logged quantity.
struct History {
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
};

/// Called by fit() after every epoch; returning true stops training.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin() {}
  virtual bool on_epoch_end(std::size_t epoch, const Logs& logs) = 0;
};

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0.0;
  std::size_t patience = 0;
  /// Put back the weights of the best epoch when training stops (or ends).
  bool restore_best_weights = false;
};

/// Keras's EarlyStopping: stops when `monitor` has not improved by more than min_delta
/// for `patience` epochs. Quantities whose name contains "acc" are maximised, the rest
/// minimised (Keras's mode="auto").
class EarlyStopping final : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o = {}) : o_(std::move(o)) {}

  void on_train_begin() override {
    wait_ = 0;
    best_epoch_ = 0;
    stopped_epoch_ = -1;
    best_ = maximise() ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }

  bool on_epoch_end(std::size_t epoch, const Logs& logs) override {
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

  const EarlyStoppingOptions& options() const { return o_; }
  /// Whether the last epoch seen was the best so far (the model snapshots its weights then).
  bool improved() const { return improved_; }
  std::size_t best_epoch() const { return best_epoch_; }
  double best() const { return best_; }
  /// The epoch at which training was stopped, or -1.
  long stopped_epoch() const { return stopped_epoch_; }

 private:
  bool maximise() const { return o_.monitor.find("acc") != std::string::npos; }
  EarlyStoppingOptions o_;
  double best_ = 0;
  std::size_t wait_ = 0, best_epoch_ = 0;
  long stopped_epoch_ = -1;
  bool improved_ = false;
};

}  // namespace locus
