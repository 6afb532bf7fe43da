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
#include "../concepts.hpp"
#include "../nn_backend.hpp"
#include "backend.hpp"
#include "simd.hpp"
#include "thread_pool.hpp"

namespace locus {

namespace detail::nn {

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

// ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding) --
//
// The same rule as above, each output element produced by one task:
//  * depthwise forward   one task per output image row (n, oh); an output pixel's C*M
//                        channels accumulate the in-bounds window positions in (kh, kw)
//                        order, on xsimd batches across the channels (the contiguous axis).
//  * depthwise dx        a gather over input rows (n, h), like col2im: a dx pixel adds the
//                        (kh, kw) positions whose output exists, in (kh, kw) order.
//  * depthwise dkernel   one task per block of kernel elements (kh, kw, a block of whole
//                        channels): it sums over every output pixel in (n, oh, ow) order.
//  * scatter_add_rows    one task per block of destination rows: it scans the whole index
//                        list and adds the rows that fall in its block, in increasing r.
namespace detail::nn {

// d[j] += a[j] * b[j] for j < n, on xsimd batches.
template <class T>
inline void mul_add_vec(T* d, const T* a, const T* b, std::size_t n) {
  using B = backend::cpu::simd<T>;
  std::size_t j = 0;
  for (; j + B::size <= n; j += B::size) {
    (B::load_unaligned(d + j) + B::load_unaligned(a + j) * B::load_unaligned(b + j))
        .store_unaligned(d + j);
  }
  for (; j < n; ++j) d[j] += a[j] * b[j];
}

// d[j] += a * b[j] for j < n, on xsimd batches.
template <class T>
inline void scaled_add_vec(T* d, T a, const T* b, std::size_t n) {
  using B = backend::cpu::simd<T>;
  const B av(a);
  std::size_t j = 0;
  for (; j + B::size <= n; j += B::size) {
    (B::load_unaligned(d + j) + av * B::load_unaligned(b + j)).store_unaligned(d + j);
  }
  for (; j < n; ++j) d[j] += a * b[j];
}

// out[c*M + m] += xp[c] * kp[c*M + m] for c < C, m < M: one input pixel's contribution
// to an output pixel through one kernel position.
template <class T>
inline void depthwise_pixel(T* out, const T* xp, const T* kp, std::size_t C, std::size_t M) {
  if (M == 1) {
    mul_add_vec(out, xp, kp, C);
    return;
  }
  for (std::size_t c = 0; c < C; ++c) scaled_add_vec(out + c * M, xp[c], kp + c * M, M);
}

template <class T>
void depthwise_forward_rows(const T* x, const T* k, const conv_geometry& g, std::size_t M, T* y,
                            std::size_t r0, std::size_t r1) {
  const std::size_t C = g.c, CM = C * M;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.oh, oh = r % g.oh;
    const span hs = window_span(oh, g.sh, g.pad_top, g.kh, g.h);
    for (std::size_t ow = 0; ow < g.ow; ++ow) {
      T* out = y + (r * g.ow + ow) * CM;
      std::fill_n(out, CM, T(0));
      const span ws = window_span(ow, g.sw, g.pad_left, g.kw, g.w);
      for (std::size_t ih = hs.begin; ih < hs.end; ++ih) {
        const std::size_t kh = ih + g.pad_top - oh * g.sh;
        for (std::size_t iw = ws.begin; iw < ws.end; ++iw) {
          const std::size_t kw = iw + g.pad_left - ow * g.sw;
          depthwise_pixel(out, x + ((n * g.h + ih) * g.w + iw) * C, k + (kh * g.kw + kw) * CM, C,
                          M);
        }
      }
    }
  }
}

template <class T>
void depthwise_backward_input_rows(const T* dy, const T* k, const conv_geometry& g, std::size_t M,
                                   T* dx, std::size_t r0, std::size_t r1) {
  const std::size_t C = g.c, CM = C * M;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::size_t n = r / g.h, ph = r % g.h + g.pad_top;
    for (std::size_t w = 0; w < g.w; ++w) {
      T* d = dx + (r * g.w + w) * C;
      std::fill_n(d, C, T(0));
      const std::size_t pw = w + g.pad_left;
      // kh only up to ph: larger ones would need a negative output row.
      for (std::size_t kh = 0; kh < g.kh && kh <= ph; ++kh) {
        if ((ph - kh) % g.sh) continue;
        const std::size_t oh = (ph - kh) / g.sh;
        if (oh >= g.oh) continue;
        for (std::size_t kw = 0; kw < g.kw && kw <= pw; ++kw) {
          if ((pw - kw) % g.sw) continue;
          const std::size_t ow = (pw - kw) / g.sw;
          if (ow >= g.ow) continue;
          const T* dyp = dy + ((n * g.oh + oh) * g.ow + ow) * CM;
          const T* kp = k + (kh * g.kw + kw) * CM;
          if (M == 1) {
            mul_add_vec(d, dyp, kp, C);
          } else {
            for (std::size_t c = 0; c < C; ++c) {
              T s = 0;
              for (std::size_t m = 0; m < M; ++m) s += dyp[c * M + m] * kp[c * M + m];
              d[c] += s;
            }
          }
        }
      }
    }
  }
}

// Kernel elements per dkernel task: whole channels (a multiple of M), about 256 elements.
inline std::size_t depthwise_block(std::size_t M) {
  return M * std::max<std::size_t>(1, 256 / M);
}

// Tasks [t0, t1) of the kernel gradient; task t is kernel position t / blocks and the
// channel block t % blocks of it.
template <class T>
void depthwise_backward_kernel_tasks(const T* x, const T* dy, const conv_geometry& g, std::size_t M,
                                     T* dk, std::size_t t0, std::size_t t1) {
  const std::size_t C = g.c, CM = C * M, blk = depthwise_block(M);
  const std::size_t blocks = (CM + blk - 1) / blk;
  for (std::size_t t = t0; t < t1; ++t) {
    const std::size_t pos = t / blocks, j0 = (t % blocks) * blk, j1 = std::min(CM, j0 + blk);
    const std::size_t kh = pos / g.kw, kw = pos % g.kw;
    T* out = dk + pos * CM + j0;
    std::fill(out, out + (j1 - j0), T(0));
    const span_of_outputs ows = outputs_reading(kw, g);
    for (std::size_t r = 0; r < g.n * g.oh; ++r) {
      const std::size_t n = r / g.oh, oh = r % g.oh;
      const std::size_t ph = oh * g.sh + kh;  // the input row in padded coordinates
      if (ph < g.pad_top || ph - g.pad_top >= g.h) continue;
      const std::size_t ih = ph - g.pad_top;
      for (std::size_t ow = ows.begin; ow < ows.end; ++ow) {
        const T* xp = x + ((n * g.h + ih) * g.w + (ow * g.sw + kw - g.pad_left)) * C;
        const T* dyp = dy + (r * g.ow + ow) * CM + j0;
        if (M == 1) {
          mul_add_vec(out, xp + j0, dyp, j1 - j0);
        } else {
          for (std::size_t c = j0 / M; c < j1 / M; ++c)
            scaled_add_vec(out + (c * M - j0), xp[c], dyp + (c * M - j0), M);
        }
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

  // ---- strided block copy (Concatenate, ZeroPadding2D and their gradients) ---------------

  /// dst[to.at(i, j, k)] = src[from.at(i, j, k)] over a [d0, d1, d2] block (interface:
  /// nn_backend.hpp). One task per run of d2 elements: a memcpy when both sides are
  /// contiguous along the last axis (the layers lay their blocks out so), else a strided loop.
  template <class T>
  static void copy_block(const buffer<T>& src, const block_layout& from, buffer<T>& dst,
                         const block_layout& to, const block_extent& d) {
    const bool same = static_cast<const void*>(&src) == static_cast<const void*>(&dst);
    if (check_copy_block(src.size(), from, dst.size(), to, d, same) == 0) return;
    const T* s = src.data();
    T* o = dst.data();
    const std::size_t len = d[2];
    const bool contiguous = len == 1 || (from.stride[2] == 1 && to.stride[2] == 1);
    const auto rows = [&](std::size_t b, std::size_t e) {
      for (std::size_t r = b; r < e; ++r) {
        const std::size_t i = r / d[1], j = r % d[1];
        const T* sr = s + from.at(i, j, 0);
        T* dr = o + to.at(i, j, 0);
        if (contiguous) {
          std::memcpy(dr, sr, len * sizeof(T));
        } else {
          for (std::size_t k = 0; k < len; ++k) dr[k * to.stride[2]] = sr[k * from.stride[2]];
        }
      }
    };
    backend::cpu::parallel_for(d[0] * d[1], detail::nn::grain_for(len), rows);
  }

  // ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding)

  template <class T>
  static void depthwise_conv2d_forward(const buffer<T>& x, const buffer<T>& kernel,
                                       const conv_geometry& g, std::size_t multiplier,
                                       buffer<T>& y) {
    namespace nn = detail::nn;
    check_depthwise("depthwise_conv2d_forward", g, multiplier, x.size(), kernel.size(), y.size());
    const std::size_t rows = g.n * g.oh;
    if (rows * g.ow * g.c == 0) return;
    const T* px = x.data();
    const T* pk = kernel.data();
    T* py = y.data();
    const std::size_t grain = nn::grain_for(g.ow * g.c * multiplier * g.kh * g.kw);
    backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      nn::depthwise_forward_rows(px, pk, g, multiplier, py, b, e);
    });
  }

  template <class T>
  static void depthwise_conv2d_backward_input(const buffer<T>& dy, const buffer<T>& kernel,
                                              const conv_geometry& g, std::size_t multiplier,
                                              buffer<T>& dx) {
    namespace nn = detail::nn;
    check_depthwise("depthwise_conv2d_backward_input", g, multiplier, dx.size(), kernel.size(),
                    dy.size());
    const std::size_t rows = g.n * g.h;
    if (rows * g.w * g.c == 0) return;
    const T* pdy = dy.data();
    const T* pk = kernel.data();
    T* pdx = dx.data();
    const std::size_t grain = nn::grain_for(g.w * g.c * multiplier * g.kh * g.kw);
    backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      nn::depthwise_backward_input_rows(pdy, pk, g, multiplier, pdx, b, e);
    });
  }

  template <class T>
  static void depthwise_conv2d_backward_kernel(const buffer<T>& x, const buffer<T>& dy,
                                               const conv_geometry& g, std::size_t multiplier,
                                               buffer<T>& dkernel) {
    namespace nn = detail::nn;
    check_depthwise("depthwise_conv2d_backward_kernel", g, multiplier, x.size(), dkernel.size(),
                    dy.size());
    const std::size_t cm = g.c * multiplier;
    if (g.kh * g.kw * cm == 0) return;
    const std::size_t blk = nn::depthwise_block(multiplier);
    const std::size_t tasks = g.kh * g.kw * ((cm + blk - 1) / blk);
    const T* px = x.data();
    const T* pdy = dy.data();
    T* pdk = dkernel.data();
    const std::size_t grain = nn::grain_for(g.n * g.oh * g.ow * std::min(cm, blk));
    backend::cpu::parallel_for(tasks, grain, [&](std::size_t b, std::size_t e) {
      nn::depthwise_backward_kernel_tasks(px, pdy, g, multiplier, pdk, b, e);
    });
  }

  /// dst row v = sum of the src rows r with index[r] == v (interface: nn_backend.hpp).
  template <class T>
  static void scatter_add_rows(const buffer<T>& src, std::size_t row_len,
                               const buffer<std::int32_t>& index, std::size_t count,
                               std::size_t rows, buffer<T>& dst) {
    namespace nn = detail::nn;
    check_scatter_rows("scatter_add_rows", src.size(), row_len, index.size(), count, rows,
                       dst.size());
    if (rows * row_len == 0) return;
    const T* s = src.data();
    const std::int32_t* idx = index.data();
    T* d = dst.data();
    // parallel_for makes at most one chunk per thread, so the index list is scanned at
    // most num_threads() times.
    const std::size_t grain = nn::grain_for(row_len);
    backend::cpu::parallel_for(rows, grain, [&](std::size_t b, std::size_t e) {
      std::fill(d + b * row_len, d + e * row_len, T(0));
      for (std::size_t r = 0; r < count; ++r) {
        const std::int32_t i = idx[r];
        if (i < 0 || static_cast<std::size_t>(i) < b || static_cast<std::size_t>(i) >= e) continue;
        nn::add_vec(d + static_cast<std::size_t>(i) * row_len, s + r * row_len, row_len);
      }
    });
  }
};

// The seam, checked where the backend is defined (backend/concepts.hpp).
static_assert(
    NnBackend<nn_backend_for<Device<CPU>>, Device<CPU>>,
    "nn_backend_for<Device<CPU>> must provide what NnBackend (backend/concepts.hpp) requires");

}  // namespace locus
