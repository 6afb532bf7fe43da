// The neural-network kernels: im2col, col2im, 2-D pooling (forward and backward),
// gather_rows and one_hot, in OpenCL C 1.2, one work-item per output element.
//
// Every kernel writes each output element from exactly one work-item and reads only, so
// no kernel needs floating-point atomics (OpenCL 1.2 has none) and results do not depend
// on scheduling (the checked one_hot's label record uses integer atomic_min/atomic_max,
// whose result is order-independent):
//  * col2im is the gather form of the adjoint of im2col: a dx element sums the (at most
//    KH*KW) column entries that read it, found by inverting oh*sh + kh - pad = h.
//  * pooling backward likewise gathers, for each dx element, the windows that contain it
//    (max: those whose argmax is this element's flat index), so overlapping windows
//    (stride < window) are handled like any other.
// Index arithmetic runs in IDX: uint when every buffer of the call has fewer than 2^32
// elements (64-bit division is several times slower on most GPUs), ulong otherwise.
// Spatial coordinates are int, because padding makes them negative.
#pragma once

#include <string>

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

inline const char* nn_source() {
  return R"CLC(
// [begin, end) of the input positions of window o, clipped to [0, in).
inline void locus_window(uint o, uint s, uint pad, uint k, uint in, uint* b, uint* e) {
  const int start = (int)(o * s) - (int)pad;
  *b = (uint)max(start, 0);
  *e = (uint)clamp(start + (int)k, 0, (int)in);
  if (*b > *e) *b = *e;
}

// [lo, hi) of the windows (outputs) along one axis that contain input position i.
inline void locus_covering(uint i, uint s, uint pad, uint k, uint out, uint* lo, uint* hi) {
  const uint p = i + pad;
  *lo = p >= k ? (p - k) / s + 1 : 0;
  *hi = min(out, p / s + 1);
}

__kernel void locus_im2col(__global const T* x, __global T* cols, IDX total, uint H, uint W,
                           uint C, uint KH, uint KW, uint SH, uint SW, uint PT, uint PL, uint OH,
                           uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const IDX K = (IDX)KH * KW * C;
  const IDX row = i / K;
  const uint k = (uint)(i - row * K);
  const uint c = k % C, kw = (k / C) % KW, kh = k / (C * KW);
  const uint ow = (uint)(row % OW);
  const IDX t = row / OW;
  const uint oh = (uint)(t % OH);
  const IDX n = t / OH;
  const int ih = (int)(oh * SH + kh) - (int)PT, iw = (int)(ow * SW + kw) - (int)PL;
  T v = (T)0;
  if (ih >= 0 && ih < (int)H && iw >= 0 && iw < (int)W) {
    v = x[((n * H + (uint)ih) * W + (uint)iw) * C + c];
  }
  cols[i] = v;
}

__kernel void locus_col2im(__global const T* cols, __global T* dx, IDX total, uint H, uint W,
                           uint C, uint KH, uint KW, uint SH, uint SW, uint PT, uint PL, uint OH,
                           uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint w = (uint)(t % W);
  t /= W;
  const uint h = (uint)(t % H);
  const IDX n = t / H;
  const IDX K = (IDX)KH * KW * C;
  const uint ph = h + PT, pw = w + PL;
  T acc = (T)0;
  // kh only up to ph: larger ones would need a negative output row.
  for (uint kh = 0; kh < KH && kh <= ph; ++kh) {
    if ((ph - kh) % SH) continue;
    const uint oh = (ph - kh) / SH;
    if (oh >= OH) continue;
    for (uint kw = 0; kw < KW && kw <= pw; ++kw) {
      if ((pw - kw) % SW) continue;
      const uint ow = (pw - kw) / SW;
      if (ow >= OW) continue;
      acc += cols[((n * OH + oh) * OW + ow) * K + (kh * KW + kw) * C + c];
    }
  }
  dx[i] = acc;
}

// Max pooling of output element i; the first maximum (strict >, window in row-major
// order) wins ties, like the host backend. A window wholly in the padding (only possible
// with an inconsistent geometry) gives 0 and index -1.
inline T locus_max_window(__global const T* x, IDX i, uint H, uint W, uint C, uint PH, uint PW,
                          uint SH, uint SW, uint PT, uint PL, uint OH, uint OW, int* arg) {
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint ow = (uint)(t % OW);
  t /= OW;
  const uint oh = (uint)(t % OH);
  const IDX n = t / OH;
  uint h0, h1, w0, w1;
  locus_window(oh, SH, PT, PH, H, &h0, &h1);
  locus_window(ow, SW, PL, PW, W, &w0, &w1);
  if (h0 == h1 || w0 == w1) {
    *arg = -1;
    return (T)0;
  }
  IDX best_at = ((n * H + h0) * W + w0) * C + c;
  T best = x[best_at];
  for (uint h = h0; h < h1; ++h) {
    for (uint w = w0; w < w1; ++w) {
      const IDX at = ((n * H + h) * W + w) * C + c;
      const T v = x[at];
      if (v > best) {
        best = v;
        best_at = at;
      }
    }
  }
  *arg = (int)best_at;
  return best;
}

__kernel void locus_pool_fwd_max(__global const T* x, __global T* y, __global int* argmax,
                                 IDX total, uint H, uint W, uint C, uint PH, uint PW, uint SH,
                                 uint SW, uint PT, uint PL, uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  int arg;
  y[i] = locus_max_window(x, i, H, W, C, PH, PW, SH, SW, PT, PL, OH, OW, &arg);
  argmax[i] = arg;
}

__kernel void locus_pool_fwd_max_noarg(__global const T* x, __global T* y, IDX total, uint H,
                                       uint W, uint C, uint PH, uint PW, uint SH, uint SW,
                                       uint PT, uint PL, uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  int arg;
  y[i] = locus_max_window(x, i, H, W, C, PH, PW, SH, SW, PT, PL, OH, OW, &arg);
}

// Average over the in-bounds elements of the window (Keras 'same' semantics).
__kernel void locus_pool_fwd_avg(__global const T* x, __global T* y, IDX total, uint H, uint W,
                                 uint C, uint PH, uint PW, uint SH, uint SW, uint PT, uint PL,
                                 uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint ow = (uint)(t % OW);
  t /= OW;
  const uint oh = (uint)(t % OH);
  const IDX n = t / OH;
  uint h0, h1, w0, w1;
  locus_window(oh, SH, PT, PH, H, &h0, &h1);
  locus_window(ow, SW, PL, PW, W, &w0, &w1);
  T sum = (T)0;
  for (uint h = h0; h < h1; ++h) {
    for (uint w = w0; w < w1; ++w) sum += x[((n * H + h) * W + w) * C + c];
  }
  const uint count = (h1 - h0) * (w1 - w0);
  y[i] = count ? sum / (T)count : (T)0;
}

__kernel void locus_pool_bwd_max(__global const T* dy, __global const int* argmax,
                                 __global T* dx, IDX total, uint H, uint W, uint C, uint PH,
                                 uint PW, uint SH, uint SW, uint PT, uint PL, uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint w = (uint)(t % W);
  t /= W;
  const uint h = (uint)(t % H);
  const IDX n = t / H;
  uint oh0, oh1, ow0, ow1;
  locus_covering(h, SH, PT, PH, OH, &oh0, &oh1);
  locus_covering(w, SW, PL, PW, OW, &ow0, &ow1);
  T acc = (T)0;
  for (uint oh = oh0; oh < oh1; ++oh) {
    for (uint ow = ow0; ow < ow1; ++ow) {
      const IDX o = ((n * OH + oh) * OW + ow) * C + c;
      if (argmax[o] == (int)i) acc += dy[o];
    }
  }
  dx[i] = acc;
}

__kernel void locus_pool_bwd_avg(__global const T* dy, __global T* dx, IDX total, uint H, uint W,
                                 uint C, uint PH, uint PW, uint SH, uint SW, uint PT, uint PL,
                                 uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint w = (uint)(t % W);
  t /= W;
  const uint h = (uint)(t % H);
  const IDX n = t / H;
  uint oh0, oh1, ow0, ow1;
  locus_covering(h, SH, PT, PH, OH, &oh0, &oh1);
  locus_covering(w, SW, PL, PW, OW, &ow0, &ow1);
  T acc = (T)0;
  for (uint oh = oh0; oh < oh1; ++oh) {
    uint h0, h1;
    locus_window(oh, SH, PT, PH, H, &h0, &h1);
    for (uint ow = ow0; ow < ow1; ++ow) {
      uint w0, w1;
      locus_window(ow, SW, PL, PW, W, &w0, &w1);
      acc += dy[((n * OH + oh) * OW + ow) * C + c] / (T)((h1 - h0) * (w1 - w0));
    }
  }
  dx[i] = acc;
}

// An index outside [0, src_rows) gives a zero row: reporting it would need a round trip.
__kernel void locus_gather_rows(__global const T* src, IDX src_rows, __global const int* index,
                                __global T* dst, IDX row_len, IDX total) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const IDX r = i / row_len, j = i - r * row_len;
  const int s = index[r];
  dst[i] = s >= 0 && (IDX)s < src_rows ? src[(IDX)s * row_len + j] : (T)0;
}

__kernel void locus_one_hot(__global const int* labels, __global T* dst, IDX classes, IDX total) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const IDX r = i / classes, k = i - r * classes;
  const int l = labels[r];
  dst[i] = l >= 0 && (IDX)l == k ? (T)1 : (T)0;
}

// one_hot that also records out-of-range labels: status[0] = min of the negative ones,
// status[1] = max of those >= classes (32-bit integer atomics, core since OpenCL 1.1). Only
// the work-item of column 0 of a bad row touches the status, so a valid batch costs no
// atomic at all and a bad one at most one per row. Nothing is read back here.
__kernel void locus_one_hot_checked(__global const int* labels, __global T* dst,
                                    volatile __global int* status, IDX classes, IDX total) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const IDX r = i / classes, k = i - r * classes;
  const int l = labels[r];
  const bool ok = l >= 0 && (IDX)l < classes;
  dst[i] = ok && (IDX)l == k ? (T)1 : (T)0;
  if (!ok && k == 0) {
    if (l < 0) {
      atomic_min(&status[0], l);
    } else {
      atomic_max(&status[1], l);
    }
  }
}
)CLC";
}

/// The nn program for element type T; `wide` selects 64-bit index arithmetic.
template <class T>
const program_source& nn_program(bool wide) {
  static const program_source narrow_src(std::string("locus_nn<") + cl_type_name<T>() + ">",
                                         type_prelude<T>() + "#define IDX uint\n" + nn_source(),
                                         base_options());
  static const program_source wide_src(
      std::string("locus_nn<") + cl_type_name<T>() + ", 64-bit index>",
      type_prelude<T>() + "#define IDX ulong\n" + nn_source(), base_options());
  return wide ? wide_src : narrow_src;
}

// ---- strided block copy (Concatenate, ZeroPadding2D and their gradients) -----------------
//
// One work-item per element of a [d0, d1, d2] block: dst[to(i, j, k)] = src[from(i, j, k)].
// The host has checked that the destination layout names each element once, so no two
// work-items write one element. A program of its own (not part of nn_source): it is small
// and has nothing to share with the convolution and pooling kernels.

inline const char* copy_block_source() {
  return R"CLC(
__kernel void locus_copy_block(__global const T* src, IDX src_offset, IDX s0, IDX s1, IDX s2,
                               __global T* dst, IDX dst_offset, IDX t0, IDX t1, IDX t2, IDX d1,
                               IDX d2, IDX total) {
  const IDX g = (IDX)get_global_id(0);
  if (g >= total) return;
  const IDX k = g % d2, r = g / d2;
  const IDX j = r % d1, i = r / d1;
  dst[dst_offset + i * t0 + j * t1 + k * t2] = src[src_offset + i * s0 + j * s1 + k * s2];
}
)CLC";
}

/// The block-copy program for element type T; `wide` selects 64-bit index arithmetic.
template <class T>
const program_source& copy_block_program(bool wide) {
  static const program_source narrow_src(
      std::string("locus_copy_block<") + cl_type_name<T>() + ">",
      type_prelude<T>() + "#define IDX uint\n" + copy_block_source(), base_options());
  static const program_source wide_src(
      std::string("locus_copy_block<") + cl_type_name<T>() + ", 64-bit index>",
      type_prelude<T>() + "#define IDX ulong\n" + copy_block_source(), base_options());
  return wide ? wide_src : narrow_src;
}

// ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding) --
//
// One work-item per output element, reads only, no atomics, as above:
//  * locus_depthwise_fwd         an output element (n, oh, ow, c*M + m) sums its window.
//  * locus_depthwise_bwd_input   a dx element gathers the (kh, kw) positions whose output
//                                exists (as col2im), and over m.
//  * locus_depthwise_bwd_kernel  a (part, kernel element) sums dy * x over the output rows
//                                (n, oh) of its part; the host adds the parts with the row
//                                reduction (one part writes the gradient directly).
//  * locus_scatter_add_rows      a (part, dst row v, column d) sums the src rows of its part
//                                of the index list whose index is v; parts as above.
// The parts are fixed by the shapes, so every sum runs in the same order on every call.
inline const char* depthwise_scatter_source() {
  return R"CLC(
// [begin, end) of the input positions of window o, clipped to [0, in).
inline void locus_dw_window(uint o, uint s, uint pad, uint k, uint in, uint* b, uint* e) {
  const int start = (int)(o * s) - (int)pad;
  *b = (uint)max(start, 0);
  *e = (uint)clamp(start + (int)k, 0, (int)in);
  if (*b > *e) *b = *e;
}

__kernel void locus_depthwise_fwd(__global const T* x, __global const T* k, __global T* y,
                                  IDX total, uint H, uint W, uint C, uint M, uint KH, uint KW,
                                  uint SH, uint SW, uint PT, uint PL, uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint CM = C * M;
  const uint j = (uint)(i % CM);
  IDX t = i / CM;
  const uint ow = (uint)(t % OW);
  t /= OW;
  const uint oh = (uint)(t % OH);
  const IDX n = t / OH;
  const uint c = j / M;
  uint h0, h1, w0, w1;
  locus_dw_window(oh, SH, PT, KH, H, &h0, &h1);
  locus_dw_window(ow, SW, PL, KW, W, &w0, &w1);
  T acc = (T)0;
  for (uint h = h0; h < h1; ++h) {
    const uint kh = h + PT - oh * SH;
    for (uint w = w0; w < w1; ++w) {
      const uint kw = w + PL - ow * SW;
      acc += x[((n * H + h) * W + w) * C + c] * k[(kh * KW + kw) * CM + j];
    }
  }
  y[i] = acc;
}

__kernel void locus_depthwise_bwd_input(__global const T* dy, __global const T* k, __global T* dx,
                                        IDX total, uint H, uint W, uint C, uint M, uint KH,
                                        uint KW, uint SH, uint SW, uint PT, uint PL, uint OH,
                                        uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint c = (uint)(i % C);
  IDX t = i / C;
  const uint w = (uint)(t % W);
  t /= W;
  const uint h = (uint)(t % H);
  const IDX n = t / H;
  const uint CM = C * M, ph = h + PT, pw = w + PL;
  T acc = (T)0;
  // kh only up to ph: larger ones would need a negative output row.
  for (uint kh = 0; kh < KH && kh <= ph; ++kh) {
    if ((ph - kh) % SH) continue;
    const uint oh = (ph - kh) / SH;
    if (oh >= OH) continue;
    for (uint kw = 0; kw < KW && kw <= pw; ++kw) {
      if ((pw - kw) % SW) continue;
      const uint ow = (pw - kw) / SW;
      if (ow >= OW) continue;
      const IDX o = ((n * OH + oh) * OW + ow) * CM + c * M;
      const uint kb = (kh * KW + kw) * CM + c * M;
      T s = (T)0;
      for (uint m = 0; m < M; ++m) s += dy[o + m] * k[kb + m];
      acc += s;
    }
  }
  dx[i] = acc;
}

// part[p, e] for kernel element e = (kh, kw, c, m): the sum over the output rows r = (n, oh)
// in [p * per_part, (p + 1) * per_part) and every ow of dy * the input element it read.
__kernel void locus_depthwise_bwd_kernel(__global const T* x, __global const T* dy,
                                         __global T* part, IDX total, IDX rows, IDX per_part,
                                         uint H, uint W, uint C, uint M, uint KH, uint KW,
                                         uint SH, uint SW, uint PT, uint PL, uint OH, uint OW) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const uint CM = C * M;
  const IDX E = (IDX)KH * KW * CM;
  const IDX p = i / E;
  const uint e = (uint)(i - p * E);
  const uint j = e % CM, pos = e / CM;
  const uint kh = pos / KW, kw = pos % KW, c = j / M;
  // The outputs ow whose input column ow*SW + kw - PL lies in [0, W).
  const uint ow0 = ((PL > kw ? PL - kw : 0) + SW - 1) / SW;
  const uint ow1 = W + PL > kw ? min(OW, (W + PL - kw - 1) / SW + 1) : 0;
  const IDX r0 = p * per_part, r1 = min(r0 + per_part, rows);
  T acc = (T)0;
  for (IDX r = r0; r < r1; ++r) {
    const uint oh = (uint)(r % OH);
    const IDX n = r / OH;
    const int ih = (int)(oh * SH + kh) - (int)PT;
    if (ih < 0 || ih >= (int)H) continue;
    const IDX xrow = (n * H + (uint)ih) * W;
    for (uint ow = ow0; ow < ow1; ++ow) {
      acc += x[(xrow + (ow * SW + kw - PL)) * C + c] * dy[(r * OW + ow) * CM + j];
    }
  }
  part[i] = acc;
}

// part[p, v, d]: the sum of src[r, d] over r in [p * per_part, (p + 1) * per_part) with
// index[r] == v. An index outside [0, rows) matches no v.
__kernel void locus_scatter_add_rows(__global const T* src, __global const int* index,
                                     __global T* part, IDX total, IDX dst_size, IDX row_len,
                                     IDX count, IDX per_part) {
  const IDX i = (IDX)get_global_id(0);
  if (i >= total) return;
  const IDX p = i / dst_size, e = i - p * dst_size;
  const IDX v = e / row_len, d = e - v * row_len;
  const IDX r0 = p * per_part, r1 = min(r0 + per_part, count);
  T acc = (T)0;
  for (IDX r = r0; r < r1; ++r) {
    const int s = index[r];
    if (s >= 0 && (IDX)s == v) acc += src[r * row_len + d];
  }
  part[i] = acc;
}
)CLC";
}

/// The depthwise/scatter program for a floating-point T; `wide` selects 64-bit index
/// arithmetic.
template <class T>
const program_source& depthwise_scatter_program(bool wide) {
  static const program_source narrow_src(
      std::string("locus_depthwise_scatter<") + cl_type_name<T>() + ">",
      type_prelude<T>() + "#define IDX uint\n" + depthwise_scatter_source(), base_options());
  static const program_source wide_src(
      std::string("locus_depthwise_scatter<") + cl_type_name<T>() + ", 64-bit index>",
      type_prelude<T>() + "#define IDX ulong\n" + depthwise_scatter_source(), base_options());
  return wide ? wide_src : narrow_src;
}

}  // namespace locus::backend::opencl::kernels
