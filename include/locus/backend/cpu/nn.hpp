// nn_backend_for<Device<CPU>>: the host neural-network kernels (interface:
// backend/nn_backend.hpp).
//
// Every kernel is written so that each output element is produced by exactly one task,
// which makes the parallel split race-free without atomics and the results independent of
// the thread count:
//  * im2col   one task per output image row (n, oh); each (row, kh) copies one contiguous
//             run of KW*C input elements, the same run length on both sides (NHWC and the
//             (kh, kw, c) column order line up), so the copy has a compile-time length for
//             the common small kernels (C = 1, 3x3 gives runs of 3).
//  * col2im   the adjoint as a gather over input rows (n, ih): a task owns one dx row and
//             adds the (at most KH) column rows that read it; for one channel and stride 1
//             (a first layer) each dx element is summed in registers and stored once.
//  * pooling  forward over output rows, backward as a gather over input rows: each dx
//             element sums the windows that contain it (with the argmax test for max), so
//             dx is written once, without a separate zeroing pass, and overlapping
//             windows need no special case. Channels are the innermost, contiguous axis,
//             so the float paths run on xsimd batches across C.
// Nothing allocates: window ranges are tracked incrementally instead of being tabulated.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../../device.hpp"
#include "../../error.hpp"
#include "../nn_backend.hpp"
#include "backend.hpp"
#include "simd.hpp"
#include "thread_pool.hpp"

namespace locus {

namespace detail::nn {

// Argument checks shared by every backend: the kernels index buffers with the geometry,
// so a geometry that does not match the buffers must be refused before any launch.
inline void require(bool ok, const char* fn, const std::string& what) {
  if (!ok) throw argument_error(std::string("locus::nn_backend::") + fn + ": " + what);
}

inline std::size_t conv_cols_size(const conv_geometry& g) {
  return g.n * g.oh * g.ow * g.kh * g.kw * g.c;
}

inline void check_conv(const conv_geometry& g, std::size_t x_size, std::size_t cols_size,
                       const char* fn) {
  require(g.kh > 0 && g.kw > 0, fn, "the kernel window must be at least 1x1");
  require(g.sh > 0 && g.sw > 0, fn, "strides must be at least 1");
  require(x_size >= g.n * g.h * g.w * g.c, fn,
          "the image buffer holds " + std::to_string(x_size) + " elements, the geometry needs " +
              std::to_string(g.n * g.h * g.w * g.c));
  require(cols_size >= conv_cols_size(g), fn,
          "the column buffer holds " + std::to_string(cols_size) +
              " elements, the geometry needs " + std::to_string(conv_cols_size(g)));
}

inline void check_pool(const pool_geometry& g, std::size_t x_size, std::size_t y_size,
                       const std::size_t* argmax_size, const char* fn) {
  require(g.ph > 0 && g.pw > 0, fn, "the pooling window must be at least 1x1");
  require(g.sh > 0 && g.sw > 0, fn, "strides must be at least 1");
  const std::size_t nx = g.n * g.h * g.w * g.c, ny = g.n * g.oh * g.ow * g.c;
  require(x_size >= nx, fn,
          "the input buffer holds " + std::to_string(x_size) + " elements, the geometry needs " +
              std::to_string(nx));
  require(y_size >= ny, fn,
          "the output buffer holds " + std::to_string(y_size) + " elements, the geometry needs " +
              std::to_string(ny));
  if (argmax_size) {
    require(*argmax_size >= ny, fn,
            "the argmax buffer holds " + std::to_string(*argmax_size) +
                " elements, the geometry needs " + std::to_string(ny));
    // argmax holds flat indices into x as int32.
    require(nx <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), fn,
            "max pooling with argmax needs an input of at most 2^31-1 elements");
  }
}

// The check shared by every backend's gather_rows and one_hot: `count` rows are read
// through a `source` buffer of one entry per row and written as rows of `row_len`.
inline void check_rows(const char* fn, const char* source, std::size_t source_size,
                       std::size_t dst_size, std::size_t count, std::size_t row_len) {
  require(source_size >= count, fn,
          std::string("the ") + source + " buffer holds " + std::to_string(source_size) +
              " elements, " + std::to_string(count) + " rows were requested");
  require(dst_size >= count * row_len, fn,
          "the destination holds " + std::to_string(dst_size) + " elements, " +
              std::to_string(count * row_len) + " are needed");
}

// The status buffer of a checked one_hot holds two int32 (smallest negative label, largest
// label >= classes).
inline void check_label_status(const char* fn, std::size_t status_size) {
  require(
      status_size >= 2, fn,
      "the label status buffer holds " + std::to_string(status_size) + " elements, 2 are needed");
}

// First and one-past-last output index whose window [o*s - pad, o*s - pad + k) lies
// entirely inside [0, in): the interior, where no bounds checks are needed.
struct interior {
  std::size_t begin, end;
};
inline interior interior_range(std::size_t in, std::size_t k, std::size_t s, std::size_t pad,
                               std::size_t out) {
  std::size_t b = 0;
  while (b < out && b * s < pad) ++b;
  std::size_t e = b;
  while (e < out && e * s - pad + k <= in) ++e;
  return {b, e};
}

struct span_of_outputs {
  std::size_t begin, end;
};

// Copies a run of n elements; N > 0 fixes the length at compile time so the
// compiler emits straight-line code for the tiny runs of small kernels.
template <std::size_t N, class T>
inline void copy_run(T* d, const T* s, std::size_t n) {
  if constexpr (N > 0) {
    for (std::size_t j = 0; j < N; ++j) d[j] = s[j];
  } else if (n >= 16) {
    std::memcpy(d, s, n * sizeof(T));
  } else {
    for (std::size_t j = 0; j < n; ++j) d[j] = s[j];
  }
}
// d[0, n) += s[0, n) on xsimd batches (the compiler cannot vectorise this itself at -O2:
// it would need a run-time aliasing check).
template <class T>
inline void add_vec(T* d, const T* s, std::size_t n) {
  using B = xsimd::batch<T>;
  std::size_t j = 0;
  for (; j + B::size <= n; j += B::size) {
    (B::load_unaligned(d + j) + B::load_unaligned(s + j)).store_unaligned(d + j);
  }
  for (; j < n; ++j) d[j] += s[j];
}

// Calls f(std::integral_constant<size_t, R>) with R = run when the run length is one of
// the common small ones, R = 0 (run-time length) otherwise.
template <class F>
inline void dispatch_run(std::size_t run, F&& f) {
  switch (run) {
    case 1:
      return f(std::integral_constant<std::size_t, 1>{});
    case 2:
      return f(std::integral_constant<std::size_t, 2>{});
    case 3:
      return f(std::integral_constant<std::size_t, 3>{});
    case 4:
      return f(std::integral_constant<std::size_t, 4>{});
    case 5:
      return f(std::integral_constant<std::size_t, 5>{});
    case 6:
      return f(std::integral_constant<std::size_t, 6>{});
    case 9:
      return f(std::integral_constant<std::size_t, 9>{});
    default:
      return f(std::integral_constant<std::size_t, 0>{});
  }
}

// Grain (in tasks) so that a chunk carries at least ~16k elements of work: smaller jobs
// cost more in dispatch than they gain from a second core.
inline std::size_t grain_for(std::size_t work_per_task) {
  constexpr std::size_t min_chunk = 1 << 14;
  return std::max<std::size_t>(1, min_chunk / std::max<std::size_t>(work_per_task, 1));
}

template <std::size_t R, class T>
void im2col_rows(const T* x, const conv_geometry& g, const interior& iw, T* cols, std::size_t r0,
                 std::size_t r1) {
  const std::size_t C = g.c, run = R ? R : g.kw * g.c, K = g.kh * run;
  const auto W = static_cast<std::ptrdiff_t>(g.w), H = static_cast<std::ptrdiff_t>(g.h);
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.oh, oh = r % g.oh;
    T* out = cols + r * g.ow * K;
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      const std::ptrdiff_t ih =
          static_cast<std::ptrdiff_t>(oh * g.sh + kh) - static_cast<std::ptrdiff_t>(g.pad_top);
      T* o = out + kh * run;
      if (ih < 0 || ih >= H) {
        for (std::size_t ow = 0; ow < g.ow; ++ow) std::fill_n(o + ow * K, run, T(0));
        continue;
      }
      const T* xrow = x + (n * g.h + static_cast<std::size_t>(ih)) * g.w * C;
      auto edge = [&](std::size_t ow) {
        const std::ptrdiff_t iw0 =
            static_cast<std::ptrdiff_t>(ow * g.sw) - static_cast<std::ptrdiff_t>(g.pad_left);
        for (std::size_t kw = 0; kw < g.kw; ++kw) {
          const std::ptrdiff_t i = iw0 + static_cast<std::ptrdiff_t>(kw);
          T* d = o + ow * K + kw * C;
          if (i < 0 || i >= W) {
            std::fill_n(d, C, T(0));
          } else {
            std::copy_n(xrow + static_cast<std::size_t>(i) * C, C, d);
          }
        }
      };
      for (std::size_t ow = 0; ow < iw.begin; ++ow) edge(ow);
      if (iw.begin < iw.end) {
        const T* src = xrow + (iw.begin * g.sw - g.pad_left) * C;
        const std::size_t step = g.sw * C;
        for (std::size_t ow = iw.begin; ow < iw.end; ++ow, src += step) {
          copy_run<R>(o + ow * K, src, run);
        }
      }
      for (std::size_t ow = iw.end; ow < g.ow; ++ow) edge(ow);
    }
  }
}

// For one kw, the outputs ow whose input column ow*sw + kw - pad_left is inside [0, w).
inline span_of_outputs outputs_reading(std::size_t kw, const conv_geometry& g) {
  // iw >= 0  <=>  ow*sw >= pad_left - kw;  iw < w  <=>  ow*sw < w + pad_left - kw.
  const std::size_t lo_num = g.pad_left > kw ? g.pad_left - kw : 0;
  const std::size_t lo = (lo_num + g.sw - 1) / g.sw;
  const std::size_t lim = g.w + g.pad_left;
  const std::size_t hi = lim > kw ? std::min(g.ow, (lim - kw - 1) / g.sw + 1) : 0;
  return {std::min(lo, hi), hi};
}

// Gather over input rows: a task owns dx row (n, ih) and adds, for every (kh, kw) whose
// output row exists, the column entries of all outputs ow that read this row. For a fixed
// (kh, kw) different ow hit different dx elements, so the adds of the inner loop are
// independent (a loop over ow with the (kw, c) run innermost would chain every add through
// the previous one's store when sw*C < KW*C).
template <class T>
void col2im_rows(const T* cols, const conv_geometry& g, const span_of_outputs* ranges, T* dx,
                 std::size_t r0, std::size_t r1) {
  const std::size_t C = g.c, K = g.kh * g.kw * C;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.h, ih = r % g.h;
    T* drow = dx + r * g.w * C;
    std::fill_n(drow, g.w * C, T(0));
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      // Output row oh reads input row oh*sh + kh - pad_top; invert that for this ih.
      const std::size_t p = ih + g.pad_top;
      if (p < kh || (p - kh) % g.sh != 0) continue;
      const std::size_t oh = (p - kh) / g.sh;
      if (oh >= g.oh) continue;
      const T* crow = cols + (n * g.oh + oh) * g.ow * K + kh * g.kw * C;
      for (std::size_t kw = 0; kw < g.kw; ++kw) {
        const span_of_outputs o = ranges ? ranges[kw] : outputs_reading(kw, g);
        if (o.begin >= o.end) continue;
        T* d = drow + (o.begin * g.sw + kw - g.pad_left) * C;
        const T* s = crow + o.begin * K + kw * C;
        const std::size_t cnt = o.end - o.begin, dstep = g.sw * C;
        if (C == 1) {
          for (std::size_t i = 0; i < cnt; ++i) d[i * dstep] += s[i * K];
        } else {
          for (std::size_t i = 0; i < cnt; ++i) add_vec(d + i * dstep, s + i * K, C);
        }
      }
    }
  }
}

// col2im for one channel and horizontal stride 1 (a first convolution layer): each dx
// element is accumulated in a register over all (kh, kw) that read it, then stored once;
// that is half the memory operations of col2im_rows, whose scalar read-add-write per
// column entry bounds it at one entry per cycle. KW_ > 0 fixes the kernel width.
template <std::size_t KW_, class T>
void col2im_c1s1_rows(const T* cols, const conv_geometry& g, T* dx, std::size_t r0,
                      std::size_t r1) {
  constexpr std::size_t max_kh = 16;  // the caller guarantees kh <= max_kh
  const std::size_t KW = KW_ ? KW_ : g.kw, K = g.kh * KW;
  const std::size_t pad = g.pad_left;
  // Pixels whose every kw reads an existing output: iw + pad - kw in [0, ow) for all kw.
  const std::size_t in_b = std::min(g.w, KW - 1 > pad ? KW - 1 - pad : 0);
  const std::size_t in_e = std::max(in_b, std::min(g.w, g.ow > pad ? g.ow - pad : 0));
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.h, ih = r % g.h;
    T* drow = dx + r * g.w;
    // Column rows (one per valid kh): entry (iw, kw) is at row[(iw + pad - kw) * K + kw].
    const T* rows[max_kh];
    std::size_t nk = 0;
    for (std::size_t kh = 0; kh < g.kh; ++kh) {
      const std::size_t p = ih + g.pad_top;
      if (p < kh || (p - kh) % g.sh != 0) continue;
      const std::size_t oh = (p - kh) / g.sh;
      if (oh >= g.oh) continue;
      rows[nk++] = cols + (n * g.oh + oh) * g.ow * K + kh * KW;
    }
    auto edge = [&](std::size_t iw) {
      T acc = 0;
      for (std::size_t k = 0; k < nk; ++k) {
        for (std::size_t kw = 0; kw < KW; ++kw) {
          if (iw + pad < kw || iw + pad - kw >= g.ow) continue;
          acc += rows[k][(iw + pad - kw) * K + kw];
        }
      }
      drow[iw] = acc;
    };
    for (std::size_t iw = 0; iw < in_b; ++iw) edge(iw);
    // Eight pixels at a time: eight independent accumulators hide the latency of the
    // floating-point adds, which a single running sum per pixel would serialise.
    constexpr std::size_t P = 8;
    std::size_t iw = in_b;
    for (; iw + P <= in_e; iw += P) {
      T acc[P] = {};
      for (std::size_t k = 0; k < nk; ++k) {
        for (std::size_t kw = 0; kw < KW; ++kw) {
          const T* s = rows[k] + (iw + pad - kw) * K + kw;
          for (std::size_t j = 0; j < P; ++j) acc[j] += s[j * K];
        }
      }
      for (std::size_t j = 0; j < P; ++j) drow[iw + j] = acc[j];
    }
    for (; iw < in_e; ++iw) {
      T acc = 0;
      for (std::size_t k = 0; k < nk; ++k) {
        for (std::size_t kw = 0; kw < KW; ++kw) acc += rows[k][(iw + pad - kw) * K + kw];
      }
      drow[iw] = acc;
    }
    for (std::size_t iw = in_e; iw < g.w; ++iw) edge(iw);
  }
}

// [begin, end) of the input positions a window covers, clipped to [0, in).
struct span {
  std::size_t begin, end;
};
inline span window_span(std::size_t o, std::size_t s, std::size_t pad, std::size_t k,
                        std::size_t in) {
  const std::size_t start = o * s;  // in padded coordinates
  const std::size_t b = start > pad ? start - pad : 0;
  const std::size_t e = std::min(in, start + k > pad ? start + k - pad : 0);
  return {std::min(b, e), e};
}

// Incrementally tracked [lo, hi) of the outputs whose window contains input position i,
// for i = 0, 1, 2, ... (both bounds only grow, so a sweep costs O(in + out) in total).
struct covering {
  std::size_t lo = 0, hi = 0;
  void advance(std::size_t i, std::size_t s, std::size_t pad, std::size_t k, std::size_t out) {
    const std::size_t p = i + pad;
    while (lo < out && lo * s + k <= p) ++lo;
    while (hi < out && hi * s <= p) ++hi;
  }
};

alignas(64) inline constexpr std::int32_t lane_iota[64] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
    44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};

// xsimd batches of float and int32 have the same lane count on every x86/ARM target,
// which the argmax bookkeeping relies on; elsewhere the scalar loops run.
template <class T>
inline constexpr bool simd_pool_v =
    std::is_same_v<T, float>&& xsimd::batch<float>::size ==
        xsimd::batch<std::int32_t>::size&& xsimd::batch<float>::size <= 64 &&
    xsimd::batch<float>::size > 1;

// Max (with argmax when Arg) or average pooling of output rows [r0, r1). The kind is a
// template argument so that the inner loops carry no per-element branch on it.
template <bool Max, bool Arg, class T>
void pool_forward_rows(const T* x, const pool_geometry& g, T* y, std::int32_t* am, std::size_t r0,
                       std::size_t r1) {
  const std::size_t C = g.c;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.oh, oh = r % g.oh;
    const span hs = window_span(oh, g.sh, g.pad_top, g.ph, g.h);
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      const span ws = window_span(ow, g.sw, g.pad_left, g.pw, g.w);
      const std::size_t out = (r * g.ow + ow) * C;
      const std::size_t count = (hs.end - hs.begin) * (ws.end - ws.begin);
      if (count == 0) {
        // A window wholly inside the padding (only for inconsistent geometries).
        std::fill_n(y + out, C, T(0));
        if constexpr (Arg) std::fill_n(am + out, C, std::int32_t(-1));
        continue;
      }
      const std::size_t first = ((n * g.h + hs.begin) * g.w + ws.begin) * C;
      std::size_t c = 0;
      if constexpr (simd_pool_v<T>) {
        using B = xsimd::batch<float>;
        using I = xsimd::batch<std::int32_t>;
        constexpr std::size_t L = B::size;
        const I iota = I::load_aligned(lane_iota);
        for (; c + L <= C; c += L) {
          if constexpr (Max) {
            B best = B::load_unaligned(x + first + c);
            B bidx = xsimd::bitwise_cast<B>(I(static_cast<std::int32_t>(first + c)) + iota);
            for (std::size_t h = hs.begin; h < hs.end; ++h) {
              for (std::size_t w = ws.begin; w < ws.end; ++w) {
                const std::size_t at = ((n * g.h + h) * g.w + w) * C + c;
                const B v = B::load_unaligned(x + at);
                // Strictly greater: the first maximum in window order wins ties.
                const auto gt = v > best;
                best = xsimd::select(gt, v, best);
                if constexpr (Arg) {
                  const B cand = xsimd::bitwise_cast<B>(I(static_cast<std::int32_t>(at)) + iota);
                  bidx = xsimd::select(gt, cand, bidx);
                }
              }
            }
            best.store_unaligned(y + out + c);
            if constexpr (Arg) xsimd::bitwise_cast<I>(bidx).store_unaligned(am + out + c);
          } else {
            B sum(0.f);
            for (std::size_t h = hs.begin; h < hs.end; ++h) {
              for (std::size_t w = ws.begin; w < ws.end; ++w) {
                sum += B::load_unaligned(x + ((n * g.h + h) * g.w + w) * C + c);
              }
            }
            (sum / B(static_cast<float>(count))).store_unaligned(y + out + c);
          }
        }
      }
      for (; c < C; ++c) {
        if constexpr (Max) {
          T best = x[first + c];
          std::size_t bidx = first + c;
          for (std::size_t h = hs.begin; h < hs.end; ++h) {
            for (std::size_t w = ws.begin; w < ws.end; ++w) {
              const std::size_t at = ((n * g.h + h) * g.w + w) * C + c;
              if (x[at] > best) {
                best = x[at];
                bidx = at;
              }
            }
          }
          y[out + c] = best;
          if constexpr (Arg) am[out + c] = static_cast<std::int32_t>(bidx);
        } else {
          T sum = 0;
          for (std::size_t h = hs.begin; h < hs.end; ++h) {
            for (std::size_t w = ws.begin; w < ws.end; ++w) {
              sum += x[((n * g.h + h) * g.w + w) * C + c];
            }
          }
          y[out + c] = sum / static_cast<T>(count);
        }
      }
    }
  }
}

template <bool Max, class T>
void pool_backward_rows(const T* dy, const std::int32_t* am, const pool_geometry& g, T* dx,
                        std::size_t r0, std::size_t r1) {
  const std::size_t C = g.c;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.h, h = r % g.h;
    T* drow = dx + r * g.w * C;
    covering oh;
    oh.advance(h, g.sh, g.pad_top, g.ph, g.oh);
    if (oh.lo >= oh.hi) {
      std::fill_n(drow, g.w * C, T(0));
      continue;
    }
    covering ow;
    for (std::size_t w = 0; w < g.w; ++w) {
      ow.advance(w, g.sw, g.pad_left, g.pw, g.ow);
      T* d = drow + w * C;
      const auto me = static_cast<std::int32_t>((r * g.w + w) * C);
      std::size_t c = 0;
      if constexpr (simd_pool_v<T>) {
        using B = xsimd::batch<float>;
        using I = xsimd::batch<std::int32_t>;
        constexpr std::size_t L = B::size;
        const I iota = I::load_aligned(lane_iota);
        for (; c + L <= C; c += L) {
          B acc(0.f);
          const I mine = I(me + static_cast<std::int32_t>(c)) + iota;
          for (std::size_t i = oh.lo; i < oh.hi; ++i) {
            const span hs = Max ? span{0, 0} : window_span(i, g.sh, g.pad_top, g.ph, g.h);
            const std::size_t hc = hs.end - hs.begin;
            for (std::size_t j = ow.lo; j < ow.hi; ++j) {
              const std::size_t o = ((n * g.oh + i) * g.ow + j) * C + c;
              const B v = B::load_unaligned(dy + o);
              if constexpr (Max) {
                const auto hit = I::load_unaligned(am + o) == mine;
                acc += xsimd::bitwise_cast<B>(xsimd::select(hit, xsimd::bitwise_cast<I>(v), I(0)));
              } else {
                const span ws = window_span(j, g.sw, g.pad_left, g.pw, g.w);
                acc += v / B(static_cast<float>(hc * (ws.end - ws.begin)));
              }
            }
          }
          acc.store_unaligned(d + c);
        }
      }
      for (; c < C; ++c) {
        T acc = 0;
        for (std::size_t i = oh.lo; i < oh.hi; ++i) {
          const span hs = Max ? span{0, 0} : window_span(i, g.sh, g.pad_top, g.ph, g.h);
          for (std::size_t j = ow.lo; j < ow.hi; ++j) {
            const std::size_t o = ((n * g.oh + i) * g.ow + j) * C + c;
            if constexpr (Max) {
              if (am[o] == me + static_cast<std::int32_t>(c)) acc += dy[o];
            } else {
              const span ws = window_span(j, g.sw, g.pad_left, g.pw, g.w);
              acc += dy[o] / static_cast<T>((hs.end - hs.begin) * (ws.end - ws.begin));
            }
          }
        }
        d[c] = acc;
      }
    }
  }
}

}  // namespace detail::nn

template <>
struct nn_backend_for<Device<CPU>> {
  template <class T>
  using buffer = backend::cpu::host_buffer<T>;

  template <class T>
  static void im2col(const buffer<T>& x, const conv_geometry& g, buffer<T>& cols) {
    namespace nn = detail::nn;
    nn::check_conv(g, x.size(), cols.size(), "im2col");
    const std::size_t rows = g.n * g.oh;
    if (rows * g.ow == 0) return;
    const nn::interior iw = nn::interior_range(g.w, g.kw, g.sw, g.pad_left, g.ow);
    const T* px = x.data();
    T* pc = cols.data();
    const std::size_t grain = nn::grain_for(g.ow * g.kh * g.kw * g.c);
    nn::dispatch_run(g.kw * g.c, [&](auto run) {
      constexpr std::size_t R = decltype(run)::value;
      backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
        nn::im2col_rows<R>(px, g, iw, pc, b, e);
      });
    });
  }

  template <class T>
  static void col2im(const buffer<T>& cols, const conv_geometry& g, buffer<T>& dx) {
    namespace nn = detail::nn;
    nn::check_conv(g, dx.size(), cols.size(), "col2im");
    const std::size_t rows = g.n * g.h;
    if (rows * g.w * g.c == 0) return;
    // The ow range of each kw is the same for every row: tabulate it (on the stack; very
    // wide kernels recompute it instead).
    constexpr std::size_t max_tab = 32;
    nn::span_of_outputs tab[max_tab];
    const bool tabulated = g.kw <= max_tab;
    if (tabulated) {
      for (std::size_t kw = 0; kw < g.kw; ++kw) tab[kw] = nn::outputs_reading(kw, g);
    }
    const T* pc = cols.data();
    T* pd = dx.data();
    const std::size_t grain = nn::grain_for(g.w * g.c * g.kh * g.kw);
    if (g.c == 1 && g.sw == 1 && g.kh <= 16) {
      auto run = [&](auto kw) {
        backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
          nn::col2im_c1s1_rows<decltype(kw)::value>(pc, g, pd, b, e);
        });
      };
      if (g.kw == 3) {
        run(std::integral_constant<std::size_t, 3>{});
      } else {
        run(std::integral_constant<std::size_t, 0>{});
      }
      return;
    }
    backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      nn::col2im_rows(pc, g, tabulated ? tab : nullptr, pd, b, e);
    });
  }

  template <class T>
  static void pool2d_forward(pool_kind kind, const buffer<T>& x, const pool_geometry& g,
                             buffer<T>& y, buffer<std::int32_t>* argmax) {
    namespace nn = detail::nn;
    std::int32_t* am = kind == pool_kind::max && argmax ? argmax->data() : nullptr;
    const std::size_t am_size = argmax ? argmax->size() : 0;
    nn::check_pool(g, x.size(), y.size(), am ? &am_size : nullptr, "pool2d_forward");
    const std::size_t rows = g.n * g.oh;
    if (rows * g.ow * g.c == 0) return;
    const T* px = x.data();
    T* py = y.data();
    const std::size_t grain = nn::grain_for(g.ow * g.c * g.ph * g.pw);
    auto run = [&](auto max, auto arg) {
      backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
        nn::pool_forward_rows<decltype(max)::value, decltype(arg)::value>(px, g, py, am, b, e);
      });
    };
    if (kind == pool_kind::average) {
      run(std::false_type{}, std::false_type{});
    } else if (am) {
      run(std::true_type{}, std::true_type{});
    } else {
      run(std::true_type{}, std::false_type{});
    }
  }

  template <class T>
  static void pool2d_backward(pool_kind kind, const buffer<T>& dy,
                              const buffer<std::int32_t>* argmax, const pool_geometry& g,
                              buffer<T>& dx) {
    namespace nn = detail::nn;
    nn::require(kind != pool_kind::max || argmax != nullptr, "pool2d_backward",
                "max pooling needs the argmax of the forward pass");
    const std::size_t am_size = argmax ? argmax->size() : 0;
    nn::check_pool(g, dx.size(), dy.size(), kind == pool_kind::max ? &am_size : nullptr,
                   "pool2d_backward");
    const std::size_t rows = g.n * g.h;
    if (rows * g.w * g.c == 0) return;
    const T* pdy = dy.data();
    const std::int32_t* am = kind == pool_kind::max ? argmax->data() : nullptr;
    T* pdx = dx.data();
    // Each dx element visits about (ph/sh)*(pw/sw) windows.
    const std::size_t visits = ((g.ph + g.sh - 1) / g.sh) * ((g.pw + g.sw - 1) / g.sw);
    const std::size_t grain = nn::grain_for(g.w * g.c * visits);
    auto run = [&](auto max) {
      backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
        nn::pool_backward_rows<decltype(max)::value>(pdy, am, g, pdx, b, e);
      });
    };
    if (kind == pool_kind::max) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  }

  /// dst row r = src row index[r]; an index outside the rows of src gives a zero row (the
  /// OpenCL backend cannot report it without a host round trip, so neither backend does).
  template <class T>
  static void gather_rows(const buffer<T>& src, std::size_t row_len,
                          const buffer<std::int32_t>& index, std::size_t count, buffer<T>& dst) {
    namespace nn = detail::nn;
    nn::check_rows("gather_rows", "index", index.size(), dst.size(), count, row_len);
    if (count * row_len == 0) return;
    const std::size_t src_rows = src.size() / row_len;
    const T* s = src.data();
    const std::int32_t* idx = index.data();
    T* d = dst.data();
    backend::cpu::parallel_for(count, nn::grain_for(row_len), [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        const std::int32_t i = idx[r];
        if (i < 0 || static_cast<std::size_t>(i) >= src_rows) {
          std::fill_n(d + r * row_len, row_len, T(0));
        } else {
          std::memcpy(d + r * row_len, s + static_cast<std::size_t>(i) * row_len,
                      row_len * sizeof(T));
        }
      }
    });
  }

  template <class T>
  static void one_hot(const buffer<std::int32_t>& labels, std::size_t count, std::size_t classes,
                      buffer<T>& dst) {
    namespace nn = detail::nn;
    nn::check_rows("one_hot", "label", labels.size(), dst.size(), count, classes);
    if (count * classes == 0) return;
    const std::int32_t* l = labels.data();
    T* d = dst.data();
    backend::cpu::parallel_for(count, nn::grain_for(classes), [&](std::size_t b, std::size_t e) {
      std::fill(d + b * classes, d + e * classes, T(0));
      for (std::size_t r = b; r < e; ++r) {
        if (l[r] >= 0 && static_cast<std::size_t>(l[r]) < classes) {
          d[r * classes + static_cast<std::size_t>(l[r])] = T(1);
        }
      }
    });
  }

  /// one_hot that also records out-of-range labels in status[0] (smallest negative) and
  /// status[1] (largest >= classes), as the interface describes.
  template <class T>
  static void one_hot(const buffer<std::int32_t>& labels, std::size_t count, std::size_t classes,
                      buffer<T>& dst, buffer<std::int32_t>& status) {
    namespace nn = detail::nn;
    nn::check_label_status("one_hot", status.size());
    one_hot(labels, count, classes, dst);
    if (count * classes == 0) return;
    // A serial pass over the labels: O(count) next to the O(count * classes) fill.
    record_label_range(labels.data(), count, classes, status.data()[0], status.data()[1]);
  }
};

}  // namespace locus
