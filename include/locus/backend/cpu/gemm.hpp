// CPU matrix multiply: a packed, cache-blocked GEMM in the GotoBLAS/BLIS style.
//
//   C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C     (all row-major)
//
// Structure (per thread, on its own block of C):
//   for ic (MC rows of C)            A block  mc x kc  packed once, re-read from L3
//     for pc (KC of k)
//       pack A block into MR-row micro-panels
//       for jc (NC columns of C)     B block  kc x nc  packed, stays in L2
//         pack B block into NR-column micro-panels
//         for ir, jr: micro-kernel   A micro-panel (MR x kc) stays in L1
// The micro-kernel keeps an MR x NR tile of C in vector registers (NR = NV SIMD widths
// along a row of C) and does one broadcast-FMA per accumulator per k step.
//
// Everything is expressed with generic (row, column) strides, so transposes are just
// stride swaps and the whole problem can be computed as C^T = B^T A^T when that pads
// less (e.g. n = 10: vectors along n would waste two thirds of every FMA).
//
// Threads: C is cut into one block per thread (no barriers, each thread packs its own
// operands into thread_local buffers); small products (< ~2 MFLOP) stay on the caller.
// A product too small in m x n to give every thread a block but long in k (a convolution's
// weight gradient: 9 x 32 outputs, k = 21632) is cut along k instead, into slices fixed
// by k alone, whose partial products are added in order at the end.
//
// Epilogue: C = act(alpha op(A) op(B) + beta C + bias) with the bias per column of C and
// act one of gemm_activation, applied in registers as the last k block is stored, so a
// layer's bias and activation cost no pass of their own over C. In the transposed
// problem (C^T = B^T A^T) the bias runs along the rows of the tiles.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

#include "../backend.hpp"
#include "simd.hpp"
#include "thread_pool.hpp"

namespace locus::backend::cpu {

namespace gemm_detail {

using index_t = std::ptrdiff_t;

inline constexpr std::size_t kAlign = 64;  // cache line; also enough for any SIMD load

// Grow-only aligned scratch. thread_local instances make packing allocation-free in
// steady state, and each pool worker gets its own buffers.
class scratch {
 public:
  scratch() = default;
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  ~scratch() { release(); }

  template <class T>
  T* get(std::size_t count) {
    const std::size_t bytes = count * sizeof(T);
    if (bytes > bytes_) {
      release();
      // Round up so a slowly growing sequence of shapes does not reallocate every call.
      const std::size_t want = std::max<std::size_t>(bytes + bytes / 4, 4096);
      ptr_ = ::operator new (want, std::align_val_t{kAlign});
      bytes_ = want;
    }
    return static_cast<T*>(ptr_);
  }

 private:
  void release() noexcept {
    if (ptr_ != nullptr) ::operator delete (ptr_, std::align_val_t{kAlign});
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

struct pack_scratch {
  scratch a, b, partial, vacc, split;
};

inline pack_scratch& tls_scratch() {
  thread_local pack_scratch s;
  return s;
}

constexpr std::size_t ceil_div(std::size_t a, std::size_t b) noexcept {
  return (a + b - 1) / b;
}
constexpr std::size_t round_up(std::size_t a, std::size_t b) noexcept {
  return ceil_div(a, b) * b;
}

// Splits `total` into ceil(total / max_block) near-equal blocks, each a multiple of
// `unit` (except the last), so that e.g. k = 400 gives 2 x 200 and not 384 + 16.
inline std::size_t balanced_block(std::size_t total, std::size_t max_block, std::size_t unit) {
  const std::size_t blocks = ceil_div(total, max_block);
  return std::min(max_block, round_up(ceil_div(total, blocks), unit));
}

// ---- epilogue ----------------------------------------------------------------------

#if defined(__GNUC__)
#define LOCUS_GEMM_INLINE [[gnu::always_inline]] inline
#else
#define LOCUS_GEMM_INLINE inline
#endif

/// act(x) on a SIMD batch; the same formulas as the element-wise expressions
/// (backend/cpu/elementwise.hpp), so a fused layer computes what the unfused one did.
template <gemm_activation A, class V>
LOCUS_GEMM_INLINE V activate(const V& x) {
  if constexpr (A == gemm_activation::relu) {
    return xsimd::max(x, V(0));
  } else if constexpr (A == gemm_activation::sigmoid) {
    return V(1) / (V(1) + xsimd::exp(-x));
  } else if constexpr (A == gemm_activation::tanh) {
    return xsimd::tanh(x);
  } else {
    return x;
  }
}

/// Calls f.template operator()<A>() with the activation as a compile-time constant, so
/// the loops inside carry no per-element branch on it.
template <class F>
LOCUS_GEMM_INLINE void with_activation(gemm_activation a, F&& f) {
  switch (a) {
    case gemm_activation::relu:
      f.template operator()<gemm_activation::relu>();
      return;
    case gemm_activation::sigmoid:
      f.template operator()<gemm_activation::sigmoid>();
      return;
    case gemm_activation::tanh:
      f.template operator()<gemm_activation::tanh>();
      return;
    case gemm_activation::linear:
      break;
  }
  f.template operator()<gemm_activation::linear>();
}

/// The epilogue as the kernels see it: after an optional transposition of the problem the
/// bias runs along rows (row_bias[i] for row i) or columns (col_bias[j]); null: no bias.
/// Pointers are offset to the block or tile at hand.
template <class T>
struct tile_epilogue {
  const T* row_bias = nullptr;
  const T* col_bias = nullptr;
  gemm_activation act = gemm_activation::linear;
  bool active = false;

  tile_epilogue at(std::size_t i0, std::size_t j0) const {
    tile_epilogue e = *this;
    if (e.row_bias) e.row_bias += i0;
    if (e.col_bias) e.col_bias += j0;
    return e;
  }
};

/// x[0, n) = act(x + bias[0, n)) (bias may be null) in place, in SIMD batches; the tail goes
/// through a padded batch, so every element sees the same vector code.
template <class Arch, class T>
void finish_span(T* x, std::size_t n, const T* bias, gemm_activation act) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  with_activation(act, [&]<gemm_activation A>() {
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
      batch v = batch::load_unaligned(x + j);
      if (bias) v = v + batch::load_unaligned(bias + j);
      activate<A>(v).store_unaligned(x + j);
    }
    if (j < n) {
      alignas(kAlign) T xt[W] = {};
      alignas(kAlign) T bt[W] = {};
      for (std::size_t t = j; t < n; ++t) {
        xt[t - j] = x[t];
        if (bias) bt[t - j] = bias[t];
      }
      batch v = batch::load_aligned(xt);
      if (bias) v = v + batch::load_aligned(bt);
      activate<A>(v).store_aligned(xt);
      for (std::size_t t = j; t < n; ++t) x[t] = xt[t - j];
    }
  });
}

/// The epilogue for element types without SIMD kernels (integers): plain scalar code.
template <class T>
T finish_scalar(T x, const T* bias, std::size_t j, gemm_activation act) {
  if (bias) x = x + bias[j];
  switch (act) {
    case gemm_activation::relu:
      return x > T(0) ? x : T(0);
    case gemm_activation::sigmoid:
      return static_cast<T>(1.0 / (1.0 + std::exp(-static_cast<double>(x))));
    case gemm_activation::tanh:
      return static_cast<T>(std::tanh(static_cast<double>(x)));
    case gemm_activation::linear:
      break;
  }
  return x;
}

// ---- column sums of op(B) -------------------------------------------------------------
//
// A layer's weight gradient dW = X^T dZ comes with its bias gradient, the column sums of
// dZ = op(B). The GEMM can deliver both (b_colsum), so the bias gradient costs no pass of
// its own: when op(A) has a row count that leaves padding rows in its last micro-panel
// (9 for a 3x3x1 convolution: 12-row panels), the first padding row is packed as ones and
// the micro-kernel computes 1^T op(B) there, in registers that would compute zeros
// anyway. Otherwise (and for alpha != 1 or a split over threads) a pass of its own sums B.

/// out[j] = sum over p < rows of op(B)(p, j), op(B)(p, j) at b[p * rs + j * cs]; p in order
/// within each SIMD lane.
template <class T>
void column_sums(const T* b, index_t rs, index_t cs, std::size_t rows, std::size_t n, T* out);

// ---- blocking parameters -----------------------------------------------------------

template <class T, class Arch>
struct config {
  using batch = xsimd::batch<T, Arch>;
  static constexpr std::size_t W = batch::size;
  // AVX-512 has 32 vector registers: 12 x 2 accumulators + 2 B vectors + 1 broadcast.
  // Everything else we target (SSE, AVX, NEON) has 16: 6 x 2 + 3.
  static constexpr bool wide_regs = std::is_base_of_v<xsimd::avx512f, Arch>;
  static constexpr std::size_t MR = wide_regs ? 12 : 6;
  static constexpr std::size_t NV = 2;
  static constexpr std::size_t NR = NV * W;
  // A micro-panel MR x KC (L1, 18 KiB for float/AVX-512); B block KC x NC (L2, ~1.2 MiB
  // for float); A block MC x KC re-read from L3.
  static constexpr std::size_t KC = 384 * 4 / sizeof(T);
  static constexpr std::size_t NC = round_up(768 * 4 / sizeof(T), NR);
  static constexpr std::size_t MC = round_up(1024 * 4 / sizeof(T), MR);
  // Dot-product path tile: DA rows of A x DB columns of B, each a k-long dot product.
  static constexpr std::size_t DA = wide_regs ? 4 : 2;
  static constexpr std::size_t DB = wide_regs ? 5 : 3;
};

// ---- packing -----------------------------------------------------------------------

// Packs the mc x kc block of A (element (i, p) at a[i * rs + p * cs]) as MR-row
// micro-panels: panel r0 holds, for each p, the MR values A(r0 .. r0 + MR, p). Rows past
// mc are zero so the kernel never needs a row mask.
template <std::size_t MR, class Arch, class T>
void pack_a(std::size_t mc, std::size_t kc, const T* a, index_t rs, index_t cs, T* dst) {
  for (std::size_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
    const std::size_t mr = std::min(MR, mc - i0);
    const T* src = a + static_cast<index_t>(i0) * rs;
    if (rs == 1 && mr == MR) {
      // op(A) columns are contiguous (A transposed in memory): plain copies.
      for (std::size_t p = 0; p < kc; ++p) {
        const T* s = src + static_cast<index_t>(p) * cs;
        T* d = dst + p * MR;
        for (std::size_t r = 0; r < MR; ++r) d[r] = s[r];
      }
    } else if (cs == 1 && mr == MR) {
      // Rows contiguous: MR sequential read streams, sequential writes.
      const T* rows[MR];
      for (std::size_t r = 0; r < MR; ++r) rows[r] = src + static_cast<index_t>(r) * rs;
      for (std::size_t p = 0; p < kc; ++p) {
        T* d = dst + p * MR;
        for (std::size_t r = 0; r < MR; ++r) d[r] = rows[r][p];
      }
    } else if (rs == 1) {
      // Transposed A, last (partial) panel: short contiguous runs (a convolution's weight
      // gradient: 9 rows of cols^T).
      std::size_t p = 0;
      using batch = xsimd::batch<T, Arch>;
      constexpr std::size_t W = batch::size;
      if constexpr (MR <= W && W <= 2 * MR) {
        // One vector per k step, lanes past mr zeroed: it reads up to W - mr elements past the
        // run, which stay inside the next run (cs + mr >= W) for every step but the block's
        // last, done below; its store spills into the next step's slots, rewritten next.
        if (static_cast<std::size_t>(cs) + mr >= W) {
          alignas(kAlign) T lane[W];
          for (std::size_t l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
          const auto keep = batch::load_aligned(lane) < batch(static_cast<T>(mr));
          for (; p + 1 < kc; ++p)
            xsimd::select(keep, batch::load_unaligned(src + static_cast<index_t>(p) * cs),
                          batch(T(0)))
                .store_unaligned(dst + p * MR);
        }
      }
      for (; p < kc; ++p) {
        const T* s = src + static_cast<index_t>(p) * cs;
        T* d = dst + p * MR;
        for (std::size_t r = 0; r < mr; ++r) d[r] = s[r];
        for (std::size_t r = mr; r < MR; ++r) d[r] = T(0);
      }
    } else {
      for (std::size_t p = 0; p < kc; ++p) {
        T* d = dst + p * MR;
        for (std::size_t r = 0; r < mr; ++r)
          d[r] = src[static_cast<index_t>(r) * rs + static_cast<index_t>(p) * cs];
        for (std::size_t r = mr; r < MR; ++r) d[r] = T(0);
      }
    }
  }
}

// Packs the kc x nc block of B (element (p, j) at b[p * rs + j * cs]) as NR-column
// micro-panels; columns past nc are zero.
template <std::size_t NR, class Arch, class T>
void pack_b(std::size_t kc, std::size_t nc, const T* b, index_t rs, index_t cs, T* dst) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  for (std::size_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const std::size_t nr = std::min(NR, nc - j0);
    const T* src = b + static_cast<index_t>(j0) * cs;
    if (cs == 1 && nr == NR) {
      // Rows of op(B) contiguous: vector copies.
      for (std::size_t p = 0; p < kc; ++p) {
        const T* s = src + static_cast<index_t>(p) * rs;
        T* d = dst + p * NR;
        for (std::size_t v = 0; v < NR; v += W) batch::load_unaligned(s + v).store_aligned(d + v);
      }
    } else if (rs == 1) {
      // B transposed in memory: each column of op(B) is contiguous. Walk k in short
      // strips so the strided writes stay inside a few L1 lines.
      constexpr std::size_t strip = 8;
      for (std::size_t p0 = 0; p0 < kc; p0 += strip) {
        const std::size_t pe = std::min(kc, p0 + strip);
        for (std::size_t j = 0; j < nr; ++j) {
          const T* s = src + static_cast<index_t>(j) * cs;
          for (std::size_t p = p0; p < pe; ++p) dst[p * NR + j] = s[p];
        }
        for (std::size_t p = p0; p < pe; ++p)
          for (std::size_t j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
      }
    } else {
      for (std::size_t p = 0; p < kc; ++p) {
        T* d = dst + p * NR;
        for (std::size_t j = 0; j < nr; ++j)
          d[j] = src[static_cast<index_t>(p) * rs + static_cast<index_t>(j) * cs];
        for (std::size_t j = nr; j < NR; ++j) d[j] = T(0);
      }
    }
  }
}

// ---- micro-kernel ------------------------------------------------------------------

// Stores a full MR x NR tile of contiguous rows: act(alpha acc + beta C + bias).
template <gemm_activation A, std::size_t MR, std::size_t NV, class Arch, class T>
LOCUS_GEMM_INLINE void store_full_tile(const xsimd::batch<T, Arch> (&acc)[MR][NV], T* c,
                                       index_t rs_c, T alpha, T beta, const tile_epilogue<T>& e) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  const batch va(alpha), vb(beta);
  batch cb[NV];
#pragma GCC unroll 4
  for (std::size_t v = 0; v < NV; ++v)
    cb[v] = e.col_bias ? batch::load_unaligned(e.col_bias + v * W) : batch(T(0));
#pragma GCC unroll 32
  for (std::size_t r = 0; r < MR; ++r) {
    const batch rb(e.row_bias ? e.row_bias[r] : T(0));
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) {
      T* cp = c + static_cast<index_t>(r) * rs_c + v * W;
      batch x =
          beta == T(0) ? va * acc[r][v] : xsimd::fma(va, acc[r][v], vb * batch::load_unaligned(cp));
      if (e.row_bias) x = x + rb;
      if (e.col_bias) x = x + cb[v];
      activate<A>(x).store_unaligned(cp);
    }
  }
}

// The epilogue of a tile held in a buffer (alpha already applied): edge tiles, strided C
// and the long activations. Rows are finished in the buffer with the vector code of the full
// tiles; the column bias of a partial tile is read through a zero-padded copy (never past
// its end). Out of line, so that the kernel's hot code stays small.
template <std::size_t MR, std::size_t NV, class Arch, class T>
[[gnu::noinline]] void store_tile_epilogue(T* tile, T* c, index_t rs_c, index_t cs_c,
                                           std::size_t mr, std::size_t nr, T beta,
                                           const tile_epilogue<T>& e) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  constexpr std::size_t NR = NV * W;
  alignas(kAlign) T cbias[NR] = {};
  const T* cb = e.col_bias;
  if (cb && nr < NR) {
    for (std::size_t j = 0; j < nr; ++j) cbias[j] = cb[j];
    cb = cbias;
  }
  with_activation(e.act, [&]<gemm_activation A>() {
    for (std::size_t r = 0; r < mr; ++r) {
      T* cr = c + static_cast<index_t>(r) * rs_c;
      T* tr = tile + r * NR;
      if (beta != T(0)) {
        for (std::size_t j = 0; j < nr; ++j)
          tr[j] = tr[j] + beta * cr[static_cast<index_t>(j) * cs_c];
      }
      const batch rb(e.row_bias ? e.row_bias[r] : T(0));
      for (std::size_t v = 0; v < NV; ++v) {
        batch x = batch::load_aligned(tr + v * W);
        if (e.row_bias) x = x + rb;
        if (cb) x = x + batch::load_unaligned(cb + v * W);
        activate<A>(x).store_aligned(tr + v * W);
      }
      for (std::size_t j = 0; j < nr; ++j) cr[static_cast<index_t>(j) * cs_c] = tr[j];
    }
  });
}

// Stores the mr x nr corner of a tile held in a buffer (alpha applied): edge tiles and
// strided C.
// `extra` (null: none) receives tile row mr, the ones row of the column sums: overwritten
// on the first k block, accumulated on the later ones.
template <std::size_t MR, std::size_t NV, class Arch, class T>
LOCUS_GEMM_INLINE void store_tile(const T* tile, T* c, index_t rs_c, index_t cs_c, std::size_t mr,
                                  std::size_t nr, T beta, T* extra, bool extra_accumulates) {
  constexpr std::size_t NR = NV * xsimd::batch<T, Arch>::size;
  if (extra) {
    const T* tr = tile + mr * NR;
    if (extra_accumulates) {
      for (std::size_t j = 0; j < nr; ++j) extra[j] = tr[j] + extra[j];
    } else {
      for (std::size_t j = 0; j < nr; ++j) extra[j] = tr[j];
    }
  }
  if (cs_c != 1 && rs_c == 1) {
    // The transposed problem: a tile column is a contiguous run of a row of C.
    for (std::size_t j = 0; j < nr; ++j) {
      T* cc = c + static_cast<index_t>(j) * cs_c;
      if (beta == T(0)) {
        for (std::size_t r = 0; r < mr; ++r) cc[r] = tile[r * NR + j];
      } else {
        for (std::size_t r = 0; r < mr; ++r) cc[r] = tile[r * NR + j] + beta * cc[r];
      }
    }
    return;
  }
  for (std::size_t r = 0; r < mr; ++r) {
    T* cr = c + static_cast<index_t>(r) * rs_c;
    const T* tr = tile + r * NR;
    if (beta == T(0)) {
      for (std::size_t j = 0; j < nr; ++j) cr[static_cast<index_t>(j) * cs_c] = tr[j];
    } else {
      for (std::size_t j = 0; j < nr; ++j) {
        T& x = cr[static_cast<index_t>(j) * cs_c];
        x = tr[j] + beta * x;
      }
    }
  }
}

// C tile (mr x nr valid of MR x NR) = alpha * Ap * Bp + beta * C; beta == 0 never reads C.
// With Epi (only for the last k block) act(... + bias) of the epilogue *e is stored; the
// kernels without it are exactly as lean as before the epilogue existed.
// B advances NR elements per k step in a packed (aligned) panel, or, with DirectB, b_step
// when the kernel reads the rows of op(B) where they are.
// `extra`: see store_tile (only without Epi).
template <std::size_t MR, std::size_t NV, bool DirectB, bool Epi, class Arch, class T>
[[gnu::noinline]] void micro_kernel(std::size_t kc, const T* __restrict ap, const T* __restrict bp,
                                    index_t b_step, T* c, index_t rs_c, index_t cs_c,
                                    std::size_t mr, std::size_t nr, T alpha, T beta,
                                    const tile_epilogue<T>* e, T* extra, bool extra_accumulates) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  constexpr std::size_t NR = NV * W;

  batch acc[MR][NV];
#pragma GCC unroll 32
  for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) acc[r][v] = batch(T(0));

  for (std::size_t p = 0; p < kc; ++p) {
    batch bv[NV];
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v)
      bv[v] = DirectB ? batch::load_unaligned(bp + v * W) : batch::load_aligned(bp + v * W);
#pragma GCC unroll 32
    for (std::size_t r = 0; r < MR; ++r) {
      const batch av(ap[r]);
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
    }
    ap += MR;
    bp += DirectB ? b_step : static_cast<index_t>(NR);
  }

  const batch va(alpha);
  // linear and relu finish full tiles straight from the registers; sigmoid and tanh are long
  // enough to go through the buffer below, which keeps their code out of the hot kernel.
  if (mr == MR && nr == NR && cs_c == 1 &&
      (!Epi || e->act == gemm_activation::linear || e->act == gemm_activation::relu)) {
    if constexpr (Epi) {
      if (e->act == gemm_activation::relu) {
        store_full_tile<gemm_activation::relu, MR, NV, Arch>(acc, c, rs_c, alpha, beta, *e);
      } else {
        store_full_tile<gemm_activation::linear, MR, NV, Arch>(acc, c, rs_c, alpha, beta, *e);
      }
    } else if (beta == T(0)) {
      // A running row pointer: one add per row, no table of row addresses to keep.
      T* cr = c;
#pragma GCC unroll 32
      for (std::size_t r = 0; r < MR; ++r, cr += rs_c)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v) (va * acc[r][v]).store_unaligned(cr + v * W);
    } else {
      const batch vb(beta);
      T* cr = c;
#pragma GCC unroll 32
      for (std::size_t r = 0; r < MR; ++r, cr += rs_c)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v)
          xsimd::fma(va, acc[r][v], vb * batch::load_unaligned(cr + v * W))
              .store_unaligned(cr + v * W);
    }
    return;
  }
  // Edge tile or strided C (transposed problem): go through a small buffer.
  alignas(kAlign) T tile[MR * NR];
  // Fully unrolled so acc is only ever indexed by constants and stays in registers.
#pragma GCC unroll 32
  for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (std::size_t v = 0; v < NV; ++v) (va * acc[r][v]).store_aligned(tile + r * NR + v * W);
  if constexpr (Epi) {
    store_tile_epilogue<MR, NV, Arch>(tile, c, rs_c, cs_c, mr, nr, beta, *e);
  } else {
    store_tile<MR, NV, Arch>(tile, c, rs_c, cs_c, mr, nr, beta, extra, extra_accumulates);
  }
}

// ---- single-threaded blocked driver --------------------------------------------------

struct operands {
  std::size_t m, n, k;
  index_t rs_a, cs_a, rs_b, cs_b, rs_c, cs_c;
};

// b_colsum (null: none; only with alpha == 1 and m % MR != 0) receives the column sums
// of op(B) through the ones row (see column_sums).
template <class T, class Arch>
void gemm_serial(const operands& op, T alpha, const T* a, const T* b, T beta, T* c,
                 const tile_epilogue<T>& epi, T* b_colsum = nullptr) {
  using cfg = config<T, Arch>;
  constexpr std::size_t MR = cfg::MR, NR = cfg::NR;
  const std::size_t m = op.m, n = op.n, k = op.k;
  if (m == 0 || n == 0) return;

  const std::size_t kc_max = balanced_block(k, cfg::KC, 4);
  const std::size_t mc_max = balanced_block(m, cfg::MC, MR);
  const std::size_t nc_max = balanced_block(n, cfg::NC, NR);
  pack_scratch& s = tls_scratch();
  T* const abuf = s.a.get<T>(round_up(mc_max, MR) * kc_max);
  T* const bbuf = s.b.get<T>(round_up(nc_max, NR) * kc_max);
  // With a single A micro-panel every B element is used once: packing B would only copy
  // it. Whole NR-wide panels of contiguous op(B) rows are then read where they are (a
  // convolution's weight gradient: 9 x 32 outputs, B = dZ, k = N*OH*OW).
  const bool direct_b = op.cs_b == 1 && m <= MR;

  for (std::size_t ic = 0; ic < m; ic += mc_max) {
    const std::size_t mc = std::min(mc_max, m - ic);
    for (std::size_t pc = 0; pc < k; pc += kc_max) {
      const std::size_t kc = std::min(kc_max, k - pc);
      const T beta_eff = pc == 0 ? beta : T(1);  // later k blocks accumulate
      const bool last_k = pc + kc == k;          // the epilogue goes with the final store
      pack_a<MR, Arch>(mc, kc,
                       a + static_cast<index_t>(ic) * op.rs_a + static_cast<index_t>(pc) * op.cs_a,
                       op.rs_a, op.cs_a, abuf);
      // The ones row: the first padding row of the last panel of the last row block.
      const bool ones = b_colsum && ic + mc == m;
      const std::size_t ones_panel = mc / MR * MR;
      if (ones) {
        T* d = abuf + ones_panel * kc + (mc - ones_panel);
        for (std::size_t p = 0; p < kc; ++p) d[p * MR] = T(1);
      }
      for (std::size_t jc = 0; jc < n; jc += nc_max) {
        const std::size_t nc = std::min(nc_max, n - jc);
        const T* bblock =
            b + static_cast<index_t>(pc) * op.rs_b + static_cast<index_t>(jc) * op.cs_b;
        if (!direct_b) pack_b<NR, Arch>(kc, nc, bblock, op.rs_b, op.cs_b, bbuf);
        for (std::size_t ir = 0; ir < mc; ir += MR) {
          const T* ap = abuf + ir * kc;
          T* crow = c + static_cast<index_t>(ic + ir) * op.rs_c;
          for (std::size_t jr = 0; jr < nc; jr += NR) {
            const std::size_t nr = std::min(NR, nc - jr);
            T* const ct = crow + static_cast<index_t>(jc + jr) * op.cs_c;
            const std::size_t mr = std::min(MR, mc - ir);
            const bool with_epi = last_k && epi.active;
            const tile_epilogue<T> te = with_epi ? epi.at(ic + ir, jc + jr) : tile_epilogue<T>{};
            const T* bp = bbuf + jr * kc;
            index_t b_step = static_cast<index_t>(NR);
            bool direct = false;
            if (direct_b && nr == NR) {
              bp = bblock + jr;
              b_step = op.rs_b;
              direct = true;
            } else if (direct_b) {  // a last, partial panel: packed (zero-padded) after all
              pack_b<NR, Arch>(kc, nr, bblock + jr, op.rs_b, op.cs_b, bbuf);
              bp = bbuf;
            }
            T* const extra = ones && ir == ones_panel ? b_colsum + jc + jr : nullptr;
            auto run = [&]<bool D, bool E>() {
              micro_kernel<MR, cfg::NV, D, E, Arch>(kc, ap, bp, b_step, ct, op.rs_c, op.cs_c, mr,
                                                    nr, alpha, beta_eff, &te, extra, pc != 0);
            };
            if (direct) {
              with_epi ? run.template operator()<true, true>()
                       : run.template operator()<true, false>();
            } else {
              with_epi ? run.template operator()<false, true>()
                       : run.template operator()<false, false>();
            }
          }
        }
      }
    }
  }
}

// Below this many flops a product runs on the calling thread: waking a worker and
// duplicating the packing costs more than the second core gains.
inline constexpr double kParallelFlops = 2.0e6;

// ---- small m x n, long k: dot-product path -------------------------------------------
//
// When C is tiny and k long (a Dense layer's forward pass: 32 x 10 x 5408), register
// tiles along m and n would be mostly padding and packing A would cost more than the
// arithmetic. Instead every C element is a dot product along k, vectorised along k:
// only the operand that is not already k-contiguous gets copied, and k is cut into a
// fixed number of slices (a function of k alone, so results do not depend on the thread
// count) whose partial sums are added in order at the end.

// Vector accumulators acc(r, q) (W lanes each, at vacc + (r * ldv + q) * W) += the lane-wise
// products of A_r and B_q over [0, len), len a multiple of W. Rows k-contiguous.
template <std::size_t RA, std::size_t RB, class Arch, class T>
void dot_tile(std::size_t len, const T* a, std::size_t lda, const T* b, std::size_t ldb, T* vacc,
              std::size_t ldv) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  batch acc[RA][RB];
#pragma GCC unroll 8
  for (std::size_t r = 0; r < RA; ++r)
#pragma GCC unroll 8
    for (std::size_t q = 0; q < RB; ++q) acc[r][q] = batch::load_aligned(vacc + (r * ldv + q) * W);
  for (std::size_t p = 0; p < len; p += W) {
    batch bv[RB];
#pragma GCC unroll 8
    for (std::size_t q = 0; q < RB; ++q) bv[q] = batch::load_unaligned(b + q * ldb + p);
#pragma GCC unroll 8
    for (std::size_t r = 0; r < RA; ++r) {
      const batch av = batch::load_unaligned(a + r * lda + p);
#pragma GCC unroll 8
      for (std::size_t q = 0; q < RB; ++q) acc[r][q] = xsimd::fma(av, bv[q], acc[r][q]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t r = 0; r < RA; ++r)
#pragma GCC unroll 8
    for (std::size_t q = 0; q < RB; ++q) acc[r][q].store_aligned(vacc + (r * ldv + q) * W);
}

// Picks the dot_tile instantiation for a ragged (ra <= RA, rb <= RB) edge tile.
template <std::size_t RA, std::size_t RB, class Arch, class T>
void dot_tile_any(std::size_t ra, std::size_t rb, std::size_t len, const T* a, std::size_t lda,
                  const T* b, std::size_t ldb, T* vacc, std::size_t ldv) {
  if constexpr (RA > 1) {
    if (ra < RA) return dot_tile_any<RA - 1, RB, Arch>(ra, rb, len, a, lda, b, ldb, vacc, ldv);
  }
  if constexpr (RB > 1) {
    if (rb < RB) return dot_tile_any<RA, RB - 1, Arch>(ra, rb, len, a, lda, b, ldb, vacc, ldv);
  }
  dot_tile<RA, RB, Arch>(len, a, lda, b, ldb, vacc, ldv);
}

// Copies op(X)'s k-range [p0, p0 + len) of `rows` rows into a row-major rows x len buffer
// unless it already is k-contiguous (unit stride along k), in which case it is used as is.
template <class T>
const T* k_contiguous(const T* x, index_t rs, index_t ks, std::size_t rows, std::size_t p0,
                      std::size_t len, scratch& buf, std::size_t& ld) {
  if (ks == 1) {
    ld = static_cast<std::size_t>(rs);
    return x + static_cast<index_t>(p0);
  }
  T* dst = buf.get<T>(rows * len);
  ld = len;
  // One output row at a time: sequential writes; the strided reads of a block of len
  // source rows stay in L1 across the rows.
  const T* base = x + static_cast<index_t>(p0) * ks;
  for (std::size_t r = 0; r < rows; ++r) {
    const T* src = base + static_cast<index_t>(r) * rs;
    T* d = dst + r * len;
    for (std::size_t p = 0; p < len; ++p) d[p] = src[static_cast<index_t>(p) * ks];
  }
  return dst;
}

inline constexpr std::size_t kDotSliceK = 2048;  // k per slice (slices run in parallel)
inline constexpr std::size_t kDotBlockK = 512;   // k per L1 block inside a slice

template <class T, class Arch>
bool dot_path_fits(const operands& op) {
  // The dot kernels read both operands along k; an operand strided along k is first
  // copied element by element. With both strided (the conv weight gradient, cols^T dZ
  // with k = N*OH*OW) those copies cost more than the product, and the blocked path,
  // which packs anyway, is faster.
  const bool one_contiguous = op.cs_a == 1 || op.rs_b == 1;
  return op.m * op.n <= 1024 && op.k >= 1024 && op.cs_c == 1 && one_contiguous;
}

template <class T, class Arch>
void gemm_dot(const operands& op, T alpha, const T* a, const T* b, T beta, T* c,
              const tile_epilogue<T>& epi, std::size_t max_threads) {
  using cfg = config<T, Arch>;
  const std::size_t m = op.m, n = op.n, k = op.k;
  const std::size_t slices = std::clamp<std::size_t>(k / kDotSliceK, 1, 8);
  T* const partial = tls_scratch().partial.get<T>(slices * m * n);

  auto run_slice = [&](std::size_t s) {
    using batch = xsimd::batch<T, Arch>;
    constexpr std::size_t W = batch::size;
    const std::size_t p0 = k * s / slices, p1 = k * (s + 1) / slices;
    pack_scratch& tls = tls_scratch();
    // Per-thread vector accumulators, one W-lane vector per C element: k is walked in
    // blocks small enough that the B block stays in L1 across all rows of A, and the
    // accumulators round-trip through memory (cheap) rather than being reduced per block.
    T* const vacc = tls.vacc.get<T>(m * n * W);
    std::fill(vacc, vacc + m * n * W, T(0));
    T* const out = partial + s * m * n;
    std::fill(out, out + m * n, T(0));
    for (std::size_t kb = p0; kb < p1; kb += kDotBlockK) {
      const std::size_t len = std::min(kDotBlockK, p1 - kb), vlen = len / W * W;
      std::size_t lda = 0, ldb = 0;
      // A rows: (i, p) at a[i * rs_a + p * cs_a]; B columns: (j, p) at b[j * cs_b + p * rs_b].
      const T* ak = k_contiguous(a, op.rs_a, op.cs_a, m, kb, len, tls.a, lda);
      const T* bk = k_contiguous(b, op.cs_b, op.rs_b, n, kb, len, tls.b, ldb);
      for (std::size_t i = 0; i < m; i += cfg::DA)
        for (std::size_t j = 0; j < n; j += cfg::DB)
          dot_tile_any<cfg::DA, cfg::DB, Arch>(std::min(cfg::DA, m - i), std::min(cfg::DB, n - j),
                                               vlen, ak + i * lda, lda, bk + j * ldb, ldb,
                                               vacc + (i * n + j) * W, n);
      if (vlen < len) {  // k tail shorter than a vector (only in a slice's last block)
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j)
            for (std::size_t p = vlen; p < len; ++p)
              out[i * n + j] += ak[i * lda + p] * bk[j * ldb + p];
      }
    }
    // Lanes are already in memory; a scalar sum also sidesteps GCC 12's false
    // -Wmaybe-uninitialized inside the AVX-512 extract intrinsics that xsimd::hadd uses.
    for (std::size_t e = 0; e < m * n; ++e) {
      T sum = T(0);
      for (std::size_t l = 0; l < W; ++l) sum += vacc[e * W + l];
      out[e] += sum;
    }
  };
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (flops < kParallelFlops || max_threads <= 1 || slices == 1) {
    for (std::size_t s = 0; s < slices; ++s) run_slice(s);
  } else {
    parallel_for(slices, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t s = begin; s < end; ++s) run_slice(s);
    });
  }

  for (std::size_t i = 0; i < m; ++i) {
    T* crow = c + static_cast<index_t>(i) * op.rs_c;
    for (std::size_t j = 0; j < n; ++j) {
      T sum = partial[i * n + j];
      for (std::size_t s = 1; s < slices; ++s) sum += partial[(s * m + i) * n + j];
      crow[j] = beta == T(0) ? alpha * sum : alpha * sum + beta * crow[j];
    }
    if (epi.active) finish_span<Arch>(crow, n, epi.col_bias, epi.act);
  }
}

// ---- small m x n, long k, strided operands: cut along k ---------------------------------
//
// A product with too few C tiles to give every thread a block but a long k (a convolution's
// weight gradient cols^T dZ: 9 x 32 outputs, k = N*OH*OW) would run on one thread. It is cut
// into k slices instead, a number fixed by k alone (so results do not depend on the thread
// count); each slice is an ordinary blocked product into its own partial C, and the
// partials are added in order.

inline constexpr std::size_t kSplitMaxTiles = 4;  // at most this many MR x NR tiles of C
inline constexpr std::size_t kSplitMinK = 4096;   // and at least this long a k

template <class T, class Arch>
bool k_split_fits(const operands& op) {
  using cfg = config<T, Arch>;
  const std::size_t tiles = std::min(ceil_div(op.m, cfg::MR) * ceil_div(op.n, cfg::NR),
                                     ceil_div(op.n, cfg::MR) * ceil_div(op.m, cfg::NR));
  return tiles <= kSplitMaxTiles && op.k >= kSplitMinK;
}

template <class T, class Arch>
void gemm_blocked(operands op, T alpha, const T* a, const T* b, T beta, T* c,
                  const tile_epilogue<T>& epi, T* b_colsum, std::size_t max_threads,
                  bool allow_k_split);

template <class T, class Arch>
void gemm_k_split(const operands& op, T alpha, const T* a, const T* b, T beta, T* c,
                  const tile_epilogue<T>& epi, T* b_colsum, std::size_t max_threads) {
  const std::size_t m = op.m, n = op.n, k = op.k;
  const std::size_t slices = std::clamp<std::size_t>(k / kDotSliceK, 1, 8);
  T* const partial = tls_scratch().split.get<T>(slices * (m * n + n));
  T* const colpart = partial + slices * m * n;  // per slice: the column sums of its B rows
  auto run_slice = [&](std::size_t s) {
    const std::size_t p0 = k * s / slices, p1 = k * (s + 1) / slices;
    operands sub = op;
    sub.k = p1 - p0;
    sub.rs_c = static_cast<index_t>(n);
    sub.cs_c = 1;
    const T* bs = b + static_cast<index_t>(p0) * op.rs_b;
    gemm_blocked<T, Arch>(sub, T(1), a + static_cast<index_t>(p0) * op.cs_a, bs, T(0),
                          partial + s * m * n, tile_epilogue<T>{},
                          b_colsum ? colpart + s * n : nullptr, 1, false);
  };
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (flops < kParallelFlops || max_threads <= 1) {
    for (std::size_t s = 0; s < slices; ++s) run_slice(s);
  } else {
    parallel_for(slices, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t s = begin; s < end; ++s) run_slice(s);
    });
  }
  for (std::size_t i = 0; i < m; ++i) {
    T* crow = c + static_cast<index_t>(i) * op.rs_c;
    for (std::size_t j = 0; j < n; ++j) {
      T sum = partial[i * n + j];
      for (std::size_t s = 1; s < slices; ++s) sum += partial[(s * m + i) * n + j];
      crow[j] = beta == T(0) ? alpha * sum : alpha * sum + beta * crow[j];
    }
    if (epi.active) finish_span<Arch>(crow, n, epi.col_bias, epi.act);
  }
  if (b_colsum) {
    for (std::size_t j = 0; j < n; ++j) {
      T sum = colpart[j];
      for (std::size_t s = 1; s < slices; ++s) sum += colpart[s * n + j];
      b_colsum[j] = sum;
    }
  }
}

// ---- orientation, threading ----------------------------------------------------------

// `epi` arrives with its bias along the columns of C (col_bias) and leaves with it along
// whichever side of the computed problem that is. b_colsum (null: not wanted) receives the
// column sums of op(B).
template <class T, class Arch>
void gemm_blocked(operands op, T alpha, const T* a, const T* b, T beta, T* c,
                  const tile_epilogue<T>& epi_c, T* b_colsum, std::size_t max_threads,
                  bool allow_k_split) {
  using cfg = config<T, Arch>;
  constexpr std::size_t MR = cfg::MR, NR = cfg::NR;

  if (allow_k_split && op.cs_c == 1 && !dot_path_fits<T, Arch>(op) && k_split_fits<T, Arch>(op)) {
    gemm_k_split<T, Arch>(op, alpha, a, b, beta, c, epi_c, b_colsum, max_threads);
    return;
  }
  if (dot_path_fits<T, Arch>(op)) {
    if (b_colsum) column_sums(b, op.rs_b, op.cs_b, op.k, op.n, b_colsum);
    gemm_dot<T, Arch>(op, alpha, a, b, beta, c, epi_c, max_threads);
    return;
  }
  tile_epilogue<T> epi = epi_c;

  // Computing C^T = B^T A^T swaps the roles of m and n. Take it when it pads noticeably
  // less (skinny n); the transposed C is then written element-wise, which is cheap next
  // to the k-long dot products behind each element.
  const std::size_t direct = round_up(op.m, MR) * round_up(op.n, NR);
  const std::size_t swapped = round_up(op.n, MR) * round_up(op.m, NR);
  const bool swap = swapped * 5 < direct * 4;
  const std::size_t tiles = ceil_div(op.m, MR) * ceil_div(op.n, NR);  // of the direct problem
  const double flops_c =
      2.0 * static_cast<double>(op.m) * static_cast<double>(op.n) * static_cast<double>(op.k);
  // Column sums through the ones row where the direct problem always runs on one thread
  // (by its shape: the way of summing must not depend on the thread count) with a padding
  // row to spare; otherwise a pass of their own.
  T* fused_colsum = nullptr;
  if (b_colsum) {
    const bool one_thread = flops_c < kParallelFlops || tiles <= 1;
    if (!swap && one_thread && alpha == T(1) && op.m % MR != 0) {
      fused_colsum = b_colsum;
    } else {
      column_sums(b, op.rs_b, op.cs_b, op.k, op.n, b_colsum);
    }
  }
  if (swap) {
    std::swap(op.m, op.n);
    std::swap(a, b);
    const operands o = op;
    op.rs_a = o.cs_b;
    op.cs_a = o.rs_b;
    op.rs_b = o.cs_a;
    op.cs_b = o.rs_a;
    op.rs_c = o.cs_c;
    op.cs_c = o.rs_c;
    std::swap(epi.row_bias, epi.col_bias);
  }

  const std::size_t tiles_m = ceil_div(op.m, MR), tiles_n = ceil_div(op.n, NR);
  const double flops =
      2.0 * static_cast<double>(op.m) * static_cast<double>(op.n) * static_cast<double>(op.k);
  std::size_t nt = flops < kParallelFlops ? 1 : std::min(max_threads, tiles_m * tiles_n);
  if (nt <= 1) {
    gemm_serial<T, Arch>(op, alpha, a, b, beta, c, epi, fused_colsum);
    return;
  }

  // Pick a tm x tn grid of thread blocks. Cost (in units of k): the largest block's padded
  // tile area over the FMA throughput, plus the packing each thread repeats: every thread
  // packs the B columns (A rows) of its block, so cutting m duplicates B and vice versa.
  std::size_t best_tm = 1, best_tn = nt;
  double best_cost = 0;
  for (std::size_t tm = 1; tm <= nt; ++tm) {
    if (nt % tm != 0) continue;
    const std::size_t tn = nt / tm;
    if (tm > tiles_m || tn > tiles_n) continue;
    const double area = static_cast<double>(ceil_div(tiles_m, tm) * MR) *
                        static_cast<double>(ceil_div(tiles_n, tn) * NR);
    const double cost = area / (2.0 * cfg::W) + static_cast<double>(op.n) / tn +
                        1.5 * static_cast<double>(op.m) / tm;
    if (best_cost == 0 || cost < best_cost) {
      best_cost = cost;
      best_tm = tm;
      best_tn = tn;
    }
  }
  if (best_tm * best_tn != nt || best_tm > tiles_m || best_tn > tiles_n) {
    // No exact grid fits (e.g. 3 threads, 2 x 1 tiles): cut the longer dimension only.
    if (tiles_m >= tiles_n) {
      best_tm = std::min(nt, tiles_m);
      best_tn = 1;
    } else {
      best_tm = 1;
      best_tn = std::min(nt, tiles_n);
    }
  }

  const std::size_t tm = best_tm, tn = best_tn;
  parallel_for(tm * tn, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      const std::size_t ti = t / tn, tj = t % tn;
      const std::size_t m0 = std::min(op.m, tiles_m * ti / tm * MR);
      const std::size_t m1 = std::min(op.m, tiles_m * (ti + 1) / tm * MR);
      const std::size_t n0 = std::min(op.n, tiles_n * tj / tn * NR);
      const std::size_t n1 = std::min(op.n, tiles_n * (tj + 1) / tn * NR);
      operands sub = op;
      sub.m = m1 - m0;
      sub.n = n1 - n0;
      gemm_serial<T, Arch>(
          sub, alpha, a + static_cast<index_t>(m0) * op.rs_a,
          b + static_cast<index_t>(n0) * op.cs_b, beta,
          c + static_cast<index_t>(m0) * op.rs_c + static_cast<index_t>(n0) * op.cs_c,
          epi.at(m0, n0));
    }
  });
}

// Straightforward path for integer (and any non-SIMD) element types: i-p-j order keeps
// the innermost loop contiguous in B and C for the common non-transposed case.
template <class T>
void gemm_simple(const operands& op, T alpha, const T* a, const T* b, T* c) {
  for (std::size_t i = 0; i < op.m; ++i) {
    T* crow = c + static_cast<index_t>(i) * op.rs_c;
    for (std::size_t p = 0; p < op.k; ++p) {
      const T aip =
          alpha * a[static_cast<index_t>(i) * op.rs_a + static_cast<index_t>(p) * op.cs_a];
      const T* brow = b + static_cast<index_t>(p) * op.rs_b;
      for (std::size_t j = 0; j < op.n; ++j)
        crow[j] += aip * brow[static_cast<index_t>(j) * op.cs_b];
    }
  }
}

template <class T>
void scale_c(std::size_t m, std::size_t n, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + n, T(0));  // overwrite: C may hold NaN garbage
    } else if (beta != T(1)) {
      for (std::size_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

template <class T>
inline constexpr bool use_simd = (std::is_same_v<T, float> ||
                                  std::is_same_v<T, double>)&&xsimd::default_arch::supported();

template <class T>
void column_sums(const T* b, index_t rs, index_t cs, std::size_t rows, std::size_t n, T* out) {
  std::size_t j = 0;
  if constexpr (use_simd<T>) {
    using batch = xsimd::batch<T, xsimd::default_arch>;
    constexpr std::size_t W = batch::size;
    if (cs == 1) {
      // Rows contiguous: up to four vectors of columns stay in registers over all rows, the
      // even and the odd rows in separate accumulators (two dependency chains each).
      constexpr std::size_t V = 4;
      for (; j + W <= n;) {
        const std::size_t nv = std::min(V, (n - j) / W);
        batch even[V], odd[V];
        for (std::size_t v = 0; v < V; ++v) even[v] = odd[v] = batch(T(0));
        std::size_t p = 0;
        for (; p + 2 <= rows; p += 2) {
          const T* r0 = b + static_cast<index_t>(p) * rs + j;
          const T* r1 = r0 + rs;
          for (std::size_t v = 0; v < nv; ++v) {
            even[v] += batch::load_unaligned(r0 + v * W);
            odd[v] += batch::load_unaligned(r1 + v * W);
          }
        }
        if (p < rows) {
          const T* r0 = b + static_cast<index_t>(p) * rs + j;
          for (std::size_t v = 0; v < nv; ++v) even[v] += batch::load_unaligned(r0 + v * W);
        }
        for (std::size_t v = 0; v < nv; ++v) (even[v] + odd[v]).store_unaligned(out + j + v * W);
        j += nv * W;
      }
    } else if (rs == 1) {
      // Columns contiguous: each is a run, summed in W lanes, then the lanes in order.
      for (; j < n; ++j) {
        const T* col = b + static_cast<index_t>(j) * cs;
        batch acc(T(0));
        std::size_t p = 0;
        for (; p + W <= rows; p += W) acc += batch::load_unaligned(col + p);
        alignas(kAlign) T lanes[W];
        acc.store_aligned(lanes);
        T sum = T(0);
        for (std::size_t l = 0; l < W; ++l) sum += lanes[l];
        for (; p < rows; ++p) sum += col[p];
        out[j] = sum;
      }
    }
  }
  for (; j < n; ++j) {
    T sum = T(0);
    for (std::size_t p = 0; p < rows; ++p)
      sum += b[static_cast<index_t>(p) * rs + static_cast<index_t>(j) * cs];
    out[j] = sum;
  }
}

/// The epilogue as a pass of its own over C (the paths that never hold C in registers).
template <class T>
void finish_c(std::size_t m, std::size_t n, T* c, std::size_t ldc, const T* bias,
              gemm_activation act) {
  for (std::size_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if constexpr (use_simd<T>) {
      finish_span<xsimd::default_arch>(row, n, bias, act);
    } else {
      for (std::size_t j = 0; j < n; ++j) row[j] = finish_scalar(row[j], bias, j, act);
    }
  }
}

/// The optional last step of a GEMM: C = act(C + bias), bias per column (null: none).
template <class T>
struct gemm_epilogue {
  const T* bias = nullptr;
  gemm_activation act = gemm_activation::linear;
  bool active() const { return bias != nullptr || act != gemm_activation::linear; }
};

template <class T>
void gemm_impl(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
               const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c,
               std::size_t ldc, std::size_t max_threads, const gemm_epilogue<T>& ep, T* b_colsum) {
  if (n == 0) return;
  if (m == 0 || k == 0 || alpha == T(0)) {  // BLAS convention: A is not read (nor B for C)
    scale_c(m, n, beta, c, ldc);
    if (ep.active() && m) finish_c(m, n, c, ldc, ep.bias, ep.act);
    if (b_colsum) {
      column_sums(b, trans_b ? 1 : static_cast<index_t>(ldb),
                  trans_b ? static_cast<index_t>(ldb) : 1, k, n, b_colsum);
    }
    return;
  }
  operands op{m,
              n,
              k,
              trans_a ? 1 : static_cast<index_t>(lda),
              trans_a ? static_cast<index_t>(lda) : 1,
              trans_b ? 1 : static_cast<index_t>(ldb),
              trans_b ? static_cast<index_t>(ldb) : 1,
              static_cast<index_t>(ldc),
              1};
  if constexpr (use_simd<T>) {
    tile_epilogue<T> epi;
    epi.col_bias = ep.bias;
    epi.act = ep.act;
    epi.active = ep.active();
    gemm_blocked<T, xsimd::default_arch>(op, alpha, a, b, beta, c, epi, b_colsum, max_threads,
                                         true);
  } else {
    scale_c(m, n, beta, c, ldc);
    gemm_simple(op, alpha, a, b, c);
    if (ep.active()) finish_c(m, n, c, ldc, ep.bias, ep.act);
    if (b_colsum) column_sums(b, op.rs_b, op.cs_b, k, n, b_colsum);
  }
}

}  // namespace gemm_detail

using gemm_detail::gemm_epilogue;

/// C[m x n] = act(alpha * op(A)[m x k] * op(B)[k x n] + beta * C + bias), all row-major;
/// op(X) is X or X^T per trans_a / trans_b, and lda / ldb / ldc are the row strides of the
/// matrices as stored (for trans_a, A is stored k x m with lda >= m). beta == 0 overwrites C
/// without reading it. The epilogue (bias: n values, one per column; act) is optional and
/// applied as C is written. Uses the thread pool for products above ~2 MFLOP.
///
/// b_colsum (null: not wanted) receives the n column sums of op(B), unscaled: with
/// B = dZ that is a layer's bias gradient next to its weight gradient X^T dZ.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc,
          const gemm_epilogue<T>& ep = {}, T* b_colsum = nullptr) {
  gemm_detail::gemm_impl(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                         num_threads(), ep, b_colsum);
}

/// `batch` independent products; operand i starts at a + i * stride_a (and likewise for b
/// and c). A stride of 0 shares that operand between all products (stride_c == 0 applies
/// the products to the same C one after another). The epilogue applies to every product's
/// C, and to a shared C once, after the last product. b_colsum receives the column sums of
/// every op(B_i), added over the batch.
template <class T>
void gemm_batched(std::size_t batch, bool trans_a, bool trans_b, std::size_t m, std::size_t n,
                  std::size_t k, T alpha, const T* a, std::size_t lda, std::size_t stride_a,
                  const T* b, std::size_t ldb, std::size_t stride_b, T beta, T* c, std::size_t ldc,
                  std::size_t stride_c, const gemm_epilogue<T>& ep = {}, T* b_colsum = nullptr) {
  if (b_colsum && batch == 1) {
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, b_colsum);
    return;
  }
  if (b_colsum) {
    std::fill(b_colsum, b_colsum + n, T(0));
    std::vector<T> one(n);
    const auto rs = static_cast<gemm_detail::index_t>(trans_b ? 1 : ldb),
               cs = static_cast<gemm_detail::index_t>(trans_b ? ldb : 1);
    for (std::size_t i = 0; i < batch; ++i) {
      gemm_detail::column_sums(b + i * stride_b, rs, cs, k, n, one.data());
      for (std::size_t j = 0; j < n; ++j) b_colsum[j] += one[j];
    }
  }
  if (batch == 0 || m == 0 || n == 0) return;
  if (stride_c == 0 && batch > 1 && ep.active()) {
    gemm_batched<T>(batch, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                    beta, c, ldc, stride_c);
    gemm_detail::finish_c(m, n, c, ldc, ep.bias, ep.act);
    return;
  }
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  // Outputs are disjoint when each C starts past the end of the previous one; only then
  // may products run concurrently.
  const bool disjoint = stride_c >= (m - 1) * ldc + n;
  if (disjoint && batch > 1 && flops < gemm_detail::kParallelFlops &&
      flops * static_cast<double>(batch) >= gemm_detail::kParallelFlops) {
    // Many small products: one product per task, each single-threaded.
    const auto grain = static_cast<std::size_t>(
        std::max(1.0, std::ceil(gemm_detail::kParallelFlops / 2 / std::max(flops, 1.0))));
    parallel_for(batch, grain, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        gemm_detail::gemm_impl(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda,
                               b + i * stride_b, ldb, beta, c + i * stride_c, ldc, 1, ep,
                               static_cast<T*>(nullptr));
    });
    return;
  }
  for (std::size_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
         c + i * stride_c, ldc, ep);
}

}  // namespace locus::backend::cpu
