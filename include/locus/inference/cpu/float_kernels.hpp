// The float kernels of the CPU inference plan: one image (or a few rows) at a time, on
// pointers into a workspace that stays in the core's cache.
//
// Convolutions are direct, not im2col + GEMM: an image's input is padded once into
// scratch, and each output row is computed in tiles of P pixels x NV SIMD vectors of
// filters held in registers; for each (kh, kw, c) the tile loads NV weight vectors and P
// broadcasts. With 9 input values per pixel (the headline CNN's first layer) an im2col
// matrix would be wider than the arithmetic it feeds; here nothing but the output is
// written. Bias and activation are applied in registers as the tile is stored.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>

#include "../../backend/backend.hpp"
#include "../../backend/cpu/simd.hpp"
#include "../../backend/nn_backend.hpp"

namespace locus::inference::cpu {

using vec = backend::cpu::simd<float>;
inline constexpr std::size_t lanes = vec::size;
// Vector registers: 32 with AVX-512, 16 on the other x86 and ARM targets.
#if defined(__AVX512F__)
inline constexpr std::size_t registers = 32;
#else
inline constexpr std::size_t registers = 16;
#endif

inline float activate(float z, gemm_activation a) {
  switch (a) {
    case gemm_activation::relu:
      return z > 0.0f ? z : 0.0f;
    case gemm_activation::sigmoid:
      return 1.0f / (1.0f + std::exp(-z));
    case gemm_activation::tanh:
      return std::tanh(z);
    default:
      return z;
  }
}

inline vec activate(vec z, gemm_activation a) {
  switch (a) {
    case gemm_activation::relu:
      return xsimd::max(z, vec(0.0f));
    case gemm_activation::sigmoid:
      return vec(1.0f) / (vec(1.0f) + xsimd::exp(-z));
    case gemm_activation::tanh:
      return xsimd::tanh(z);
    default:
      return z;
  }
}

/// Applies `a` to n values in place.
inline void activate_span(float* y, std::size_t n, gemm_activation a) {
  if (a == gemm_activation::linear) return;
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) activate(vec::load_unaligned(y + i), a).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = activate(y[i], a);
}

/// Softmax over rows of `len` values, in place.
inline void softmax_rows(float* y, std::size_t rows, std::size_t len) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* p = y + r * len;
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < len; ++i) m = std::max(m, p[i]);
    float s = 0.0f;
    for (std::size_t i = 0; i < len; ++i) s += (p[i] = std::exp(p[i] - m));
    const float inv = 1.0f / s;
    for (std::size_t i = 0; i < len; ++i) p[i] *= inv;
  }
}

/// The padded extent of one image for a convolution (the input itself when unpadded).
struct padded_image {
  std::size_t h, w;
  bool needed;
};
inline padded_image padded_extent(const conv_geometry& g) {
  const std::size_t h = std::max(g.h + g.pad_top, (g.oh - 1) * g.sh + g.kh);
  const std::size_t w = std::max(g.w + g.pad_left, (g.ow - 1) * g.sw + g.kw);
  return {h, w, g.pad_top || g.pad_left || h != g.h || w != g.w};
}

/// Copies one HWC image into a zero border (the layout the convolution tiles read).
inline void pad_image(const float* x, const conv_geometry& g, const padded_image& p, float* out) {
  std::fill(out, out + p.h * p.w * g.c, 0.0f);
  for (std::size_t i = 0; i < g.h; ++i)
    std::memcpy(out + ((i + g.pad_top) * p.w + g.pad_left) * g.c, x + i * g.w * g.c,
                g.w * g.c * sizeof(float));
}

namespace detail {

/// P output pixels (stride `step` floats apart in the input) x NV vectors of filters, on
/// one output row, or with Pooled on two (`pair` floats apart in the input) followed by a
/// 2x2 max pooling: then P / 2 pooled pixels are written, y_step apart. Pooling before the
/// activation is exact: the bias is common to the window and the activations are
/// increasing.
template <std::size_t NV, std::size_t P, bool Pooled>
inline void conv_tile(const float* x, std::size_t row, std::size_t pair, std::size_t step,
                      std::size_t c, std::size_t kh, std::size_t kw, const float* w, std::size_t f,
                      const float* bias, gemm_activation act, float* y, std::size_t y_step) {
  constexpr std::size_t R = Pooled ? 2 : 1;
  // The loops over R, P and NV are unrolled so that acc lives in registers.
  vec acc[R][P][NV];
#pragma GCC unroll 16
  for (std::size_t v = 0; v < NV; ++v) {
    const vec b = vec::load_unaligned(bias + v * lanes);
#pragma GCC unroll 2
    for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (std::size_t p = 0; p < P; ++p) acc[r][p][v] = b;
  }
  for (std::size_t i = 0; i < kh; ++i) {
    for (std::size_t j = 0; j < kw; ++j) {
      const float* xi = x + i * row + j * c;
      const float* wi = w + (i * kw + j) * c * f;
      for (std::size_t ch = 0; ch < c; ++ch) {
        vec wv[NV];
#pragma GCC unroll 16
        for (std::size_t v = 0; v < NV; ++v) wv[v] = vec::load_unaligned(wi + ch * f + v * lanes);
#pragma GCC unroll 2
        for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
          for (std::size_t p = 0; p < P; ++p) {
            const vec xb(xi[r * pair + p * step + ch]);
#pragma GCC unroll 16
            for (std::size_t v = 0; v < NV; ++v) acc[r][p][v] = xsimd::fma(xb, wv[v], acc[r][p][v]);
          }
      }
    }
  }
  if constexpr (Pooled) {
#pragma GCC unroll 16
    for (std::size_t q = 0; q < P / 2; ++q)
#pragma GCC unroll 16
      for (std::size_t v = 0; v < NV; ++v)
        activate(xsimd::max(xsimd::max(acc[0][2 * q][v], acc[0][2 * q + 1][v]),
                            xsimd::max(acc[1][2 * q][v], acc[1][2 * q + 1][v])),
                 act)
            .store_unaligned(y + q * y_step + v * lanes);
  } else {
#pragma GCC unroll 16
    for (std::size_t p = 0; p < P; ++p)
#pragma GCC unroll 16
      for (std::size_t v = 0; v < NV; ++v)
        activate(acc[0][p][v], act).store_unaligned(y + p * y_step + v * lanes);
  }
}

/// The last `rem` (< P; even when pooled) pixels of a row: one tile of exactly rem pixels.
template <std::size_t NV, std::size_t P, bool Pooled>
inline void conv_tail(std::size_t rem, const float* x, std::size_t row, std::size_t pair,
                      std::size_t step, std::size_t c, std::size_t kh, std::size_t kw,
                      const float* w, std::size_t f, const float* bias, gemm_activation act,
                      float* y, std::size_t y_step) {
  constexpr std::size_t D = Pooled ? 2 : 1;
  if constexpr (P > D) {
    if (rem == P - D) {
      conv_tile<NV, P - D, Pooled>(x, row, pair, step, c, kh, kw, w, f, bias, act, y, y_step);
    } else {
      conv_tail<NV, P - D, Pooled>(rem, x, row, pair, step, c, kh, kw, w, f, bias, act, y, y_step);
    }
  }
}

template <std::size_t NV, bool Pooled>
inline void conv_vectors(const float* x, const conv_geometry& g, std::size_t row, const float* w,
                         std::size_t f, const float* bias, gemm_activation act, float* y) {
  // As many pixels as registers allow (two rows of them when pooled; an even count).
  constexpr std::size_t fit = (registers - NV - 2) / NV / (Pooled ? 2 : 1);
  constexpr std::size_t P =
      Pooled ? std::clamp<std::size_t>(fit / 2 * 2, 2, 12) : std::clamp<std::size_t>(fit, 1, 12);
  const std::size_t step = g.sw * g.c, pair = g.sh * row;
  const std::size_t rows = Pooled ? g.oh / 2 : g.oh, cols = Pooled ? g.ow / 2 : g.ow;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * (Pooled ? 2 : 1) * pair;
    float* yr = y + r * cols * f;
    std::size_t ow = 0;
    const std::size_t out_step = Pooled ? 2 : 1;  // input pixels per output pixel
    for (; ow + P <= g.ow; ow += P)
      conv_tile<NV, P, Pooled>(xr + ow * step, row, pair, step, g.c, g.kh, g.kw, w, f, bias, act,
                               yr + ow / out_step * f, f);
    if (ow < g.ow)
      conv_tail<NV, P, Pooled>(g.ow - ow, xr + ow * step, row, pair, step, g.c, g.kh, g.kw, w, f,
                               bias, act, yr + ow / out_step * f, f);
  }
}

}  // namespace detail

/// Whether conv2d_image can pool a convolution's output 2x2 as it computes it: even output
/// extents and whole vectors of filters.
inline bool poolable_in_tiles(const conv_geometry& g, std::size_t f) {
  return g.oh % 2 == 0 && g.ow % 2 == 0 && f % lanes == 0;
}

/// One image: y[oh, ow, f] = act(bias[f] + sum x[oh*sh + i, ow*sw + j, c] w[i, j, c, f]).
/// x is the image already padded (padded_extent's w columns per row). `f` filters. With
/// `pooled` (poolable_in_tiles), y is the 2x2 max pooling (stride 2) of that output.
inline void conv2d_image(const float* x, const conv_geometry& g, std::size_t padded_w,
                         const float* w, std::size_t f, const float* bias, gemm_activation act,
                         float* y, bool pooled = false) {
  const std::size_t row = padded_w * g.c;
  auto columns = [&]<std::size_t NV>(std::size_t f0) {
    if (pooled) {
      detail::conv_vectors<NV, true>(x, g, row, w + f0, f, bias + f0, act, y + f0);
    } else {
      detail::conv_vectors<NV, false>(x, g, row, w + f0, f, bias + f0, act, y + f0);
    }
  };
  std::size_t f0 = 0;
  // Columns of filters in blocks of up to four vectors; the tile offsets w, bias and y.
  for (; f0 + 4 * lanes <= f; f0 += 4 * lanes) columns.template operator()<4>(f0);
  const std::size_t rest = (f - f0) / lanes;
  if (rest == 3) columns.template operator()<3>(f0);
  if (rest == 2) columns.template operator()<2>(f0);
  if (rest == 1) columns.template operator()<1>(f0);
  f0 += rest * lanes;
  if (f0 == f) return;
  // Filters past the last whole vector: scalar.
  for (std::size_t oh = 0; oh < g.oh; ++oh)
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const float* xp = x + oh * g.sh * row + ow * g.sw * g.c;
      float* yp = y + (oh * g.ow + ow) * f;
      for (std::size_t k = f0; k < f; ++k) {
        float s = bias[k];
        for (std::size_t i = 0; i < g.kh; ++i)
          for (std::size_t j = 0; j < g.kw; ++j)
            for (std::size_t ch = 0; ch < g.c; ++ch)
              s += xp[i * row + j * g.c + ch] * w[((i * g.kw + j) * g.c + ch) * f + k];
        yp[k] = activate(s, act);
      }
    }
}

/// y[r, n] = act(bias[n] + x[r, :] . wt[n, :]) for `rows` rows; wt is the kernel transposed
/// ([units, k]), so each output is a dot product along contiguous memory.
///
/// Blocked so that everything read in the inner loop is in L1: four rows and sixteen units
/// at a time, k in chunks of 512 floats (4 x 2 KB of rows and 16 x 2 KB of weights), with
/// vector accumulators per (row, unit) kept across chunks. Each row sums into two vectors so
/// that eight independent chains of fused multiply-adds keep both FMA ports busy; the
/// accumulators are reduced once at the end.
inline void dense_rows(const float* x, std::size_t rows, std::size_t k, const float* wt,
                       std::size_t units, const float* bias, gemm_activation act, float* y) {
  constexpr std::size_t RB = 4, NB = 16, KC = 512;
  const std::size_t k2 = k - k % (2 * lanes), kv = k - k % lanes;
  for (std::size_t r0 = 0; r0 < rows; r0 += RB) {
    const std::size_t rb = std::min(RB, rows - r0);
    const float* xb = x + r0 * k;
    for (std::size_t n0 = 0; n0 < units; n0 += NB) {
      const std::size_t nb = std::min(NB, units - n0);
      vec acc[RB][NB][2];
      for (std::size_t q = 0; q < RB; ++q)
        for (std::size_t n = 0; n < NB; ++n) acc[q][n][0] = acc[q][n][1] = vec(0.0f);
      for (std::size_t kc = 0; kc < k2; kc += KC) {
        const std::size_t ke = std::min(kc + KC, k2);
        for (std::size_t n = 0; n < nb; ++n) {
          const float* wn = wt + (n0 + n) * k;
          if (rb == RB) {
            vec a[RB][2];
#pragma GCC unroll 4
            for (std::size_t q = 0; q < RB; ++q) a[q][0] = acc[q][n][0], a[q][1] = acc[q][n][1];
            for (std::size_t i = kc; i < ke; i += 2 * lanes) {
              const vec w0 = vec::load_unaligned(wn + i), w1 = vec::load_unaligned(wn + i + lanes);
#pragma GCC unroll 4
              for (std::size_t q = 0; q < RB; ++q) {
                a[q][0] = xsimd::fma(vec::load_unaligned(xb + q * k + i), w0, a[q][0]);
                a[q][1] = xsimd::fma(vec::load_unaligned(xb + q * k + i + lanes), w1, a[q][1]);
              }
            }
#pragma GCC unroll 4
            for (std::size_t q = 0; q < RB; ++q) acc[q][n][0] = a[q][0], acc[q][n][1] = a[q][1];
          } else {
            for (std::size_t q = 0; q < rb; ++q) {
              vec a0 = acc[q][n][0], a1 = acc[q][n][1];
              for (std::size_t i = kc; i < ke; i += 2 * lanes) {
                a0 = xsimd::fma(vec::load_unaligned(xb + q * k + i), vec::load_unaligned(wn + i),
                                a0);
                a1 = xsimd::fma(vec::load_unaligned(xb + q * k + i + lanes),
                                vec::load_unaligned(wn + i + lanes), a1);
              }
              acc[q][n][0] = a0;
              acc[q][n][1] = a1;
            }
          }
        }
      }
      for (std::size_t q = 0; q < rb; ++q)
        for (std::size_t n = 0; n < nb; ++n) {
          const float* wn = wt + (n0 + n) * k;
          const float* xr = xb + q * k;
          vec a = acc[q][n][0] + acc[q][n][1];
          for (std::size_t i = k2; i < kv; i += lanes)
            a = xsimd::fma(vec::load_unaligned(xr + i), vec::load_unaligned(wn + i), a);
          float sum = xsimd::hadd(a);
          for (std::size_t t = kv; t < k; ++t) sum += xr[t] * wn[t];
          y[(r0 + q) * units + n0 + n] = activate(sum + bias[n0 + n], act);
        }
    }
  }
}

/// The input rows [h0, h1) and columns [w0, w1) of pooling window (oh, ow), clipped to
/// the image ('same' padding adds nothing).
struct window {
  std::size_t h0, h1, w0, w1;
};
inline window pool_window(const pool_geometry& g, std::size_t oh, std::size_t ow) {
  return {oh * g.sh > g.pad_top ? oh * g.sh - g.pad_top : 0,
          std::min(g.h, oh * g.sh + g.ph - g.pad_top),
          ow * g.sw > g.pad_left ? ow * g.sw - g.pad_left : 0,
          std::min(g.w, ow * g.sw + g.pw - g.pad_left)};
}

/// 2-D pooling of one HWC image (Keras semantics: 'same' windows average over the elements
/// inside the image).
inline void pool_image(pool_kind kind, const float* x, const pool_geometry& g, float* y) {
  const std::size_t cv = g.c - g.c % lanes;
  if (kind == pool_kind::max && g.ph == 2 && g.pw == 2 && g.sh == 2 && g.sw == 2 &&
      g.pad_top == 0 && g.pad_left == 0 && cv == g.c) {
    // The common 2x2 max pooling: four loads and three maxima per vector of channels.
    const std::size_t row = g.w * g.c;
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow) {
        const float* p = x + (2 * oh * g.w + 2 * ow) * g.c;
        float* q = y + (oh * g.ow + ow) * g.c;
        for (std::size_t c = 0; c < g.c; c += lanes)
          xsimd::max(
              xsimd::max(vec::load_unaligned(p + c), vec::load_unaligned(p + g.c + c)),
              xsimd::max(vec::load_unaligned(p + row + c), vec::load_unaligned(p + row + g.c + c)))
              .store_unaligned(q + c);
      }
    return;
  }
  for (std::size_t oh = 0; oh < g.oh; ++oh) {
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const auto [h0, h1, w0, w1] = pool_window(g, oh, ow);
      float* yp = y + (oh * g.ow + ow) * g.c;
      const float inv = 1.0f / static_cast<float>((h1 - h0) * (w1 - w0));
      for (std::size_t c = 0; c < cv; c += lanes) {
        vec a = kind == pool_kind::max ? vec(-std::numeric_limits<float>::infinity()) : vec(0.0f);
        for (std::size_t i = h0; i < h1; ++i)
          for (std::size_t j = w0; j < w1; ++j) {
            const vec v = vec::load_unaligned(x + (i * g.w + j) * g.c + c);
            a = kind == pool_kind::max ? xsimd::max(a, v) : a + v;
          }
        (kind == pool_kind::max ? a : a * vec(inv)).store_unaligned(yp + c);
      }
      for (std::size_t c = cv; c < g.c; ++c) {
        float a = kind == pool_kind::max ? -std::numeric_limits<float>::infinity() : 0.0f;
        for (std::size_t i = h0; i < h1; ++i)
          for (std::size_t j = w0; j < w1; ++j) {
            const float v = x[(i * g.w + j) * g.c + c];
            a = kind == pool_kind::max ? std::max(a, v) : a + v;
          }
        yp[c] = kind == pool_kind::max ? a : a * inv;
      }
    }
  }
}

/// y = act(sum of `count` inputs), n values.
inline void add_values(const float* const* in, std::size_t count, std::size_t n,
                       gemm_activation act, float* y) {
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    vec s = vec::load_unaligned(in[0] + i);
    for (std::size_t j = 1; j < count; ++j) s += vec::load_unaligned(in[j] + i);
    activate(s, act).store_unaligned(y + i);
  }
  for (; i < n; ++i) {
    float s = in[0][i];
    for (std::size_t j = 1; j < count; ++j) s += in[j][i];
    y[i] = activate(s, act);
  }
}

/// y = act(x * scale[c] + shift[c]) over rows of c channels.
inline void affine_rows(const float* x, std::size_t rows, std::size_t c, const float* scale,
                        const float* shift, gemm_activation act, float* y) {
  const std::size_t cv = c - c % lanes;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    for (std::size_t i = 0; i < cv; i += lanes)
      activate(xsimd::fma(vec::load_unaligned(xr + i), vec::load_unaligned(scale + i),
                          vec::load_unaligned(shift + i)),
               act)
          .store_unaligned(yr + i);
    for (std::size_t i = cv; i < c; ++i) yr[i] = activate(xr[i] * scale[i] + shift[i], act);
  }
}

}  // namespace locus::inference::cpu
