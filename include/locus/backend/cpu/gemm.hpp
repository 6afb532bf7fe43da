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
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

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
  scratch a, b, partial, vacc;
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
template <std::size_t MR, class T>
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

// C tile (mr x nr valid of MR x NR) = alpha * Ap * Bp + beta * C; beta == 0 never reads C.
template <std::size_t MR, std::size_t NV, class Arch, class T>
void micro_kernel(std::size_t kc, const T* __restrict ap, const T* __restrict bp, T* c,
                  index_t rs_c, index_t cs_c, std::size_t mr, std::size_t nr, T alpha, T beta) {
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
    for (std::size_t v = 0; v < NV; ++v) bv[v] = batch::load_aligned(bp + v * W);
#pragma GCC unroll 32
    for (std::size_t r = 0; r < MR; ++r) {
      const batch av(ap[r]);
#pragma GCC unroll 4
      for (std::size_t v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
    }
    ap += MR;
    bp += NR;
  }

  const batch va(alpha);
  if (mr == MR && nr == NR && cs_c == 1) {
    if (beta == T(0)) {
#pragma GCC unroll 32
      for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v)
          (va * acc[r][v]).store_unaligned(c + static_cast<index_t>(r) * rs_c + v * W);
    } else {
      const batch vb(beta);
#pragma GCC unroll 32
      for (std::size_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v) {
          T* cp = c + static_cast<index_t>(r) * rs_c + v * W;
          xsimd::fma(va, acc[r][v], vb * batch::load_unaligned(cp)).store_unaligned(cp);
        }
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

// ---- single-threaded blocked driver --------------------------------------------------

struct operands {
  std::size_t m, n, k;
  index_t rs_a, cs_a, rs_b, cs_b, rs_c, cs_c;
};

template <class T, class Arch>
void gemm_serial(const operands& op, T alpha, const T* a, const T* b, T beta, T* c) {
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

  for (std::size_t ic = 0; ic < m; ic += mc_max) {
    const std::size_t mc = std::min(mc_max, m - ic);
    for (std::size_t pc = 0; pc < k; pc += kc_max) {
      const std::size_t kc = std::min(kc_max, k - pc);
      const T beta_eff = pc == 0 ? beta : T(1);  // later k blocks accumulate
      pack_a<MR>(mc, kc,
                 a + static_cast<index_t>(ic) * op.rs_a + static_cast<index_t>(pc) * op.cs_a,
                 op.rs_a, op.cs_a, abuf);
      for (std::size_t jc = 0; jc < n; jc += nc_max) {
        const std::size_t nc = std::min(nc_max, n - jc);
        pack_b<NR, Arch>(
            kc, nc, b + static_cast<index_t>(pc) * op.rs_b + static_cast<index_t>(jc) * op.cs_b,
            op.rs_b, op.cs_b, bbuf);
        for (std::size_t ir = 0; ir < mc; ir += MR) {
          const T* ap = abuf + ir * kc;
          T* crow = c + static_cast<index_t>(ic + ir) * op.rs_c;
          for (std::size_t jr = 0; jr < nc; jr += NR) {
            micro_kernel<MR, cfg::NV, Arch>(
                kc, ap, bbuf + jr * kc, crow + static_cast<index_t>(jc + jr) * op.cs_c, op.rs_c,
                op.cs_c, std::min(MR, mc - ir), std::min(NR, nc - jr), alpha, beta_eff);
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
              std::size_t max_threads) {
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
  }
}

// ---- orientation, threading ----------------------------------------------------------

template <class T, class Arch>
void gemm_blocked(operands op, T alpha, const T* a, const T* b, T beta, T* c,
                  std::size_t max_threads) {
  using cfg = config<T, Arch>;
  constexpr std::size_t MR = cfg::MR, NR = cfg::NR;

  if (dot_path_fits<T, Arch>(op)) {
    gemm_dot<T, Arch>(op, alpha, a, b, beta, c, max_threads);
    return;
  }

  // Computing C^T = B^T A^T swaps the roles of m and n. Take it when it pads noticeably
  // less (skinny n); the transposed C is then written element-wise, which is cheap next
  // to the k-long dot products behind each element.
  const std::size_t direct = round_up(op.m, MR) * round_up(op.n, NR);
  const std::size_t swapped = round_up(op.n, MR) * round_up(op.m, NR);
  if (swapped * 5 < direct * 4) {
    std::swap(op.m, op.n);
    std::swap(a, b);
    const operands o = op;
    op.rs_a = o.cs_b;
    op.cs_a = o.rs_b;
    op.rs_b = o.cs_a;
    op.cs_b = o.rs_a;
    op.rs_c = o.cs_c;
    op.cs_c = o.rs_c;
  }

  const std::size_t tiles_m = ceil_div(op.m, MR), tiles_n = ceil_div(op.n, NR);
  const double flops =
      2.0 * static_cast<double>(op.m) * static_cast<double>(op.n) * static_cast<double>(op.k);
  std::size_t nt = flops < kParallelFlops ? 1 : std::min(max_threads, tiles_m * tiles_n);
  if (nt <= 1) {
    gemm_serial<T, Arch>(op, alpha, a, b, beta, c);
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
          c + static_cast<index_t>(m0) * op.rs_c + static_cast<index_t>(n0) * op.cs_c);
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
void gemm_impl(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
               const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c,
               std::size_t ldc, std::size_t max_threads) {
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == T(0)) {  // BLAS convention: A and B are not read
    scale_c(m, n, beta, c, ldc);
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
    gemm_blocked<T, xsimd::default_arch>(op, alpha, a, b, beta, c, max_threads);
  } else {
    scale_c(m, n, beta, c, ldc);
    gemm_simple(op, alpha, a, b, c);
  }
}

}  // namespace gemm_detail

/// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all row-major; op(X) is X or
/// X^T per trans_a / trans_b, and lda / ldb / ldc are the row strides of the matrices as
/// stored (for trans_a, A is stored k x m with lda >= m). beta == 0 overwrites C without
/// reading it. Uses the thread pool for products above ~2 MFLOP.
template <class T>
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  gemm_detail::gemm_impl(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                         num_threads());
}

/// `batch` independent products; operand i starts at a + i * stride_a (and likewise for b
/// and c). A stride of 0 shares that operand between all products (stride_c == 0 applies
/// the products to the same C one after another).
template <class T>
void gemm_batched(std::size_t batch, bool trans_a, bool trans_b, std::size_t m, std::size_t n,
                  std::size_t k, T alpha, const T* a, std::size_t lda, std::size_t stride_a,
                  const T* b, std::size_t ldb, std::size_t stride_b, T beta, T* c, std::size_t ldc,
                  std::size_t stride_c) {
  if (batch == 0 || m == 0 || n == 0) return;
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
                               b + i * stride_b, ldb, beta, c + i * stride_c, ldc, 1);
    });
    return;
  }
  for (std::size_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
         c + i * stride_c, ldc);
}

}  // namespace locus::backend::cpu
