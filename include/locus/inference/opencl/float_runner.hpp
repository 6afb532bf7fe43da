// Runs an inference graph in float on an OpenCL device.
//
// Every buffer is made when the plan is made, for max_batch samples: one per workspace slot
// (slots by liveness, as on the CPU), the im2col matrix of the largest convolution, and a
// staging buffer each for the input and the output, so that a batch larger than max_batch
// runs in passes with device-side copies and nothing is allocated per call. Convolutions
// are im2col + the backend's tuned GEMM with bias and activation in its write-back; dense
// steps are that GEMM; pooling is the backend's; add, affine, activation and softmax are
// the small kernels below. Calls are serialised by a mutex: the device's in-order queue
// runs one pass at a time anyway.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../../backend/backend.hpp"
#include "../../backend/nn_backend.hpp"
#include "../../backend/opencl/kernels/inference.hpp"
#include "../../device.hpp"
#include "../../error.hpp"
#include "../cpu/float_runner.hpp"
#include "../graph.hpp"
#include "../options.hpp"
#include "launch.hpp"

namespace locus::inference::opencl {

inline cl_int act_code(gemm_activation a) {
  switch (a) {
    case gemm_activation::relu:
      return 1;
    case gemm_activation::sigmoid:
      return 2;
    case gemm_activation::tanh:
      return 3;
    default:
      return 0;
  }
}

template <AnyDevice Dev>
class FloatRunner {
  using B = backend_for<Dev>;
  using NB = nn_backend_for<Dev>;
  using buffer = typename B::template buffer<float>;

 public:
  FloatRunner(std::shared_ptr<const Graph> graph, const InferenceOptions& options)
      : g_(std::move(graph)), slots_(*g_), max_batch_(std::max<std::size_t>(options.max_batch, 1)) {
    const Graph& g = *g_;
    std::size_t cols = 0;
    for (const Step& s : g.steps) {
      Weights w;
      if (!s.kernel.empty()) w.kernel = upload<Dev>(s.kernel);
      if (!s.bias.empty()) w.bias = upload<Dev>(s.bias);
      if (!s.scale.empty()) w.scale = upload<Dev>(s.scale);
      weights_.push_back(std::move(w));
      if (s.kind == StepKind::conv2d) cols = std::max(cols, s.conv.oh * s.conv.ow * s.fan_in);
    }
    for (std::size_t i = 0; i < slots_.slots; ++i)
      slot_.emplace_back(slots_.slot_values * max_batch_);
    in_.emplace(g.per_sample(g.input) * max_batch_);
    out_.emplace(g.per_sample(g.output) * max_batch_);
    cols_.emplace(std::max<std::size_t>(cols * max_batch_, 1));
  }

  const Graph& graph() const { return *g_; }

  void run(const buffer& x, std::size_t n, buffer& y) const {
    const Graph& g = *g_;
    const std::size_t in_size = g.per_sample(g.input), out_size = g.per_sample(g.output);
    std::lock_guard<std::mutex> lock(*mutex_);
    for (std::size_t first = 0; first < n; first += max_batch_) {
      const std::size_t m = std::min(max_batch_, n - first);
      B::copy(x, first * in_size, *in_, 0, m * in_size);
      pass(m);
      B::copy(*out_, 0, y, first * out_size, m * out_size);
    }
  }

 private:
  struct Weights {
    std::optional<buffer> kernel, bias, scale;
  };

  buffer& at(std::size_t v) const {
    const std::size_t s = slots_.slot[g_->root[v]];
    if (s == cpu::SlotPlan::input) return *in_;
    if (s == cpu::SlotPlan::output) return *out_;
    return slot_[s];
  }

  static const backend::opencl::program_source& program() {
    return backend::opencl::kernels::inference_float_program();
  }

  void launch(const char* kernel, std::size_t n, const backend::opencl::raw_arg* args,
              std::size_t count) const {
    opencl::launch<Dev>(program(), kernel, n, args, count);
  }

  void gemm(const buffer& a, std::size_t rows, const Step& s, const Weights& w, buffer& c) const {
    gemm_args<buffer, float> ga{};
    ga.batch = 1;
    ga.m = rows;
    ga.n = s.units;
    ga.k = s.fan_in;
    ga.alpha = 1.0f;
    ga.beta = 0.0f;
    ga.a = &a;
    ga.lda = s.fan_in;
    ga.b = &*w.kernel;
    ga.ldb = s.units;
    ga.c = &c;
    ga.ldc = s.units;
    ga.stride_c = rows * s.units;
    ga.bias = &*w.bias;
    ga.act = s.act;
    B::gemm(ga);
  }

  void softmax(buffer& y, std::size_t rows, std::size_t len) const {
    namespace ocl = backend::opencl;
    const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(y)), ocl::raw_arg::from(ocl::arg(y)),
                                 u32(rows), u32(len)};
    launch("inf_softmax", rows, args, std::size(args));
  }

  void pass(std::size_t m) const {
    namespace ocl = backend::opencl;
    const Graph& g = *g_;
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      const Weights& w = weights_[i];
      const buffer& src = at(s.in[0]);
      buffer& dst = at(s.out);
      const std::size_t count = m * g.per_sample(s.out);
      switch (s.kind) {
        case StepKind::conv2d: {
          conv_geometry cg = s.conv;
          cg.n = m;
          NB::im2col(src, cg, *cols_);
          const std::size_t rows = m * cg.oh * cg.ow;
          gemm(*cols_, rows, s, w, dst);
          if (s.softmax) softmax(dst, rows, s.units);
          break;
        }
        case StepKind::dense: {
          const std::size_t rows = m * g.per_sample(s.in[0]) / s.fan_in;
          gemm(src, rows, s, w, dst);
          if (s.softmax) softmax(dst, rows, s.units);
          break;
        }
        case StepKind::pool:
        case StepKind::global_pool: {
          pool_geometry pg = s.pool;
          pg.n = m;
          NB::pool2d_forward(s.pooling, src, pg, dst, nullptr);
          break;
        }
        case StepKind::add: {
          // Pairwise: y = a + b, then y += each further input; the activation on the last.
          for (std::size_t j = 1; j < s.in.size(); ++j) {
            const buffer& a = j == 1 ? src : dst;
            const ocl::raw_arg args[] = {
                ocl::raw_arg::from(ocl::arg(a)), ocl::raw_arg::from(ocl::arg(at(s.in[j]))),
                ocl::raw_arg::from(ocl::arg(dst)), u32(count),
                ocl::raw_arg::value(j + 1 == s.in.size() ? act_code(s.act) : cl_int{0})};
            launch("inf_add", count, args, std::size(args));
          }
          break;
        }
        case StepKind::affine: {
          const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(src)),
                                       ocl::raw_arg::from(ocl::arg(*w.scale)),
                                       ocl::raw_arg::from(ocl::arg(*w.bias)),
                                       ocl::raw_arg::from(ocl::arg(dst)),
                                       u32(count),
                                       u32(s.units),
                                       ocl::raw_arg::value(act_code(s.act))};
          launch("inf_affine", count, args, std::size(args));
          break;
        }
        case StepKind::activation: {
          const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(src)),
                                       ocl::raw_arg::from(ocl::arg(dst)), u32(count),
                                       ocl::raw_arg::value(act_code(s.act))};
          launch("inf_activation", count, args, std::size(args));
          break;
        }
        case StepKind::softmax: {
          const std::size_t len = g.shapes[s.out].back();
          const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(src)),
                                       ocl::raw_arg::from(ocl::arg(dst)), u32(count / len),
                                       u32(len)};
          launch("inf_softmax", count / len, args, std::size(args));
          break;
        }
      }
    }
  }

  std::shared_ptr<const Graph> g_;
  cpu::SlotPlan slots_;
  std::size_t max_batch_;
  std::vector<Weights> weights_;
  // The plan's buffers: written by const calls (serialised by mutex_), never reallocated.
  mutable std::vector<buffer> slot_;
  mutable std::optional<buffer> in_, out_, cols_;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // movable plans
};

}  // namespace locus::inference::opencl
