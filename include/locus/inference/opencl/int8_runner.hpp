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
#include "../../device.hpp"
#include "../../error.hpp"
#include "../cpu/float_runner.hpp"
#include "../options.hpp"
#include "../quantization.hpp"
#include "float_runner.hpp"

namespace locus::inference::opencl {

/// The OpenCL C of the int8 steps. Requantisation: q = clamp(rint(f * inv) + zp, 0, 255).
inline const char* int8_step_source() {
  return R"CLC(
inline float act_of(float z, int act) {
  if (act == 1) return fmax(z, 0.0f);
  if (act == 2) return 1.0f / (1.0f + exp(-z));
  if (act == 3) return tanh(z);
  return z;
}
inline uchar requant(float f, float inv, int zp) {
  return (uchar)clamp(rint(f * inv) + (float)zp, 0.0f, 255.0f);
}
/* out_float != 0: y is float, else uchar (requantised with inv, zp). */
inline void put(__global void* y, uint i, float f, int out_float, float inv, int zp) {
  if (out_float) ((__global float*)y)[i] = f;
  else ((__global uchar*)y)[i] = requant(f, inv, zp);
}
__kernel void q_quantize(__global const float* x, __global uchar* y, uint n, float inv, int zp) {
  const uint i = get_global_id(0);
  if (i < n) y[i] = requant(x[i], inv, zp);
}
/* One work-item per (row, k) of the im2col matrix; rows of kp bytes. */
__kernel void q_im2col(__global const uchar* x, __global uchar* cols, uint total, uint kp,
                       uint h, uint w, uint c, uint kh, uint kw, uint sh, uint sw, uint pt,
                       uint pl, uint oh, uint ow, int zp) {
  const uint i = get_global_id(0);
  if (i >= total) return;
  const uint row = i / kp, k = i % kp;
  if (k >= kh * kw * c) { cols[i] = 0; return; }
  const uint ch = k % c, j = (k / c) % kw, r = k / (c * kw);
  const uint ox = row % ow, oy = (row / ow) % oh, n = row / (ow * oh);
  const int y0 = (int)(oy * sh + r) - (int)pt, x0 = (int)(ox * sw + j) - (int)pl;
  cols[i] = (y0 < 0 || x0 < 0 || y0 >= (int)h || x0 >= (int)w)
                ? (uchar)zp : x[(((size_t)n * h + (uint)y0) * w + (uint)x0) * c + ch];
}
/* One work-item per output (row, n): the uchar4 x char4 dot products over kp. */
__kernel void q_gemm(__global const uchar* a, __global const char* bt, uint rows, uint units,
                     uint kp, __global const int* corr, __global const float* mult,
                     __global const float* bias, int act, __global void* y, int out_float,
                     float inv, int zp) {
  const uint i = get_global_id(0);
  if (i >= rows * units) return;
  const uint r = i / units, n = i % units;
  __global const uchar* ar = a + (size_t)r * kp;
  __global const char* bn = bt + (size_t)n * kp;
  int acc = 0;
  for (uint k = 0; k < kp; k += 4) {
    const int4 p = convert_int4(vload4(0, ar + k)) * convert_int4(vload4(0, bn + k));
    acc += p.x + p.y + p.z + p.w;
  }
  const float f = act_of((float)(acc - corr[n]) * mult[n] + bias[n], act);
  put(y, i, f, out_float, inv, zp);
}
/* One work-item per output (image, oy, ox, c): max or average of the window's codes. */
__kernel void q_pool(__global const uchar* x, __global void* y, uint total, uint h, uint w,
                     uint c, uint ph, uint pw, uint sh, uint sw, uint pt, uint pl, uint oh,
                     uint ow, int is_max, float s_in, int z_in, int out_float, float inv,
                     int zp) {
  const uint i = get_global_id(0);
  if (i >= total) return;
  const uint ch = i % c, ox = (i / c) % ow, oy = (i / (c * ow)) % oh, n = i / (c * ow * oh);
  const int ys = (int)(oy * sh) - (int)pt, xs = (int)(ox * sw) - (int)pl;
  const uint y0 = (uint)max(ys, 0), x0 = (uint)max(xs, 0);
  const uint y1 = (uint)min(ys + (int)ph, (int)h), x1 = (uint)min(xs + (int)pw, (int)w);
  int a = 0;
  for (uint yy = y0; yy < y1; ++yy)
    for (uint xx = x0; xx < x1; ++xx) {
      const int v = x[(((size_t)n * h + yy) * w + xx) * c + ch];
      a = is_max ? max(a, v) : a + v;
    }
  if (is_max && !out_float) { ((__global uchar*)y)[i] = (uchar)a; return; }
  const float q = is_max ? (float)a : (float)a / (float)((y1 - y0) * (x1 - x0));
  put(y, i, s_in * (q - (float)z_in), out_float, inv, zp);
}
__kernel void q_add(__global const uchar* a, __global const uchar* b, __global void* y, uint n,
                    float sa, int za, float sb, int zb, int act, int out_float, float inv,
                    int zp) {
  const uint i = get_global_id(0);
  if (i >= n) return;
  const float f = sa * (float)((int)a[i] - za) + sb * (float)((int)b[i] - zb);
  put(y, i, act_of(f, act), out_float, inv, zp);
}
__kernel void q_affine(__global const uchar* x, __global const float* scale,
                       __global const float* shift, __global void* y, uint n, uint c,
                       float s_in, int z_in, int act, int out_float, float inv, int zp) {
  const uint i = get_global_id(0);
  if (i >= n) return;
  const float r = s_in * (float)((int)x[i] - z_in);
  put(y, i, act_of(r * scale[i % c] + shift[i % c], act), out_float, inv, zp);
}
__kernel void q_softmax(__global const uchar* x, __global void* y, uint rows, uint len,
                        float s_in, int z_in, int out_float, float inv, int zp) {
  const uint r = get_global_id(0);
  if (r >= rows) return;
  __global const uchar* p = x + (size_t)r * len;
  float m = -INFINITY;
  for (uint i = 0; i < len; ++i) m = fmax(m, s_in * (float)((int)p[i] - z_in));
  float s = 0.0f;
  for (uint i = 0; i < len; ++i) s += exp(s_in * (float)((int)p[i] - z_in) - m);
  for (uint i = 0; i < len; ++i)
    put(y, r * len + i, exp(s_in * (float)((int)p[i] - z_in) - m) / s, out_float, inv, zp);
}
__kernel void f_softmax(__global float* y, uint rows, uint len) {
  const uint r = get_global_id(0);
  if (r >= rows) return;
  __global float* q = y + (size_t)r * len;
  float m = -INFINITY;
  for (uint i = 0; i < len; ++i) m = fmax(m, q[i]);
  float s = 0.0f;
  for (uint i = 0; i < len; ++i) s += (q[i] = exp(q[i] - m));
  const float inv = 1.0f / s;
  for (uint i = 0; i < len; ++i) q[i] *= inv;
}
)CLC";
}

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
        w.kernel = upload(bt);
        w.corr = upload(corr);
        w.mult = upload(mult);
        w.bias = upload(s.bias);
        w.kp = kp;
        if (s.kind == StepKind::conv2d || kp != s.fan_in)
          cols = std::max(cols,
                          (s.kind == StepKind::conv2d ? s.conv.oh * s.conv.ow : 1) * kp *
                              (s.kind == StepKind::dense ? g.per_sample(s.in[0]) / s.fan_in : 1));
      } else if (s.kind == StepKind::affine) {
        w.mult = upload(s.scale);
        w.bias = upload(s.bias);
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

  template <class E>
  static buffer<E> upload(const std::vector<E>& v) {
    buffer<E> b(std::max<std::size_t>(v.size(), 1));
    B::upload(b, v.data(), v.size());
    return b;
  }

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
  static raw_arg u32(std::size_t v) {
    if (v > 0xffffffffu)
      throw unsupported_error("locus::QuantizedPlan: " + std::to_string(v) +
                              " elements exceed the OpenCL steps' 32-bit index; lower max_batch");
    return raw_arg::value(static_cast<cl_uint>(v));
  }
  static raw_arg i32(std::int64_t v) { return raw_arg::value(static_cast<cl_int>(v)); }
  static raw_arg f32(float v) { return raw_arg::value(static_cast<cl_float>(v)); }

  static const backend::opencl::program_source& program() {
    static const backend::opencl::program_source src("locus_inference_int8", int8_step_source(),
                                                     backend::opencl::kernels::base_options());
    return src;
  }

  template <std::size_t K>
  void launch(const char* kernel, std::size_t n, const raw_arg (&args)[K]) const {
    namespace ocl = backend::opencl;
    auto& dc = B::ctx();
    const auto h = ocl::lookup(dc, program(), kernel);
    const std::size_t local[1] = {ocl::pow2_floor(std::size_t{64}, h.max_work_group)};
    const std::size_t global[1] = {ocl::round_up(std::max<std::size_t>(n, 1), local[0])};
    ocl::launch_raw(dc, B::launches(), program(), kernel, 1, global, local, args, K);
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
  std::optional<buffer<float>> unit_ = upload(std::vector<float>{1.0f}),
                               zero_ = upload(std::vector<float>{0.0f});
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // movable plans
};

}  // namespace locus::inference::opencl
