// backend_for<Device<CPU>>: the host backend (xsimd kernels, a thread pool).
// The interface every backend implements is described in backend/backend.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../detail/philox.hpp"
#include "../../device.hpp"
#include "../backend.hpp"
#include "../concepts.hpp"
#include "buffer.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "reduce.hpp"
#include "thread_pool.hpp"

namespace locus {

template <>
struct backend_for<Device<CPU>> {
  template <class T>
  using buffer = backend::cpu::host_buffer<T>;

  template <class T>
  static void fill(buffer<T>& dst, T value) {
    T* p = dst.data();
    backend::cpu::parallel_for(
        dst.size(), 1 << 16, [&](std::size_t b, std::size_t e) { std::fill(p + b, p + e, value); });
  }

  template <class T>
  static void copy(const buffer<T>& src, std::size_t src_offset, buffer<T>& dst,
                   std::size_t dst_offset, std::size_t n) {
    if (n) std::memcpy(dst.data() + dst_offset, src.data() + src_offset, n * sizeof(T));
  }

  template <class T>
  static void upload(buffer<T>& dst, const T* host, std::size_t n) {
    if (n) std::memcpy(dst.data(), host, n * sizeof(T));
  }

  template <class T>
  static void download(const buffer<T>& src, T* host, std::size_t n) {
    if (n) std::memcpy(host, src.data(), n * sizeof(T));
  }

  template <class T, class E>
  static void assign(buffer<T>& dst, const E& e) {
    backend::cpu::assign_expression(dst.data(), e);
  }

  template <class T>
  static void reduce(reduce_op op, const buffer<T>& src, std::size_t outer, std::size_t len,
                     std::size_t inner, buffer<T>& dst) {
    backend::cpu::reduce_axis(op, src.data(), outer, len, inner, dst.data());
  }

  template <class T>
  static void argmax(const buffer<T>& src, std::size_t outer, std::size_t len, std::size_t inner,
                     buffer<std::int32_t>& dst) {
    backend::cpu::argmax_axis(src.data(), outer, len, inner, dst.data());
  }

  template <class T>
  static void gemm(const gemm_args<buffer<T>, T>& g) {
    backend::cpu::gemm_batched<T>(
        g.batch, g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, g.a->data() + g.a_offset, g.lda,
        g.stride_a, g.b->data() + g.b_offset, g.ldb, g.stride_b, g.beta, g.c->data() + g.c_offset,
        g.ldc, g.stride_c, {g.bias ? g.bias->data() + g.bias_offset : nullptr, g.act},
        g.b_colsum ? g.b_colsum->data() + g.b_colsum_offset : nullptr);
  }

  template <class T>
  static void transpose2d(const buffer<T>& src, std::size_t rows, std::size_t cols,
                          buffer<T>& dst) {
    // 32x32 tiles keep both the read and the write side within a few cache lines.
    constexpr std::size_t tile = 32;
    const T* s = src.data();
    T* d = dst.data();
    const std::size_t row_tiles = (rows + tile - 1) / tile;
    backend::cpu::parallel_for(row_tiles,
                               std::max<std::size_t>(1, 4096 / std::max<std::size_t>(cols, 1)),
                               [&](std::size_t t0, std::size_t t1) {
                                 for (std::size_t rt = t0; rt < t1; ++rt) {
                                   const std::size_t r0 = rt * tile, r1 = std::min(rows, r0 + tile);
                                   for (std::size_t c0 = 0; c0 < cols; c0 += tile) {
                                     const std::size_t c1 = std::min(cols, c0 + tile);
                                     for (std::size_t r = r0; r < r1; ++r)
                                       for (std::size_t c = c0; c < c1; ++c)
                                         d[c * rows + r] = s[r * cols + c];
                                   }
                                 }
                               });
  }

  template <class T>
  static void random(random_dist dist, buffer<T>& dst, std::uint64_t seed, T a, T b) {
    T* p = dst.data();
    backend::cpu::parallel_for(dst.size(), 1 << 14, [&](std::size_t s, std::size_t e) {
      for (std::size_t i = s; i < e; ++i) {
        if constexpr (std::is_floating_point_v<T>) {
          p[i] = dist == random_dist::uniform ? detail::philox_uniform<T>(i, seed, a, b)
                                              : detail::philox_normal<T>(i, seed, a, b);
        } else {
          p[i] = detail::philox_uniform<T>(i, seed, a, b);
        }
      }
    });
  }
};

// The seam, checked where the backend is defined (backend/concepts.hpp).
static_assert(
    TensorBackend<backend_for<Device<CPU>>, Device<CPU>>,
    "backend_for<Device<CPU>> must provide what TensorBackend (backend/concepts.hpp) requires");

}  // namespace locus
