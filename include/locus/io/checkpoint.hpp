// ModelCheckpoint: Keras's callback that saves the model during fit.
//
//   auto ckpt = std::make_shared<locus::ModelCheckpoint<Dev>>(model, "ckpt-{epoch:02d}.keras");
//   auto best = std::make_shared<locus::ModelCheckpoint<Dev>>(
//       model, "best.keras", locus::ModelCheckpointOptions{.monitor = "val_accuracy",
//       .save_best_only = true});
//   model.fit(x, y, {.epochs = 10, .validation_split = 0.1, .callbacks = {ckpt, best}});
//
// Every save is atomic (io/file.hpp): a run killed mid-save leaves the last checkpoint
// loadable, which is what a restart resumes from.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>

#include "../error.hpp"
#include "../locus.hpp"
#include "../nn/training/callbacks.hpp"
#include "save.hpp"

namespace locus {

struct ModelCheckpointOptions {
  /// The log compared by save_best_only ("val_loss", "val_accuracy", "loss", ...).
  std::string monitor = "val_loss";
  /// Save only when `monitor` improves on the best value so far (otherwise every epoch).
  bool save_best_only = false;
  /// Write the weights only (the path must then end in .weights.h5).
  bool save_weights_only = false;
  /// "min", "max", or "auto" (max for accuracies, min otherwise), as Keras.
  std::string mode = "auto";
  /// A line on the training output for each save.
  bool verbose = false;
};

namespace io::detail {

/// Keras's file path template: "{epoch}", "{epoch:02d}", "{val_loss:.4f}" (epochs count
/// from 1 in names, as Keras writes them).
inline std::string format_checkpoint_path(const std::string& pattern, std::size_t epoch,
                                          const Logs& logs) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '{') {
      out += pattern[i];
      continue;
    }
    const std::size_t close = pattern.find('}', i);
    if (close == std::string::npos)
      throw argument_error("locus::ModelCheckpoint: unclosed '{' in '" + pattern + "'");
    const std::string field = pattern.substr(i + 1, close - i - 1);
    const std::size_t colon = field.find(':');
    const std::string key = field.substr(0, colon);
    const std::string spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    char buf[64];
    if (key == "epoch") {
      const std::string f = "%" + (spec.empty() ? std::string("d") : spec);
      if (f.find_first_not_of("%0123456789d") != std::string::npos || f.back() != 'd')
        throw argument_error("locus::ModelCheckpoint: unsupported format '{" + field + "}'");
      std::snprintf(buf, sizeof buf, f.c_str(), static_cast<int>(epoch + 1));
    } else {
      const auto it = logs.find(key);
      if (it == logs.end())
        throw argument_error("locus::ModelCheckpoint: the path names '" + key +
                             "', which the logs do not have");
      const std::string f = "%" + (spec.empty() ? std::string("g") : spec);
      if (f.find_first_not_of("%0123456789.efg") != std::string::npos)
        throw argument_error("locus::ModelCheckpoint: unsupported format '{" + field + "}'");
      std::snprintf(buf, sizeof buf, f.c_str(), it->second);
    }
    out += buf;
    i = close;
  }
  return out;
}

}  // namespace io::detail

template <AnyDevice Dev>
class ModelCheckpoint final : public Callback {
 public:
  ModelCheckpoint(Model<Dev, float>& model, std::string filepath, ModelCheckpointOptions o = {})
      : model_(&model), path_(std::move(filepath)), o_(std::move(o)) {
    if (o_.mode == "auto")
      maximise_ = o_.monitor.find("acc") != std::string::npos ||
                  o_.monitor.find("auc") != std::string::npos;
    else if (o_.mode == "max" || o_.mode == "min")
      maximise_ = o_.mode == "max";
    else
      throw argument_error("locus::ModelCheckpoint: mode '" + o_.mode +
                           "' is not min, max or auto");
    best_ = maximise_ ? -std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::infinity();
  }

  /// A checkpoint saves a model of its own device: one of another device does not compile
  /// (name the model's device, or let the deduction guide below do it).
  template <AnyDevice D2>
  requires(!std::is_same_v<D2, Dev>)
      ModelCheckpoint(Model<D2, float>&, std::string, ModelCheckpointOptions = {}) {
    (void)sizeof(locus::detail::model_device_mismatch<Dev, D2>);
  }

  void on_epoch_end(TrainingContext& ctx, std::size_t epoch, const Logs& logs) override {
    if (o_.save_best_only) {
      const auto it = logs.find(o_.monitor);
      if (it == logs.end()) {
        ctx.out() << "ModelCheckpoint: '" << o_.monitor << "' is not in the logs; not saving\n";
        return;
      }
      const double v = it->second;
      if (std::isnan(v) || !(maximise_ ? v > best_ : v < best_)) return;
      if (o_.verbose)
        ctx.out() << "Epoch " << epoch + 1 << ": " << o_.monitor << " improved from " << best_
                  << " to " << v << "\n";
      best_ = v;
    }
    const std::string path = io::detail::format_checkpoint_path(path_, epoch, logs);
    if (o_.save_weights_only)
      save_weights(*model_, path);
    else
      save_model(*model_, path);
    last_ = path;
    if (o_.verbose) ctx.out() << "Epoch " << epoch + 1 << ": saved " << path << "\n";
  }

  /// The best monitored value so far (save_best_only), and the last file written.
  double best() const { return best_; }
  const std::string& last_saved() const { return last_; }

 private:
  Model<Dev, float>* model_ = nullptr;
  std::string path_;
  ModelCheckpointOptions o_;
  bool maximise_ = false;
  double best_ = 0;
  std::string last_;
};

/// ModelCheckpoint(model, path): the checkpoint of the model's device.
template <AnyDevice Dev>
ModelCheckpoint(Model<Dev, float>&, std::string, ModelCheckpointOptions = {})
    -> ModelCheckpoint<Dev>;

}  // namespace locus
