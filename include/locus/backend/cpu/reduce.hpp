// Reductions over one axis of a tensor viewed as [outer, len, inner].
//
// Two layouts cover every axis: inner == 1 (the reduced axis is the last one, so each
// output is a contiguous SIMD dot-like loop), and inner > 1 (each output row accumulates
// `len` contiguous rows of `inner` elements, SIMD across inner). Work is split over outer
// rows, or over inner columns when there is a single outer row (a full reduction).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "simd.hpp"

#include "../backend.hpp"
#include "thread_pool.hpp"

namespace locus::backend::cpu {

namespace detail {

template <class T>
T identity(reduce_op op) {
  switch (op) {
    case reduce_op::max:
      return std::numeric_limits<T>::lowest();
    case reduce_op::min:
      return std::numeric_limits<T>::max();
    default:
      return T(0);
  }
}

template <class V>
V combine(reduce_op op, const V& a, const V& b) {
  if constexpr (std::is_arithmetic_v<V>) {
    switch (op) {
      case reduce_op::max:
        return a > b ? a : b;
      case reduce_op::min:
        return a < b ? a : b;
      default:
        return a + b;
    }
  } else {
    switch (op) {
      case reduce_op::max:
        return xsimd::max(a, b);
      case reduce_op::min:
        return xsimd::min(a, b);
      default:
        return a + b;
    }
  }
}

// Reduces one contiguous run of n elements. Sums accumulate in the element type with
// several independent SIMD accumulators (pairwise-like, and fast); for float the error is
// ~n*eps/lanes, well inside the tolerances the tests use against a float64 reference.
template <class T>
T reduce_contiguous(reduce_op op, const T* p, std::size_t n) {
  using B = simd<T>;
  constexpr std::size_t W = B::size;
  std::size_t j = 0;
  T acc = identity<T>(op);
  if (n >= 4 * W) {
    B a0(identity<T>(op)), a1 = a0, a2 = a0, a3 = a0;
    for (; j + 4 * W <= n; j += 4 * W) {
      a0 = combine(op, a0, B::load_unaligned(p + j));
      a1 = combine(op, a1, B::load_unaligned(p + j + W));
      a2 = combine(op, a2, B::load_unaligned(p + j + 2 * W));
      a3 = combine(op, a3, B::load_unaligned(p + j + 3 * W));
    }
    const B all = combine(op, combine(op, a0, a1), combine(op, a2, a3));
    alignas(64) T lanes[W];
    all.store_aligned(lanes);
    for (std::size_t l = 0; l < W; ++l) acc = combine(op, acc, lanes[l]);
  }
  for (; j < n; ++j) acc = combine(op, acc, p[j]);
  return acc;
}

}  // namespace detail

template <class T>
void reduce_axis(reduce_op op, const T* src, std::size_t outer, std::size_t len, std::size_t inner,
                 T* dst) {
  const reduce_op base = op == reduce_op::mean ? reduce_op::sum : op;
  const T scale = op == reduce_op::mean && len ? T(1) / static_cast<T>(len) : T(1);
  const bool mean = op == reduce_op::mean;
  // The mean of integers divides (truncating, as the OpenCL backend does): 1/len is 0.
  auto finish = [&](T r) {
    if constexpr (std::is_integral_v<T>) {
      return len ? static_cast<T>(r / static_cast<T>(len)) : r;
    } else {
      return static_cast<T>(r * scale);
    }
  };
  if (inner == 1) {
    parallel_for(outer, std::max<std::size_t>(1, (1 << 15) / std::max<std::size_t>(len, 1)),
                 [&](std::size_t o0, std::size_t o1) {
                   for (std::size_t o = o0; o < o1; ++o) {
                     const T r = detail::reduce_contiguous(base, src + o * len, len);
                     dst[o] = mean ? finish(r) : r;
                   }
                 });
    return;
  }
  // Split over columns of `inner` so a single outer row still uses every core.
  using B = simd<T>;
  constexpr std::size_t W = B::size;
  const std::size_t chunks = outer * ((inner + 255) / 256);
  const std::size_t per_outer = (inner + 255) / 256;
  parallel_for(chunks, std::max<std::size_t>(1, (1 << 15) / (256 * std::max<std::size_t>(len, 1))),
               [&](std::size_t c0, std::size_t c1) {
                 for (std::size_t c = c0; c < c1; ++c) {
                   const std::size_t o = c / per_outer;
                   const std::size_t i0 = (c % per_outer) * 256;
                   const std::size_t i1 = std::min(inner, i0 + 256);
                   T* out = dst + o * inner;
                   const T* in = src + o * len * inner;
                   std::fill(out + i0, out + i1, detail::identity<T>(base));
                   for (std::size_t l = 0; l < len; ++l) {
                     const T* row = in + l * inner;
                     std::size_t i = i0;
                     for (; i + W <= i1; i += W) {
                       detail::combine(base, B::load_unaligned(out + i), B::load_unaligned(row + i))
                           .store_unaligned(out + i);
                     }
                     for (; i < i1; ++i) out[i] = detail::combine(base, out[i], row[i]);
                   }
                   if (mean) {
                     for (std::size_t i = i0; i < i1; ++i) out[i] = finish(out[i]);
                   }
                 }
               });
}

/// Index of the first maximum along the middle axis (NumPy's tie rule).
template <class T>
void argmax_axis(const T* src, std::size_t outer, std::size_t len, std::size_t inner,
                 std::int32_t* dst) {
  parallel_for(outer * inner, 1 << 12, [&](std::size_t b, std::size_t e) {
    for (std::size_t k = b; k < e; ++k) {
      const std::size_t o = k / inner, i = k % inner;
      const T* p = src + o * len * inner + i;
      std::size_t best = 0;
      for (std::size_t l = 1; l < len; ++l) {
        if (p[l * inner] > p[best * inner]) best = l;
      }
      dst[k] = static_cast<std::int32_t>(best);
    }
  });
}

}  // namespace locus::backend::cpu
