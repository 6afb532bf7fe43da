// Runs a quantized graph (quantization.hpp) on the CPU: uint8 activations in the
// workspace, int8 weights packed for the chosen kernel (int8_gemm.hpp), int32 products, and
// the write-back of quantization.hpp in float SIMD. Micro-batches, workspaces and slots are
// the float runner's; the model's input is quantized as a micro-batch starts and the
// model's output is written in float.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "../../backend/cpu/thread_pool.hpp"
#include "../options.hpp"
#include "../quantization.hpp"
#include "../workspace_pool.hpp"
#include "float_kernels.hpp"
#include "float_runner.hpp"
#include "int8_gemm.hpp"

namespace locus::inference::cpu {

namespace int8_detail {

inline std::uint8_t quantize_value(float real, float inv_scale, std::int32_t zp) {
  const float q = std::nearbyint(real * inv_scale) + static_cast<float>(zp);
  return static_cast<std::uint8_t>(std::clamp(q, 0.0f, 255.0f));
}

/// Rows of GEMM results: out = act(float(acc - corr[n]) * mult[n] + bias[n]), stored as float
/// (to_float) or requantised to uint8 (inv_scale, zp). tmp holds n floats.
struct WriteBack {
  const std::int32_t* corr;
  const float* mult;
  const float* bias;
  gemm_activation act;
  bool to_float;
  float inv_scale;
  std::int32_t zp;
};

inline void write_back_rows(const std::int32_t* acc, std::size_t rows, std::size_t ldc,
                            std::size_t n, const WriteBack& w, void* out, float* tmp) {
  using ivec = backend::cpu::simd<std::int32_t>;
  const std::size_t nv = n - n % lanes;
  const vec inv(w.inv_scale), zp(static_cast<float>(w.zp)), lo(0.0f), hi(255.0f);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int32_t* a = acc + r * ldc;
    for (std::size_t i = 0; i < nv; i += lanes) {
      const ivec q = ivec::load_unaligned(a + i) - ivec::load_unaligned(w.corr + i);
      vec f = xsimd::fma(xsimd::to_float(q), vec::load_unaligned(w.mult + i),
                         vec::load_unaligned(w.bias + i));
      f = activate(f, w.act);
      if (!w.to_float) f = xsimd::min(xsimd::max(xsimd::nearbyint(f * inv) + zp, lo), hi);
      f.store_unaligned(tmp + i);
    }
    for (std::size_t i = nv; i < n; ++i) {
      float f = static_cast<float>(a[i] - w.corr[i]) * w.mult[i] + w.bias[i];
      f = activate(f, w.act);
      if (!w.to_float)
        f = std::clamp(std::nearbyint(f * w.inv_scale) + static_cast<float>(w.zp), 0.0f, 255.0f);
      tmp[i] = f;
    }
    if (w.to_float) {
      std::copy(tmp, tmp + n, static_cast<float*>(out) + r * n);
    } else {
      std::uint8_t* o = static_cast<std::uint8_t*>(out) + r * n;
      for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<std::uint8_t>(tmp[i]);
    }
  }
}

}  // namespace int8_detail

class Int8Runner {
 public:
  Int8Runner(std::shared_ptr<const QuantizedGraph> q, const InferenceOptions& options,
             Int8Kernel kernel)
      : q_(std::move(q)), slots_(*q_->graph), kernel_(resolve_int8_kernel(kernel)) {
    const Graph& g = *q_->graph;
    prepared_.resize(g.steps.size());
    std::size_t conv_cols = 0, dense_cols = 0, acc_cols = 0, pad_bytes = 0;
    // The model's output is written in float: no step may read it back as uint8.
    for (const Step& s : g.steps)
      for (auto v : s.in)
        if (g.root[v] == g.root[g.output])
          throw unsupported_error("locus::QuantizedPlan: step '" + s.name +
                                  "' reads the model's output; an int8 plan needs the output "
                                  "to be the last value computed");
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      Prepared& p = prepared_[i];
      if (s.in.size() > max_step_inputs)
        throw unsupported_error("locus::QuantizedPlan: step '" + s.name + "' adds " +
                                std::to_string(s.in.size()) + " tensors, at most " +
                                std::to_string(max_step_inputs) + " are supported");
      if (s.kind == StepKind::conv2d || s.kind == StepKind::dense) {
        const QuantizedWeights& w = q_->weights[i];
        // AMX pads k to 64: a product with less (the first convolution of an image, k = 9)
        // wastes most of each tile and runs faster on VNNI (the same integers).
        const Int8Kernel layer_kernel =
            kernel_ == Int8Kernel::amx && s.fan_in < 64 ? Int8Kernel::avx512_vnni : kernel_;
        p.b = PackedB(layer_kernel, w.q.data(), s.fan_in, s.units);
        const QuantParams in = param(s.in[0]);
        p.corr.assign(p.b.np, 0);
        p.mult.assign(p.b.np, 0.0f);
        p.bias.assign(p.b.np, 0.0f);
        for (std::size_t n = 0; n < s.units; ++n) {
          p.corr[n] = in.zero_point * w.colsum[n];
          p.mult[n] = in.scale * w.scale[n];
          p.bias[n] = s.bias[n];
        }
        acc_cols = std::max(acc_cols, p.b.np);
        // conv: an im2col row per output pixel; dense: a copy only when k needs padding.
        if (s.kind == StepKind::conv2d) {
          conv_cols = std::max(conv_cols, s.conv.oh * s.conv.ow * p.b.kp);
          const padded_image pe = padded_extent(s.conv);
          if (pe.needed) pad_bytes = std::max(pad_bytes, pe.h * pe.w * s.conv.c);
        } else if (p.b.kp != s.fan_in) {
          dense_cols = std::max(dense_cols, p.b.kp * g.per_sample(s.in[0]) / s.fan_in);
        }
      }
    }
    for (std::size_t i = 0; i + 1 < g.steps.size(); ++i) {
      if (!prepared_[i].skip && pools_after(g, i)) {
        prepared_[i].pooled = true;
        prepared_[i + 1].skip = true;
      }
    }
    // Slots hold bytes: four times the float runner's images fit the same cache.
    mb_ = micro_batch_for((slots_.slot_values + 3) / 4, options.micro_batch);
    const std::size_t slot_bytes = slots_.slot_values * mb_;
    const std::size_t in_bytes = g.per_sample(g.input) * mb_;
    const std::size_t count =
        options.workspaces ? options.workspaces : backend::cpu::num_threads() + 1;
    // Convolutions lay out one image's rows; dense steps whose k needs padding copy a whole
    // micro-batch.
    const std::size_t col_bytes = std::max(conv_cols, dense_cols * mb_);
    pool_ = std::make_unique<WorkspacePool<Workspace>>(count, [&] {
      auto ws = std::make_unique<Workspace>();
      ws->slots.assign(slots_.slots * slot_bytes, 0);
      ws->input.assign(in_bytes, 0);
      ws->cols.assign(col_bytes, 0);
      ws->pad.assign(pad_bytes, 0);
      ws->acc.assign(block_rows * std::max<std::size_t>(acc_cols, 1), 0);
      ws->tmp.assign(std::max<std::size_t>(acc_cols, 1) + lanes, 0.0f);
      ws->slot_bytes = slot_bytes;
      return ws;
    });
  }

  Int8Kernel kernel() const { return kernel_; }
  std::size_t micro_batch() const { return mb_; }

  void run(const float* x, std::size_t n, float* y) const {
    const Graph& g = *q_->graph;
    const std::size_t in_size = g.per_sample(g.input), out_size = g.per_sample(g.output);
    const std::size_t chunks = (n + mb_ - 1) / mb_;
    backend::cpu::parallel_for(chunks, 1, [&](std::size_t b, std::size_t e) {
      typename WorkspacePool<Workspace>::Lease ws(*pool_);
      for (std::size_t c = b; c < e; ++c) {
        const std::size_t first = c * mb_, m = std::min(mb_, n - first);
        run_micro(x + first * in_size, m, y + first * out_size, *ws);
      }
    });
  }

 private:
  static constexpr std::size_t block_rows = 96;  // GEMM rows per write-back (acc stays in L1)

  struct Workspace {
    std::vector<std::uint8_t> slots, input, cols, pad;
    std::vector<std::int32_t> acc;
    std::vector<float> tmp;
    std::size_t slot_bytes = 0;
  };
  struct Prepared {
    PackedB b;
    // Padded to b.np with zeros: the fused write-back reads whole vectors.
    std::vector<std::int32_t> corr;
    std::vector<float> mult, bias;
    // A convolution that also runs the 2x2 max pooling after it (its output's only reader):
    // the products are pooled in registers and written back once per window, and the
    // pooling step is skipped.
    bool pooled = false, skip = false;
  };

  QuantParams param(std::size_t v) const { return q_->params[q_->graph->root[v]]; }
  bool is_output(std::size_t v) const {
    return q_->graph->root[v] == q_->graph->root[q_->graph->output];
  }

  /// The write-back of a value: float into the model's output, else uint8 with its params.
  struct Sink {
    bool to_float;
    float inv_scale;
    std::int32_t zp;
    void* data;
    void put(std::size_t i, float real) const {
      if (to_float) {
        static_cast<float*>(data)[i] = real;
      } else {
        static_cast<std::uint8_t*>(data)[i] = int8_detail::quantize_value(real, inv_scale, zp);
      }
    }
  };

  void run_micro(const float* x, std::size_t m, float* y, Workspace& ws) const {
    const Graph& g = *q_->graph;
    {  // the model's input, quantized once per micro-batch
      const QuantParams p = param(g.input);
      const float inv = 1.0f / p.scale;
      const std::size_t count = m * g.per_sample(g.input);
      for (std::size_t i = 0; i < count; ++i)
        ws.input[i] = int8_detail::quantize_value(x[i], inv, p.zero_point);
    }
    auto at = [&](std::size_t v) -> void* {
      const std::size_t s = slots_.slot[g.root[v]];
      if (s == SlotPlan::input) return ws.input.data();
      if (s == SlotPlan::output) return y;
      return ws.slots.data() + s * ws.slot_bytes;
    };
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      const Step& s = g.steps[i];
      const Prepared& p = prepared_[i];
      if (p.skip) continue;  // run by the step before
      // A pooled convolution writes the pooling step's output.
      const std::size_t result = p.pooled ? g.steps[i + 1].out : s.out;
      const auto* src = static_cast<const std::uint8_t*>(at(s.in[0]));
      void* dst = at(result);
      const QuantParams in = param(s.in[0]), out = param(result);
      const Sink sink{is_output(result), 1.0f / out.scale, out.zero_point, dst};
      const std::size_t in_size = g.per_sample(s.in[0]), out_size = g.per_sample(result);
      switch (s.kind) {
        case StepKind::conv2d:
          for (std::size_t k = 0; k < m; ++k) {
            im2col(src + k * in_size, s.conv, p.b.kp, static_cast<std::uint8_t>(in.zero_point),
                   ws.pad.data(), ws.cols.data(), p.pooled);
            gemm_rows(ws.cols.data(), s.conv.oh * s.conv.ow, p.b.kp, s, p, sink, k * out_size, ws,
                      p.pooled);
          }
          break;
        case StepKind::dense: {
          const std::size_t rows = m * in_size / s.fan_in;
          const std::uint8_t* a = src;
          if (p.b.kp != s.fan_in) {
            for (std::size_t r = 0; r < rows; ++r) {
              std::copy(src + r * s.fan_in, src + (r + 1) * s.fan_in, ws.cols.data() + r * p.b.kp);
              std::fill(ws.cols.data() + r * p.b.kp + s.fan_in, ws.cols.data() + (r + 1) * p.b.kp,
                        std::uint8_t{0});
            }
            a = ws.cols.data();
          }
          gemm_rows(a, rows, p.b.kp, s, p, sink, 0, ws);
          break;
        }
        case StepKind::pool:
        case StepKind::global_pool:
          for (std::size_t k = 0; k < m; ++k) pool(s, src + k * in_size, in, sink, k * out_size);
          break;
        case StepKind::add: {
          std::array<const std::uint8_t*, max_step_inputs> ins{};
          std::array<QuantParams, max_step_inputs> ps{};
          for (std::size_t j = 0; j < s.in.size(); ++j) {
            ins[j] = static_cast<const std::uint8_t*>(at(s.in[j]));
            ps[j] = param(s.in[j]);
          }
          const std::size_t count = m * out_size;
          if (s.in.size() == 2 && !sink.to_float &&
              (s.act == gemm_activation::linear || s.act == gemm_activation::relu)) {
            add_codes(ins[0], ps[0], ins[1], ps[1], count, s.act == gemm_activation::relu, sink);
            break;
          }
          for (std::size_t e = 0; e < count; ++e) {
            float r = 0.0f;
            for (std::size_t j = 0; j < s.in.size(); ++j)
              r += ps[j].scale * static_cast<float>(ins[j][e] - ps[j].zero_point);
            sink.put(e, activate(r, s.act));
          }
          break;
        }
        case StepKind::affine: {
          const std::size_t count = m * out_size;
          for (std::size_t e = 0; e < count; ++e) {
            const std::size_t c = e % s.units;
            const float r = in.scale * static_cast<float>(src[e] - in.zero_point);
            sink.put(e, activate(r * s.scale[c] + s.bias[c], s.act));
          }
          break;
        }
        case StepKind::activation: {
          const std::size_t count = m * out_size;
          for (std::size_t e = 0; e < count; ++e)
            sink.put(e, activate(in.scale * static_cast<float>(src[e] - in.zero_point), s.act));
          break;
        }
        case StepKind::softmax: {
          const std::size_t len = g.shapes[s.out].back(), rows = m * out_size / len;
          for (std::size_t r = 0; r < rows; ++r) {
            float* t = ws.tmp.data();
            for (std::size_t e = 0; e < len; ++e)
              t[e] = in.scale * static_cast<float>(src[r * len + e] - in.zero_point);
            softmax_rows(t, 1, len);
            for (std::size_t e = 0; e < len; ++e) sink.put(r * len + e, t[e]);
          }
          break;
        }
      }
    }
  }

  /// Copies n bytes; the usual window widths (3 pixels of 1 to 64 channels) as fixed-size
  /// copies the compiler turns into a few moves instead of a call.
  static void copy_bytes(std::uint8_t* d, const std::uint8_t* s, std::size_t n) {
    switch (n) {
      case 3:
        std::memcpy(d, s, 3);
        return;
      case 48:
        std::memcpy(d, s, 48);
        return;
      case 96:
        std::memcpy(d, s, 96);
        return;
      case 192:
        std::memcpy(d, s, 192);
        return;
      default:
        std::memcpy(d, s, n);
    }
  }

  /// One image's im2col rows of kp bytes. A padded convolution first copies the image into
  /// a border of the zero point (which stands for 0.0), so that every window is kw * c
  /// contiguous bytes per kernel row. The bytes past kh * kw * c in a row are left as they
  /// are: they meet zero rows of B. In window order (a pooled convolution) the rows go by
  /// 2x2 pooling window: (2i, 2j), (2i, 2j + 1), (2i + 1, 2j), (2i + 1, 2j + 1), ...
  static void im2col(const std::uint8_t* x, const conv_geometry& g, std::size_t kp, std::uint8_t zp,
                     std::uint8_t* pad, std::uint8_t* cols, bool window_order) {
    const padded_image p = padded_extent(g);
    std::size_t wp = g.w;
    if (p.needed) {
      std::fill(pad, pad + p.h * p.w * g.c, zp);
      for (std::size_t i = 0; i < g.h; ++i)
        std::memcpy(pad + ((i + g.pad_top) * p.w + g.pad_left) * g.c, x + i * g.w * g.c, g.w * g.c);
      x = pad;
      wp = p.w;
    }
    const std::size_t span = g.kw * g.c;
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow) {
        const std::size_t r = window_order
                                  ? ((oh / 2) * (g.ow / 2) + ow / 2) * 4 + (oh % 2) * 2 + ow % 2
                                  : oh * g.ow + ow;
        std::uint8_t* row = cols + r * kp;
        const std::uint8_t* src = x + ((oh * g.sh) * wp + ow * g.sw) * g.c;
        for (std::size_t i = 0; i < g.kh; ++i) copy_bytes(row + i * span, src + i * wp * g.c, span);
      }
  }

  /// rows x units outputs of a product, written back from output element `offset`: fused
  /// into the product's tiles for linear and relu, else from int32 blocks of block_rows.
  void gemm_rows(const std::uint8_t* a, std::size_t rows, std::size_t lda, const Step& s,
                 const Prepared& p, const Sink& sink, std::size_t offset, Workspace& ws,
                 bool pool4 = false) const {
    const std::size_t elem = sink.to_float ? sizeof(float) : 1;
    auto* out = static_cast<std::uint8_t*>(sink.data) + offset * elem;
    if (s.act == gemm_activation::linear || s.act == gemm_activation::relu) {
      const Int8Epilogue e{p.corr.data(),
                           p.mult.data(),
                           p.bias.data(),
                           s.act == gemm_activation::relu,
                           sink.to_float,
                           sink.inv_scale,
                           static_cast<float>(sink.zp),
                           out,
                           s.units,
                           s.units,
                           pool4};
      gemm_u8s8(a, rows, lda, p.b, ws.acc.data(), p.b.np, &e);
    } else {
      const int8_detail::WriteBack wb{p.corr.data(), p.mult.data(),  p.bias.data(), s.act,
                                      sink.to_float, sink.inv_scale, sink.zp};
      for (std::size_t r = 0; r < rows; r += block_rows) {
        const std::size_t rb = std::min(block_rows, rows - r);
        gemm_u8s8(a + r * lda, rb, lda, p.b, ws.acc.data(), p.b.np);
        int8_detail::write_back_rows(ws.acc.data(), rb, p.b.np, s.units, wb,
                                     out + r * s.units * elem, ws.tmp.data());
      }
    }
    if (s.softmax && sink.to_float)
      softmax_rows(static_cast<float*>(sink.data) + offset, pool4 ? rows / 4 : rows, s.units);
  }

  /// The sum of two quantized tensors (relu or not), requantised: the residual connection.
  /// f = fma(sa, a - za, sb * (b - zb)) element by element, 16 at a time with AVX-512 and 8
  /// with AVX2 where the build targets them, the same operations in the scalar tail.
  static void add_codes(const std::uint8_t* a, QuantParams pa, const std::uint8_t* b,
                        QuantParams pb, std::size_t n, bool relu, const Sink& out) {
    auto* y = static_cast<std::uint8_t*>(out.data);
    std::size_t i = 0;
#if defined(__AVX512F__)
    const __m512 sa = _mm512_set1_ps(pa.scale), sb = _mm512_set1_ps(pb.scale);
    const __m512i za = _mm512_set1_epi32(pa.zero_point), zb = _mm512_set1_epi32(pb.zero_point);
    const __m512 inv = _mm512_set1_ps(out.inv_scale), zp = _mm512_set1_ps(float(out.zp));
    const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
    for (; i + 16 <= n; i += 16) {
      const __m512i qa =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
      const __m512i qb =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
      __m512 f = _mm512_fmadd_ps(sa, _mm512_cvtepi32_ps(_mm512_sub_epi32(qa, za)),
                                 _mm512_mul_ps(sb, _mm512_cvtepi32_ps(_mm512_sub_epi32(qb, zb))));
      if (relu) f = _mm512_max_ps(f, lo);
      f = _mm512_roundscale_ps(_mm512_mul_ps(f, inv),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      f = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(f, zp), lo), hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                       _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(f)));
    }
#endif
    for (; i < n; ++i) {
      float f = std::fma(pa.scale, static_cast<float>(a[i] - pa.zero_point),
                         pb.scale * static_cast<float>(b[i] - pb.zero_point));
      if (relu) f = f > 0.0f ? f : 0.0f;
      y[i] = static_cast<std::uint8_t>(
          std::min(std::max(std::nearbyint(f * out.inv_scale) + float(out.zp), 0.0f), 255.0f));
    }
  }

  /// y[c] = the largest code of the window [h0, h1) x [w0, w1) in channel c (16 channels
  /// per SSE2 instruction on x86-64, whose baseline has it).
  static void max_codes(const std::uint8_t* x, const pool_geometry& g, std::size_t h0,
                        std::size_t h1, std::size_t w0, std::size_t w1, std::uint8_t* y) {
    std::size_t c = 0;
#if defined(__SSE2__)
    for (; c + 16 <= g.c; c += 16) {
      __m128i m = _mm_setzero_si128();
      for (std::size_t i = h0; i < h1; ++i)
        for (std::size_t j = w0; j < w1; ++j)
          m = _mm_max_epu8(
              m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + (i * g.w + j) * g.c + c)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c), m);
    }
#endif
    for (; c < g.c; ++c) {
      std::uint8_t m = 0;
      for (std::size_t i = h0; i < h1; ++i)
        for (std::size_t j = w0; j < w1; ++j) m = std::max(m, x[(i * g.w + j) * g.c + c]);
      y[c] = m;
    }
  }

  static void pool(const Step& s, const std::uint8_t* x, const QuantParams& in, const Sink& sink,
                   std::size_t offset) {
    const pool_geometry& g = s.pool;
    for (std::size_t oh = 0; oh < g.oh; ++oh) {
      for (std::size_t ow = 0; ow < g.ow; ++ow) {
        const auto [h0, h1, w0, w1] = pool_window(g, oh, ow);
        const std::size_t o = offset + (oh * g.ow + ow) * g.c;
        if (s.pooling == pool_kind::max && !sink.to_float) {
          // Same scale and zero point as the input: the maximum of the codes.
          max_codes(x, g, h0, h1, w0, w1, static_cast<std::uint8_t*>(sink.data) + o);
          continue;
        }
        const float count = static_cast<float>((h1 - h0) * (w1 - w0));
        for (std::size_t c = 0; c < g.c; ++c) {
          std::int32_t a = 0;
          for (std::size_t i = h0; i < h1; ++i)
            for (std::size_t j = w0; j < w1; ++j) {
              const std::int32_t v = x[(i * g.w + j) * g.c + c];
              a = s.pooling == pool_kind::max ? std::max(a, v) : a + v;
            }
          const float q =
              s.pooling == pool_kind::max ? static_cast<float>(a) : static_cast<float>(a) / count;
          sink.put(o + c, in.scale * (q - static_cast<float>(in.zero_point)));
        }
      }
    }
  }

  std::shared_ptr<const QuantizedGraph> q_;
  SlotPlan slots_;
  Int8Kernel kernel_;
  std::vector<Prepared> prepared_;
  std::size_t mb_ = 1;
  std::unique_ptr<WorkspacePool<Workspace>> pool_;
};

}  // namespace locus::inference::cpu
