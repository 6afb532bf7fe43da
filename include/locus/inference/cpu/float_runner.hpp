// Runs an inference graph in float on the CPU.
//
// A batch is cut into micro-batches of a few images; each pool thread runs whole
// micro-batches through every step with a workspace of its own, so the activations between
// steps stay in that core's cache instead of making a round trip through memory per layer.
// Values get workspace slots by liveness (a slot is reused once its value's last reader has
// run); the model's input and output are read and written in place in the caller's tensors.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "../../backend/cpu/thread_pool.hpp"
#include "../../error.hpp"
#include "../graph.hpp"
#include "../options.hpp"
#include "../workspace_pool.hpp"
#include "float_kernels.hpp"

namespace locus::inference::cpu {

/// Where each value of a graph lives during a micro-batch: the caller's input, the caller's
/// output or a workspace slot. Shared by the float and int8 runners.
struct SlotPlan {
  static constexpr std::size_t input = Graph::none - 1, output = Graph::none - 2;
  std::vector<std::size_t> slot;  ///< per root value
  std::size_t slots = 0;
  std::size_t slot_values = 0;  ///< per sample: the largest value that takes a slot

  explicit SlotPlan(const Graph& g) {
    slot.assign(g.shapes.size(), Graph::none);
    slot[g.input] = input;
    slot[g.root[g.output]] = output;
    std::vector<std::size_t> free;
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const std::size_t out = g.root[g.steps[i].out];
      if (slot[out] == Graph::none) {
        if (free.empty()) {
          slot[out] = slots++;
        } else {
          slot[out] = free.back();
          free.pop_back();
        }
        slot_values = std::max(slot_values, g.per_sample(out));
      }
      // Inputs whose last reader this step is give their slot back for later steps.
      for (auto v : g.steps[i].in) {
        const std::size_t r = g.root[v];
        if (g.last_read[r] == i && slot[r] < output &&
            std::find(free.begin(), free.end(), slot[r]) == free.end())
          free.push_back(slot[r]);
      }
    }
  }
};

/// The largest number of inputs one step takes (Add); the runners keep their pointers in a
/// fixed array.
inline constexpr std::size_t max_step_inputs = 16;

/// Images per micro-batch: enough rows for the dense steps to share each load of their
/// weights (a multiple of their four-row blocks), few enough that the live slots stay
/// within a core's L2 (about 512 KB per slot).
inline std::size_t micro_batch_for(std::size_t per_sample, std::size_t requested) {
  if (requested) return requested;
  const std::size_t fit = (std::size_t{1} << 17) / std::max<std::size_t>(per_sample, 1);
  return fit < 4 ? std::max<std::size_t>(fit, 1) : std::min<std::size_t>((fit + 2) / 4 * 4, 32);
}

/// Whether step i is a convolution whose output only step i + 1 reads, a 2x2 max pooling
/// of stride 2 without padding, and the convolution's write-back can take the pooling
/// (linear or relu: increasing; no softmax): the two can run as one.
inline bool pools_after(const Graph& g, std::size_t i) {
  if (i + 1 >= g.steps.size()) return false;
  const Step& c = g.steps[i];
  const Step& p = g.steps[i + 1];
  const std::size_t v = g.root[c.out];
  if (c.kind != StepKind::conv2d || p.kind != StepKind::pool || p.pooling != pool_kind::max ||
      c.softmax || (c.act != gemm_activation::linear && c.act != gemm_activation::relu))
    return false;
  if (g.root[p.in[0]] != v || v == g.root[g.output] || g.last_read[v] != i + 1) return false;
  const pool_geometry& pg = p.pool;
  if (pg.ph != 2 || pg.pw != 2 || pg.sh != 2 || pg.sw != 2 || pg.pad_top || pg.pad_left ||
      c.conv.oh % 2 || c.conv.ow % 2)
    return false;
  for (std::size_t j = 0; j < g.steps.size(); ++j)
    for (auto u : g.steps[j].in)
      if (j != i + 1 && g.root[u] == v) return false;
  return true;
}

class FloatRunner {
 public:
  /// fuse_pooling: run a 2x2 max pooling inside the convolution before it where it can
  /// (calibration, which observes every tensor, turns it off).
  FloatRunner(std::shared_ptr<const Graph> graph, const InferenceOptions& options,
              bool fuse_pooling = true)
      : g_(std::move(graph)), slots_(*g_) {
    const Graph& g = *g_;
    prepared_.resize(g.steps.size());
    std::size_t pad = 0;
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      if (s.in.size() > max_step_inputs)
        throw unsupported_error("locus::InferencePlan: step '" + s.name + "' adds " +
                                std::to_string(s.in.size()) + " tensors, at most " +
                                std::to_string(max_step_inputs) + " are supported");
      if (s.kind == StepKind::conv2d) {
        const padded_image p = padded_extent(s.conv);
        prepared_[i].padded = p;
        if (p.needed) pad = std::max(pad, p.h * p.w * s.conv.c);
      } else if (s.kind == StepKind::dense) {
        auto& wt = prepared_[i].transposed;
        wt.resize(s.kernel.size());
        for (std::size_t k = 0; k < s.fan_in; ++k)
          for (std::size_t n = 0; n < s.units; ++n)
            wt[n * s.fan_in + k] = s.kernel[k * s.units + n];
      }
    }
    for (std::size_t i = 0; i + 1 < g.steps.size(); ++i) {
      if (fuse_pooling && !prepared_[i].skip && pools_after(g, i) &&
          poolable_in_tiles(g.steps[i].conv, g.steps[i].units)) {
        prepared_[i].pooled = true;
        prepared_[i + 1].skip = true;
      }
    }
    mb_ = micro_batch_for(slots_.slot_values, options.micro_batch);
    const std::size_t slot_floats = slots_.slot_values * mb_;
    const std::size_t count =
        options.workspaces ? options.workspaces : backend::cpu::num_threads() + 1;
    pool_ = std::make_unique<WorkspacePool<Workspace>>(count, [&] {
      auto ws = std::make_unique<Workspace>();
      ws->slots.assign(slots_.slots * slot_floats, 0.0f);
      ws->pad.assign(pad, 0.0f);
      ws->slot_floats = slot_floats;
      return ws;
    });
  }

  const Graph& graph() const { return *g_; }
  std::size_t micro_batch() const { return mb_; }
  std::size_t workspaces() const { return pool_->size(); }

  /// y = the graph of x for n samples (x: n x input size, y: n x output size).
  void run(const float* x, std::size_t n, float* y) const {
    no_observer none;
    run_impl(x, n, y, none, /*parallel=*/true);
  }

  /// run() that shows every value of every micro-batch to `observe(value, data, count)`
  /// (calibration); on the calling thread.
  template <class Observer>
  void run_observed(const float* x, std::size_t n, float* y, Observer&& observe) const {
    run_impl(x, n, y, observe, /*parallel=*/false);
  }

 private:
  struct no_observer {
    void operator()(std::size_t, const float*, std::size_t) const {}
  };

  template <class Observer>
  void run_impl(const float* x, std::size_t n, float* y, Observer& observe, bool parallel) const {
    const Graph& g = *g_;
    const std::size_t in_size = g.per_sample(g.input), out_size = g.per_sample(g.output);
    const std::size_t chunks = (n + mb_ - 1) / mb_;
    auto body = [&](std::size_t b, std::size_t e) {
      typename WorkspacePool<Workspace>::Lease ws(*pool_);
      for (std::size_t c = b; c < e; ++c) {
        const std::size_t first = c * mb_, m = std::min(mb_, n - first);
        run_micro(x + first * in_size, m, y + first * out_size, *ws, observe);
      }
    };
    if (parallel) {
      backend::cpu::parallel_for(chunks, 1, body);
    } else {
      body(0, chunks);
    }
  }

  struct Workspace {
    std::vector<float> slots, pad;
    std::size_t slot_floats = 0;
  };
  struct Prepared {
    padded_image padded{0, 0, false};
    std::vector<float> transposed;  // dense: [units, fan_in]
    // A convolution that also runs the 2x2 max pooling after it (its output's only reader),
    // in its tiles; the pooling step is skipped.
    bool pooled = false, skip = false;
  };

  template <class Observer>
  void run_micro(const float* x, std::size_t m, float* y, Workspace& ws, Observer& observe) const {
    const Graph& g = *g_;
    auto at = [&](std::size_t v) -> float* {
      const std::size_t s = slots_.slot[g.root[v]];
      if (s == SlotPlan::input) return const_cast<float*>(x);  // only ever read
      if (s == SlotPlan::output) return y;
      return ws.slots.data() + s * ws.slot_floats;
    };
    observe(g.input, x, m * g.per_sample(g.input));
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      const Prepared& pr = prepared_[i];
      if (pr.skip) {  // run by the convolution before it
        observe(s.out, at(s.out), m * g.per_sample(s.out));
        continue;
      }
      const float* src = at(s.in[0]);
      // A pooled convolution writes the pooling step's output.
      const std::size_t result = pr.pooled ? g.steps[i + 1].out : s.out;
      float* dst = at(result);
      const std::size_t in_size = g.per_sample(s.in[0]), out_size = g.per_sample(result);
      switch (s.kind) {
        case StepKind::conv2d: {
          const padded_image& p = pr.padded;
          for (std::size_t k = 0; k < m; ++k) {
            const float* img = src + k * in_size;
            if (p.needed) {
              pad_image(img, s.conv, p, ws.pad.data());
              img = ws.pad.data();
            }
            conv2d_image(img, s.conv, p.needed ? p.w : s.conv.w, s.kernel.data(), s.units,
                         s.bias.data(), s.act, dst + k * out_size, pr.pooled);
          }
          if (s.softmax) softmax_rows(dst, m * out_size / s.units, s.units);
          break;
        }
        case StepKind::dense: {
          const std::size_t rows = m * in_size / s.fan_in;
          dense_rows(src, rows, s.fan_in, prepared_[i].transposed.data(), s.units, s.bias.data(),
                     s.act, dst);
          if (s.softmax) softmax_rows(dst, rows, s.units);
          break;
        }
        case StepKind::pool:
        case StepKind::global_pool:
          for (std::size_t k = 0; k < m; ++k)
            pool_image(s.pooling, src + k * in_size, s.pool, dst + k * out_size);
          break;
        case StepKind::add: {
          std::array<const float*, max_step_inputs> ins{};
          for (std::size_t j = 0; j < s.in.size(); ++j) ins[j] = at(s.in[j]);
          add_values(ins.data(), s.in.size(), m * out_size, s.act, dst);
          break;
        }
        case StepKind::affine:
          affine_rows(src, m * out_size / s.units, s.units, s.scale.data(), s.bias.data(), s.act,
                      dst);
          break;
        case StepKind::activation:
          if (dst != src) std::memcpy(dst, src, m * out_size * sizeof(float));
          activate_span(dst, m * out_size, s.act);
          break;
        case StepKind::softmax: {
          if (dst != src) std::memcpy(dst, src, m * out_size * sizeof(float));
          const std::size_t len = g.shapes[s.out].back();
          softmax_rows(dst, m * out_size / len, len);
          break;
        }
      }
      observe(result, dst, m * out_size);
    }
  }

  std::shared_ptr<const Graph> g_;
  SlotPlan slots_;
  std::vector<Prepared> prepared_;
  std::size_t mb_ = 1;
  std::unique_ptr<WorkspacePool<Workspace>> pool_;
};

}  // namespace locus::inference::cpu
