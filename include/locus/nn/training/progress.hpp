// The progress output of fit(), as a callback: "Epoch 1/5", a live bar on a terminal
// (refreshed at most four times a second, each refresh one small read of the running
// sums) and a Keras-like line per epoch.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

#include "callbacks.hpp"

namespace locus {

class ProgressLogger final : public Callback {
 public:
  /// verbose 1: a live bar when printing to a terminal (std::cout on a tty), one line per
  /// epoch otherwise; verbose 2: one line per epoch.
  explicit ProgressLogger(int verbose) : verbose_(verbose) {}

  void on_train_begin(TrainingContext& ctx) override {
    live_ = verbose_ == 1 && isatty(fileno(stdout)) && &ctx.out() == &std::cout;
  }
  void on_epoch_begin(TrainingContext& ctx, std::size_t epoch) override {
    ctx.out() << "Epoch " << epoch + 1 << "/" << ctx.epochs() << "\n";
    t0_ = last_ = std::chrono::steady_clock::now();
  }
  void on_train_batch_end(TrainingContext& ctx, std::size_t batch) override {
    if (!live_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ > std::chrono::milliseconds(250) || batch + 1 == ctx.steps_per_epoch()) {
      last_ = now;
      progress_bar(ctx.out(), batch + 1, ctx.steps_per_epoch(), seconds(t0_, now), ctx.current_logs());
    }
  }
  void on_epoch_end(TrainingContext& ctx, std::size_t, const Logs& logs) override {
    epoch_line(ctx.out(), ctx.steps_per_epoch(), seconds(t0_, std::chrono::steady_clock::now()), logs, live_);
  }

  /// " - accuracy: 0.8123 - loss: 0.5234 - val_accuracy: ..." in Keras's order: training
  /// before validation, and within each, metrics before the loss.
  static std::string format_logs(const Logs& logs) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(4);
    for (const bool validation : {false, true}) {
      const std::string loss_key = validation ? "val_loss" : "loss";
      for (const auto& [k, v] : logs) {
        if ((k.rfind("val_", 0) == 0) == validation && k != loss_key) os << " - " << k << ": " << v;
      }
      if (auto it = logs.find(loss_key); it != logs.end()) os << " - " << loss_key << ": " << it->second;
    }
    return os.str();
  }

 private:
  static double seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
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

  int verbose_;
  bool live_ = false;
  std::chrono::steady_clock::time_point t0_, last_;
};

}  // namespace locus
