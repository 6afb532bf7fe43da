// Reductions (sum, mean, max, min) and argmax over the middle axis of [outer, len, inner].
//
// inner > 1: one work-item per output, walking `len` with stride `inner`; neighbouring
//   work-items read neighbouring addresses, so the loads coalesce.
// inner == 1: work-groups reduce contiguous rows in local memory; a long row is split over
//   several work-groups (partials to a temporary, then a second pass) so that a full
//   reduction still fills the device.
// max/min use the same `a > b ? a : b` as the host backend, so NaN handling matches.
// Integer mean truncates (sum / len); floating mean multiplies by 1/len like the host.
#pragma once

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

template <class T>
const program_source& reduce_program() {
  static const program_source src(std::string("locus_reduce<") + cl_type_name<T>() + ">",
                                  type_prelude<T>() + R"CLC(
#define C_SUM(a, b) ((a) + (b))
#define C_MAX(a, b) ((a) > (b) ? (a) : (b))
#define C_MIN(a, b) ((a) < (b) ? (a) : (b))

inline T finish(T r, T scale, ulong divisor) {
#ifdef LOCUS_INT
  return divisor ? (T)(r / (T)divisor) : r;
#else
  return divisor ? (T)(r * scale) : r;
#endif
}

#define LOCUS_REDUCE(NAME, INIT, COMBINE)                                                      \
__kernel void locus_reduce_strided_##NAME(__global const T* src, ulong outer, ulong len,       \
                                          ulong inner, __global T* dst, T scale,               \
                                          ulong divisor) {                                     \
  const size_t j = get_global_id(0), o = get_global_id(1);                                     \
  if (j >= inner || o >= outer) return;                                                        \
  __global const T* p = src + o * len * inner + j;                                             \
  T acc = INIT;                                                                                \
  for (ulong k = 0; k < len; ++k) acc = COMBINE(acc, p[k * inner]);                            \
  dst[o * inner + j] = finish(acc, scale, divisor);                                            \
}                                                                                              \
__kernel void locus_reduce_rows_##NAME(__global const T* src, ulong len, ulong chunk,          \
                                       ulong groups_per_row, __global T* dst, T scale,         \
                                       ulong divisor, __local T* scratch) {                    \
  const size_t lid = get_local_id(0), wg = get_local_size(0), g = get_group_id(0);             \
  const ulong row = g / groups_per_row, c = g % groups_per_row;                                \
  const ulong begin = c * chunk;                                                               \
  const ulong end = min(begin + chunk, len);                                                   \
  __global const T* p = src + row * len;                                                       \
  T acc = INIT;                                                                                \
  for (ulong k = begin + lid; k < end; k += wg) acc = COMBINE(acc, p[k]);                      \
  scratch[lid] = acc;                                                                          \
  barrier(CLK_LOCAL_MEM_FENCE);                                                                \
  for (size_t s = wg / 2; s > 0; s >>= 1) {                                                    \
    if (lid < s) scratch[lid] = COMBINE(scratch[lid], scratch[lid + s]);                       \
    barrier(CLK_LOCAL_MEM_FENCE);                                                              \
  }                                                                                            \
  if (lid == 0) dst[g] = finish(scratch[0], scale, divisor);                                   \
}

LOCUS_REDUCE(sum, (T)0, C_SUM)
LOCUS_REDUCE(max, T_LOWEST, C_MAX)
LOCUS_REDUCE(min, T_MAX, C_MIN)

// argmax: the first index of the maximum (NumPy's rule, as the host backend).
__kernel void locus_argmax_strided(__global const T* src, ulong outer, ulong len, ulong inner,
                                   __global int* dst) {
  const size_t j = get_global_id(0), o = get_global_id(1);
  if (j >= inner || o >= outer) return;
  __global const T* p = src + o * len * inner + j;
  ulong best = 0;
  T bv = len ? p[0] : (T)0;
  for (ulong k = 1; k < len; ++k) {
    const T v = p[k * inner];
    if (v > bv) { bv = v; best = k; }
  }
  dst[o * inner + j] = (int)best;
}

__kernel void locus_argmax_rows(__global const T* src, ulong len, __global int* dst,
                                __local T* sv, __local int* si) {
  const size_t lid = get_local_id(0), wg = get_local_size(0), row = get_group_id(0);
  __global const T* p = src + row * len;
  // Each work-item scans an increasing subsequence, so strict '>' keeps its first maximum.
  int best = -1;
  T bv = (T)0;
  for (ulong k = lid; k < len; k += wg) {
    const T v = p[k];
    if (best < 0 || v > bv) { bv = v; best = (int)k; }
  }
  sv[lid] = bv;
  si[lid] = best;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (size_t s = wg / 2; s > 0; s >>= 1) {
    if (lid < s) {
      const int ia = si[lid], ib = si[lid + s];
      const T va = sv[lid], vb = sv[lid + s];
      // Take b when a is empty, b is larger, or equal with a smaller index.
      if (ib >= 0 && (ia < 0 || vb > va || (!(va > vb) && !(vb > va) && ib < ia))) {
        sv[lid] = vb;
        si[lid] = ib;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) dst[row] = si[0] < 0 ? 0 : si[0];
}
)CLC",
                                  base_options());
  return src;
}

}  // namespace locus::backend::opencl::kernels
