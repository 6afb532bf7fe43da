// Runs a quantized graph (quantization.hpp) on an OpenCL device, in OpenCL C 1.2.
//
// Activations are uchar buffers; a product multiplies uchar4 by char4 vectors widened to
// int4 (OpenCL C 1.2 has no 8-bit dot product instruction; devices with
// cl_khr_integer_dot_product compile the same multiply-adds to theirs) and accumulates in
// int over the whole fan-in, with the weights stored [units, kp] so that each work-item
// reads both operands four bytes at a time. The write-back is quantization.hpp's, in float.
// Buffers are made with the plan, for max_batch samples, as in the float runner; calls
// are serialised by a mutex.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../../backend/backend.hpp"
#include "../../backend/opencl/kernels/inference.hpp"
#include "../../device.hpp"
#include "../../error.hpp"
#include "../cpu/float_runner.hpp"
#include "../options.hpp"
#include "../quantization.hpp"
#include "float_runner.hpp"
#include "launch.hpp"

namespace locus::inference::opencl {

template <AnyDevice Dev>
class Int8Runner {
  using B = backend_for<Dev>;
  template <class E>
  using buffer = typename B::template buffer<E>;
  using raw_arg = backend::opencl::raw_arg;

 public:
  Int8Runner(std::shared_ptr<const QuantizedGraph> q, const InferenceOptions& options)
      : q_(std::move(q)),
        slots_(*q_->graph),
        max_batch_(std::max<std::size_t>(options.max_batch, 1)) {
    const Graph& g = *q_->graph;
    std::size_t cols = 0;
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      for (auto v : s.in)
        if (g.root[v] == g.root[g.output])
          throw unsupported_error("locus::QuantizedPlan: step '" + s.name +
                                  "' reads the model's output; an int8 plan needs the output "
                                  "to be the last value computed");
      if (s.kind == StepKind::add && s.in.size() != 2)
        throw unsupported_error("locus::QuantizedPlan: step '" + s.name + "' adds " +
                                std::to_string(s.in.size()) +
                                " tensors; the OpenCL int8 plan adds two");
      Weights w;
      if (s.kind == StepKind::conv2d || s.kind == StepKind::dense) {
        const QuantizedWeights& qw = q_->weights[i];
        const std::size_t kp = cpu::round_up(s.fan_in, 4);
        std::vector<std::int8_t> bt(s.units * kp, 0);  // [units, kp]
        for (std::size_t k = 0; k < s.fan_in; ++k)
          for (std::size_t n = 0; n < s.units; ++n) bt[n * kp + k] = qw.q[k * s.units + n];
        const QuantParams in = param(s.in[0]);
        std::vector<std::int32_t> corr(s.units);
        std::vector<float> mult(s.units);
        for (std::size_t n = 0; n < s.units; ++n) {
          corr[n] = in.zero_point * qw.colsum[n];
          mult[n] = in.scale * qw.scale[n];
        }
        w.kernel = upload<Dev>(bt);
        w.corr = upload<Dev>(corr);
        w.mult = upload<Dev>(mult);
        w.bias = upload<Dev>(s.bias);
        w.kp = kp;
        if (s.kind == StepKind::conv2d || kp != s.fan_in)
          cols = std::max(cols,
                          (s.kind == StepKind::conv2d ? s.conv.oh * s.conv.ow : 1) * kp *
                              (s.kind == StepKind::dense ? g.per_sample(s.in[0]) / s.fan_in : 1));
      } else if (s.kind == StepKind::affine) {
        w.mult = upload<Dev>(s.scale);
        w.bias = upload<Dev>(s.bias);
      }
      weights_.push_back(std::move(w));
    }
    for (std::size_t i = 0; i < slots_.slots; ++i)
      slot_.emplace_back(std::max<std::size_t>(slots_.slot_values * max_batch_, 1));
    in_float_.emplace(g.per_sample(g.input) * max_batch_);
    in_.emplace(g.per_sample(g.input) * max_batch_);
    out_.emplace(g.per_sample(g.output) * max_batch_);
    cols_.emplace(std::max<std::size_t>(cols * max_batch_, 1));
  }

  void run(const buffer<float>& x, std::size_t n, buffer<float>& y) const {
    const Graph& g = *q_->graph;
    const std::size_t in_size = g.per_sample(g.input), out_size = g.per_sample(g.output);
    std::lock_guard<std::mutex> lock(*mutex_);
    for (std::size_t first = 0; first < n; first += max_batch_) {
      const std::size_t m = std::min(max_batch_, n - first);
      B::copy(x, first * in_size, *in_float_, 0, m * in_size);
      pass(m);
      B::copy(*out_, 0, y, first * out_size, m * out_size);
    }
  }

 private:
  struct Weights {
    std::optional<buffer<std::int8_t>> kernel;
    std::optional<buffer<std::int32_t>> corr;
    std::optional<buffer<float>> mult, bias;
    std::size_t kp = 0;
  };

  QuantParams param(std::size_t v) const { return q_->params[q_->graph->root[v]]; }

  /// The buffer of value v: the quantized input, the float output, or a uchar slot.
  cl_mem mem(std::size_t v) const {
    const std::size_t s = slots_.slot[q_->graph->root[v]];
    if (s == cpu::SlotPlan::input) return in_->handle();
    if (s == cpu::SlotPlan::output) return out_->handle();
    return slot_[s].handle();
  }

  static raw_arg m(cl_mem h) {
    raw_arg r;
    r.k = raw_arg::kind::mem;
    r.mem = h;
    r.size = sizeof(cl_mem);
    return r;
  }
  static raw_arg i32(std::int64_t v) { return raw_arg::value(static_cast<cl_int>(v)); }
  static raw_arg f32(float v) { return raw_arg::value(static_cast<cl_float>(v)); }

  static const backend::opencl::program_source& program() {
    return backend::opencl::kernels::inference_int8_program();
  }

  template <std::size_t K>
  void launch(const char* kernel, std::size_t n, const raw_arg (&args)[K]) const {
    opencl::launch<Dev>(program(), kernel, n, args, K);
  }

  void pass(std::size_t mb) const {
    const Graph& g = *q_->graph;
    {
      const QuantParams p = param(g.input);
      const std::size_t count = mb * g.per_sample(g.input);
      const raw_arg args[] = {m(in_float_->handle()), m(in_->handle()), u32(count),
                              f32(1.0f / p.scale), i32(p.zero_point)};
      launch("q_quantize", count, args);
    }
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      const Weights& w = weights_[i];
      const QuantParams in = param(s.in[0]), out = param(s.out);
      const bool to_float = g.root[s.out] == g.root[g.output];
      const raw_arg of = i32(to_float), inv = f32(1.0f / out.scale), zp = i32(out.zero_point);
      const std::size_t count = mb * g.per_sample(s.out);
      switch (s.kind) {
        case StepKind::conv2d:
        case StepKind::dense: {
          std::size_t rows = 0;
          cl_mem a = mem(s.in[0]);
          if (s.kind == StepKind::conv2d) {
            const conv_geometry& c = s.conv;
            rows = mb * c.oh * c.ow;
            const raw_arg args[] = {m(a),
                                    m(cols_->handle()),
                                    u32(rows * w.kp),
                                    u32(w.kp),
                                    u32(c.h),
                                    u32(c.w),
                                    u32(c.c),
                                    u32(c.kh),
                                    u32(c.kw),
                                    u32(c.sh),
                                    u32(c.sw),
                                    u32(c.pad_top),
                                    u32(c.pad_left),
                                    u32(c.oh),
                                    u32(c.ow),
                                    i32(in.zero_point)};
            launch("q_im2col", rows * w.kp, args);
            a = cols_->handle();
          } else {
            rows = mb * g.per_sample(s.in[0]) / s.fan_in;
            if (w.kp != s.fan_in) {
              // Rows padded to kp: an im2col with a 1x1 window over [rows, 1, 1, fan_in].
              const raw_arg args[] = {m(a),
                                      m(cols_->handle()),
                                      u32(rows * w.kp),
                                      u32(w.kp),
                                      u32(rows),
                                      u32(1),
                                      u32(s.fan_in),
                                      u32(1),
                                      u32(1),
                                      u32(1),
                                      u32(1),
                                      u32(0),
                                      u32(0),
                                      u32(rows),
                                      u32(1),
                                      i32(in.zero_point)};
              launch("q_im2col", rows * w.kp, args);
              a = cols_->handle();
            }
          }
          const raw_arg args[] = {m(a),
                                  m(w.kernel->handle()),
                                  u32(rows),
                                  u32(s.units),
                                  u32(w.kp),
                                  m(w.corr->handle()),
                                  m(w.mult->handle()),
                                  m(w.bias->handle()),
                                  i32(act_code(s.act)),
                                  m(mem(s.out)),
                                  of,
                                  inv,
                                  zp};
          launch("q_gemm", rows * s.units, args);
          if (s.softmax && to_float) {
            const raw_arg sm[] = {m(mem(s.out)), u32(rows), u32(s.units)};
            launch("f_softmax", rows, sm);
          }
          break;
        }
        case StepKind::pool:
        case StepKind::global_pool: {
          const pool_geometry& p = s.pool;
          const raw_arg args[] = {m(mem(s.in[0])),
                                  m(mem(s.out)),
                                  u32(count),
                                  u32(p.h),
                                  u32(p.w),
                                  u32(p.c),
                                  u32(p.ph),
                                  u32(p.pw),
                                  u32(p.sh),
                                  u32(p.sw),
                                  u32(p.pad_top),
                                  u32(p.pad_left),
                                  u32(p.oh),
                                  u32(p.ow),
                                  i32(s.pooling == pool_kind::max),
                                  f32(in.scale),
                                  i32(in.zero_point),
                                  of,
                                  inv,
                                  zp};
          launch("q_pool", count, args);
          break;
        }
        case StepKind::add: {
          const QuantParams b = param(s.in[1]);
          const raw_arg args[] = {m(mem(s.in[0])),
                                  m(mem(s.in[1])),
                                  m(mem(s.out)),
                                  u32(count),
                                  f32(in.scale),
                                  i32(in.zero_point),
                                  f32(b.scale),
                                  i32(b.zero_point),
                                  i32(act_code(s.act)),
                                  of,
                                  inv,
                                  zp};
          launch("q_add", count, args);
          break;
        }
        case StepKind::affine:
        case StepKind::activation: {
          // An activation alone is an affine step with scale 1 and shift 0 per element.
          const bool affine = s.kind == StepKind::affine;
          const raw_arg args[] = {m(mem(s.in[0])),
                                  m(affine ? w.mult->handle() : unit_->handle()),
                                  m(affine ? w.bias->handle() : zero_->handle()),
                                  m(mem(s.out)),
                                  u32(count),
                                  u32(affine ? s.units : 1),
                                  f32(in.scale),
                                  i32(in.zero_point),
                                  i32(act_code(s.act)),
                                  of,
                                  inv,
                                  zp};
          launch("q_affine", count, args);
          break;
        }
        case StepKind::softmax: {
          const std::size_t len = g.shapes[s.out].back();
          const raw_arg args[] = {m(mem(s.in[0])),
                                  m(mem(s.out)),
                                  u32(count / len),
                                  u32(len),
                                  f32(in.scale),
                                  i32(in.zero_point),
                                  of,
                                  inv,
                                  zp};
          launch("q_softmax", count / len, args);
          break;
        }
      }
    }
  }

  std::shared_ptr<const QuantizedGraph> q_;
  cpu::SlotPlan slots_;
  std::size_t max_batch_;
  std::vector<Weights> weights_;
  // The plan's buffers: written by const calls (serialised by mutex_), never reallocated.
  mutable std::vector<buffer<std::uint8_t>> slot_;
  mutable std::optional<buffer<float>> in_float_, out_;
  mutable std::optional<buffer<std::uint8_t>> in_, cols_;
  std::optional<buffer<float>> unit_ = upload<Dev>(std::vector<float>{1.0f}),
                               zero_ = upload<Dev>(std::vector<float>{0.0f});
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // movable plans
};

}  // namespace locus::inference::opencl
