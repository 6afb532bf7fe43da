// uint8 x int8 -> int32 matrix products for the int8 plan, three ways, chosen at run time:
//  * avx512_vnni: vpdpbusd multiplies 4 uint8 by 4 int8 and adds the four products to an
//    int32 lane in one instruction (64 products per instruction);
//  * avx2: widens both operands to int16 and uses vpmaddwd (pairs of int16 products added
//    into int32). The usual AVX2 route, vpmaddubsw, adds two uint8 x int8 products in a
//    saturating int16 (255 * 127 * 2 > 32767) and silently clips; this one is exact;
//  * portable: plain int32 loops, for any CPU.
//  * amx: AMX tiles (tdpbusd, 16 x 16 x 64 products per instruction) where the CPU and the
//    operating system allow them, with the VNNI kernel's write-back.
// All of them compute the same integers, so an int8 plan's results do not depend on the CPU.
// The ISA-specific functions carry target attributes: a build for the baseline x86-64 still
// contains them, and they run only where the CPU reports the instructions.
//
// C[m, n] = sum_k A[m, k] B[k, n]: A is uint8 rows of lda bytes (k padded to a multiple of
// 4 with anything: the padded rows of B are zero), B is packed once per layer (PackedB).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// simd.hpp first: with GCC 12 it reads <immintrin.h> with that compiler's warnings handled.
#include "../../backend/cpu/simd.hpp"
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>  // every intrinsic, usable in functions with target attributes
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif
#include "../../error.hpp"

namespace locus::inference::cpu {

enum class Int8Kernel { automatic, amx, avx512_vnni, avx2, portable };

inline const char* to_string(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::amx:
      return "amx";
    case Int8Kernel::avx512_vnni:
      return "avx512_vnni";
    case Int8Kernel::avx2:
      return "avx2";
    case Int8Kernel::portable:
      return "portable";
    default:
      return "automatic";
  }
}

#if defined(__x86_64__) || defined(__i386__)
#define LOCUS_INT8_X86 1
#endif

#ifdef LOCUS_INT8_X86
namespace int8_detail {
/// AMX-TILE and AMX-INT8 in CPUID (leaf 7, EDX bits 24 and 25), and the kernel's
/// permission to use the tile registers (Linux asks programs to request it: arch_prctl
/// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA). Asked once per process.
inline bool amx_usable() {
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 24) & 1u) || !((d >> 25) & 1u)) return false;
#if defined(__linux__) && defined(__x86_64__)
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return false;
#endif
  }();
  return usable;
}
}  // namespace int8_detail
#endif

/// Whether this CPU runs kernel k.
inline bool int8_kernel_available(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::portable:
    case Int8Kernel::automatic:
      return true;
#ifdef LOCUS_INT8_X86
    case Int8Kernel::amx:
      // The write-back of the AMX kernel is the VNNI kernel's.
      return int8_kernel_available(Int8Kernel::avx512_vnni) && int8_detail::amx_usable();
    case Int8Kernel::avx512_vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
    case Int8Kernel::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

/// The kernel to use: the best the CPU has for `automatic`; a named one it lacks is refused.
inline Int8Kernel resolve_int8_kernel(Int8Kernel k) {
  if (k == Int8Kernel::automatic) {
    if (int8_kernel_available(Int8Kernel::amx)) return Int8Kernel::amx;
    if (int8_kernel_available(Int8Kernel::avx512_vnni)) return Int8Kernel::avx512_vnni;
    if (int8_kernel_available(Int8Kernel::avx2)) return Int8Kernel::avx2;
    return Int8Kernel::portable;
  }
  if (!int8_kernel_available(k))
    throw unsupported_error(std::string("locus: the int8 kernel ") + to_string(k) +
                            " needs instructions this CPU does not have; use "
                            "Int8Kernel::automatic");
  return k;
}

inline std::size_t round_up(std::size_t v, std::size_t m) {
  return (v + m - 1) / m * m;
}

/// B ([k, n] int8, row-major) in the layout of one kernel: vnni: per 16 columns, per 4 k,
/// 16 x 4 bytes (column-major within the group); amx: the same with k padded to 64, so that
/// 16 consecutive groups of 4 k are one 16 x 64-byte tile; avx2: per 8 columns, per 2 k,
/// 8 x 2 int16; portable: [kp, n] int8 as it is.
struct PackedB {
  Int8Kernel kernel = Int8Kernel::portable;
  std::size_t k = 0, n = 0, kp = 0, np = 0;
  std::vector<std::int8_t> bytes;
  std::vector<std::int16_t> words;

  PackedB() = default;
  PackedB(Int8Kernel which, const std::int8_t* b, std::size_t k_, std::size_t n_)
      : kernel(which), k(k_), n(n_), kp(round_up(k_, which == Int8Kernel::amx ? 64 : 4)) {
    auto at = [&](std::size_t kk, std::size_t nn) -> std::int8_t {
      return kk < k && nn < n ? b[kk * n + nn] : std::int8_t{0};
    };
    switch (kernel) {
      case Int8Kernel::amx:
      case Int8Kernel::avx512_vnni:
        np = round_up(n, 16);
        bytes.resize(np * kp);
        for (std::size_t nb = 0; nb < np / 16; ++nb)
          for (std::size_t k4 = 0; k4 < kp / 4; ++k4)
            for (std::size_t c = 0; c < 16; ++c)
              for (std::size_t i = 0; i < 4; ++i)
                bytes[((nb * (kp / 4) + k4) * 16 + c) * 4 + i] = at(k4 * 4 + i, nb * 16 + c);
        break;
      case Int8Kernel::avx2:
        np = round_up(n, 8);
        words.resize(np * kp);
        for (std::size_t nb = 0; nb < np / 8; ++nb)
          for (std::size_t k2 = 0; k2 < kp / 2; ++k2)
            for (std::size_t c = 0; c < 8; ++c)
              for (std::size_t i = 0; i < 2; ++i)
                words[((nb * (kp / 2) + k2) * 8 + c) * 2 + i] = at(k2 * 2 + i, nb * 8 + c);
        break;
      default:
        np = n;
        bytes.resize(kp * n);
        for (std::size_t kk = 0; kk < kp; ++kk)
          for (std::size_t nn = 0; nn < n; ++nn) bytes[kk * n + nn] = at(kk, nn);
        break;
    }
  }
};

/// The write-back of quantization.hpp fused into a product's tiles, for the activations
/// it can apply in registers (linear, relu): out[r, n] = act(float(C[r, n] - corr[n]) * mult[n]
/// + bias[n]) as float, or requantised: clamp(rint(f * inv_scale) + zp, 0, 255) as uint8.
/// corr, mult and bias hold np values (zero past n). Every kernel rounds alike (one fused
/// multiply-add, then IEEE operations), so all three write the same bytes.
struct Int8Epilogue {
  const std::int32_t* corr;
  const float* mult;
  const float* bias;
  bool relu;
  bool to_float;
  float inv_scale;
  float zp;
  void* out;
  std::size_t ldo;  ///< elements per row of out
  std::size_t n;    ///< valid columns
  /// Rows come in groups of four (a 2x2 max-pooling window, im2col rows in window order):
  /// each group's largest sums are written back once, as row r / 4. The write-back is
  /// increasing in the sum (positive scales, relu), so pooling before it is exact.
  bool pool4 = false;
};

namespace int8_detail {

/// The scalar form of the fused write-back (the portable kernel, and the reference).
inline void write_back_scalar(const std::int32_t* c, std::size_t row, const Int8Epilogue& e) {
  for (std::size_t n = 0; n < e.n; ++n) {
    float f = std::fma(static_cast<float>(c[n] - e.corr[n]), e.mult[n], e.bias[n]);
    if (e.relu) f = f > 0.0f ? f : 0.0f;
    if (e.to_float) {
      static_cast<float*>(e.out)[row * e.ldo + n] = f;
    } else {
      const float q = std::min(std::max(std::nearbyint(f * e.inv_scale) + e.zp, 0.0f), 255.0f);
      static_cast<std::uint8_t*>(e.out)[row * e.ldo + n] = static_cast<std::uint8_t>(q);
    }
  }
}

#ifdef LOCUS_INT8_X86
// R rows x NB groups of 16 columns; acc in zmm registers.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni_store(
    __m512i acc, std::size_t row, std::size_t col, const Int8Epilogue& e) {
  if (col >= e.n) return;
  const __mmask16 mask =
      e.n - col >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (e.n - col)) - 1);
  const __m512i q = _mm512_sub_epi32(acc, _mm512_loadu_si512(e.corr + col));
  __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_loadu_ps(e.mult + col),
                             _mm512_loadu_ps(e.bias + col));
  if (e.relu) f = _mm512_max_ps(f, _mm512_setzero_ps());
  if (e.to_float) {
    _mm512_mask_storeu_ps(static_cast<float*>(e.out) + row * e.ldo + col, mask, f);
    return;
  }
  f = _mm512_roundscale_ps(_mm512_mul_ps(f, _mm512_set1_ps(e.inv_scale)),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  f = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(f, _mm512_set1_ps(e.zp)), _mm512_setzero_ps()),
                    _mm512_set1_ps(255.0f));
  _mm512_mask_cvtusepi32_storeu_epi8(static_cast<std::uint8_t*>(e.out) + row * e.ldo + col, mask,
                                     _mm512_cvtps_epi32(f));
}

template <std::size_t NB, std::size_t R>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni_tile(
    const std::uint8_t* a, std::size_t lda, const std::int8_t* b, std::size_t kp, std::int32_t* c,
    std::size_t ldc, const Int8Epilogue* e, std::size_t row0, std::size_t col0) {
  __m512i acc[R][NB];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_si512();
  const std::size_t group = kp * 16;  // bytes per 16-column group
  for (std::size_t k4 = 0; k4 < kp / 4; ++k4) {
    __m512i bv[NB];
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j)
      bv[j] = _mm512_loadu_si512(static_cast<const void*>(b + j * group + k4 * 64));
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      std::int32_t word;
      std::memcpy(&word, a + r * lda + k4 * 4, 4);
      const __m512i av = _mm512_set1_epi32(word);
#pragma GCC unroll 16
      for (std::size_t j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
    }
  }
  if (e) {
    if constexpr (R % 4 == 0) {
      if (e->pool4) {
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; r += 4)
#pragma GCC unroll 16
          for (std::size_t j = 0; j < NB; ++j)
            vnni_store(_mm512_max_epi32(_mm512_max_epi32(acc[r][j], acc[r + 1][j]),
                                        _mm512_max_epi32(acc[r + 2][j], acc[r + 3][j])),
                       (row0 + r) / 4, col0 + j * 16, *e);
        return;
      }
    }
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (std::size_t j = 0; j < NB; ++j) vnni_store(acc[r][j], row0 + r, col0 + j * 16, *e);
    return;
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j)
      _mm512_storeu_si512(static_cast<void*>(c + r * ldc + j * 16), acc[r][j]);
}

template <std::size_t NB>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni_columns(
    const std::uint8_t* a, std::size_t m, std::size_t lda, const std::int8_t* b, std::size_t kp,
    std::int32_t* c, std::size_t ldc, const Int8Epilogue* e, std::size_t col0) {
  constexpr std::size_t R = NB == 1 ? 12 : NB == 2 ? 12 : NB == 3 ? 8 : 6;
  std::size_t r = 0;
  if (e && e->pool4) {  // whole windows per tile (m is a multiple of 4)
    constexpr std::size_t R4 = R / 4 * 4;
    for (; r + R4 <= m; r += R4)
      vnni_tile<NB, R4>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
    for (; r < m; r += 4) vnni_tile<NB, 4>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
    return;
  }
  for (; r + R <= m; r += R)
    vnni_tile<NB, R>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
  for (; r < m; ++r) vnni_tile<NB, 1>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void gemm_vnni(
    const std::uint8_t* a, std::size_t m, std::size_t lda, const PackedB& b, std::int32_t* c,
    std::size_t ldc, const Int8Epilogue* e) {
  const std::size_t groups = b.np / 16, group = b.kp * 16;
  std::size_t g = 0;
  for (; g + 4 <= groups; g += 4)
    vnni_columns<4>(a, m, lda, b.bytes.data() + g * group, b.kp, c + g * 16, ldc, e, g * 16);
  const std::size_t rest = groups - g;
  const std::int8_t* bg = b.bytes.data() + g * group;
  if (rest == 3) vnni_columns<3>(a, m, lda, bg, b.kp, c + g * 16, ldc, e, g * 16);
  if (rest == 2) vnni_columns<2>(a, m, lda, bg, b.kp, c + g * 16, ldc, e, g * 16);
  if (rest == 1) vnni_columns<1>(a, m, lda, bg, b.kp, c + g * 16, ldc, e, g * 16);
}

__attribute__((target("avx2,fma"))) inline void avx2_store(__m256i acc, std::size_t row,
                                                           std::size_t col, const Int8Epilogue& e) {
  if (col >= e.n) return;
  const std::size_t valid = std::min<std::size_t>(8, e.n - col);
  const __m256i q =
      _mm256_sub_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.corr + col)));
  __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(e.mult + col),
                             _mm256_loadu_ps(e.bias + col));
  if (e.relu) f = _mm256_max_ps(f, _mm256_setzero_ps());
  alignas(32) float out[8];
  if (e.to_float) {
    _mm256_store_ps(out, f);
    std::memcpy(static_cast<float*>(e.out) + row * e.ldo + col, out, valid * sizeof(float));
    return;
  }
  f = _mm256_round_ps(_mm256_mul_ps(f, _mm256_set1_ps(e.inv_scale)),
                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  f = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(f, _mm256_set1_ps(e.zp)), _mm256_setzero_ps()),
                    _mm256_set1_ps(255.0f));
  const __m256i i32 = _mm256_cvtps_epi32(f);
  // 8 int32 in [0, 255] -> 8 bytes: pack to int16 and to uint8 within each 128-bit half.
  const __m128i w16 =
      _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  const __m128i b8 = _mm_packus_epi16(w16, w16);
  alignas(16) std::uint8_t bytes[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(bytes), b8);
  std::memcpy(static_cast<std::uint8_t*>(e.out) + row * e.ldo + col, bytes, valid);
}

// AMX: the products in tiles of 16 rows x 16 columns of int32, each tdpbusd a 16 x 64 block
// of A times a 64 x 16 block of B (16 x 16 x 64 products). Tiles tmm0-3 hold up to 2 x 2
// blocks of C, tmm4-5 the A blocks and tmm6-7 the B blocks of a k step. Rows past m (the
// last block of rows) come from a zeroed copy, so nothing past A is read. The C blocks go
// through a 16 x 16 scratch to the VNNI kernel's write-back (or to C).
struct alignas(64) amx_config {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

template <int MT, int NT>
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni"))) inline void amx_block(
    const std::uint8_t* a0, const std::uint8_t* a1, std::size_t lda, const std::int8_t* b0,
    const std::int8_t* b1, std::size_t kp, std::int32_t (*out)[16][16]) {
  _tile_zero(0);
  if constexpr (NT > 1) _tile_zero(1);
  if constexpr (MT > 1) _tile_zero(2);
  if constexpr (MT > 1 && NT > 1) _tile_zero(3);
  for (std::size_t k = 0; k < kp; k += 64) {
    _tile_loadd(4, a0 + k, static_cast<long>(lda));
    if constexpr (MT > 1) _tile_loadd(5, a1 + k, static_cast<long>(lda));
    _tile_loadd(6, b0 + k * 16, 64);
    if constexpr (NT > 1) _tile_loadd(7, b1 + k * 16, 64);
    _tile_dpbusd(0, 4, 6);
    if constexpr (NT > 1) _tile_dpbusd(1, 4, 7);
    if constexpr (MT > 1) _tile_dpbusd(2, 5, 6);
    if constexpr (MT > 1 && NT > 1) _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, out[0], 64);
  if constexpr (NT > 1) _tile_stored(1, out[1], 64);
  if constexpr (MT > 1) _tile_stored(2, out[2], 64);
  if constexpr (MT > 1 && NT > 1) _tile_stored(3, out[3], 64);
}

/// Rows [r0, r0 + rows) of one 16 x 16 block of C, written back (or stored in C).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void amx_write(
    const std::int32_t (&blk)[16][16], std::size_t r0, std::size_t rows, std::size_t col,
    std::int32_t* c, std::size_t ldc, const Int8Epilogue* e) {
  if (!e) {
    for (std::size_t r = 0; r < rows; ++r)
      _mm512_storeu_si512(static_cast<void*>(c + (r0 + r) * ldc + col), _mm512_loadu_si512(blk[r]));
    return;
  }
  if (e->pool4) {  // rows % 4 == 0 and r0 % 4 == 0: whole windows
    for (std::size_t r = 0; r < rows; r += 4)
      vnni_store(
          _mm512_max_epi32(
              _mm512_max_epi32(_mm512_loadu_si512(blk[r]), _mm512_loadu_si512(blk[r + 1])),
              _mm512_max_epi32(_mm512_loadu_si512(blk[r + 2]), _mm512_loadu_si512(blk[r + 3]))),
          (r0 + r) / 4, col, *e);
    return;
  }
  for (std::size_t r = 0; r < rows; ++r) vnni_store(_mm512_loadu_si512(blk[r]), r0 + r, col, *e);
}

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni"))) inline void gemm_amx(
    const std::uint8_t* a, std::size_t m, std::size_t lda, const PackedB& b, std::int32_t* c,
    std::size_t ldc, const Int8Epilogue* e) {
  amx_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  // The last block of rows, padded with zero rows (grows once per thread, then reused).
  thread_local std::vector<std::uint8_t> tail;
  const std::size_t full = m / 16 * 16;
  if (full < m) {
    tail.assign(16 * lda, 0);
    std::memcpy(tail.data(), a + full * lda, (m - full) * lda);
  }
  auto rows_at = [&](std::size_t r) { return r < full ? a + r * lda : tail.data(); };
  const std::size_t groups = b.np / 16, group = b.kp * 16;
  alignas(64) std::int32_t out[4][16][16];
  for (std::size_t g = 0; g < groups; g += 2) {
    const bool two = g + 1 < groups;
    const std::int8_t* b0 = b.bytes.data() + g * group;
    const std::int8_t* b1 = two ? b0 + group : b0;
    for (std::size_t r = 0; r < m; r += 32) {
      const bool pair = r + 16 < m;
      if (pair && two) {
        amx_block<2, 2>(rows_at(r), rows_at(r + 16), lda, b0, b1, b.kp, out);
      } else if (pair) {
        amx_block<2, 1>(rows_at(r), rows_at(r + 16), lda, b0, b1, b.kp, out);
      } else if (two) {
        amx_block<1, 2>(rows_at(r), rows_at(r), lda, b0, b1, b.kp, out);
      } else {
        amx_block<1, 1>(rows_at(r), rows_at(r), lda, b0, b1, b.kp, out);
      }
      const std::size_t rows0 = std::min<std::size_t>(16, m - r);
      amx_write(out[0], r, rows0, g * 16, c, ldc, e);
      if (two) amx_write(out[1], r, rows0, (g + 1) * 16, c, ldc, e);
      if (pair) {
        const std::size_t rows1 = std::min<std::size_t>(16, m - r - 16);
        amx_write(out[2], r + 16, rows1, g * 16, c, ldc, e);
        if (two) amx_write(out[3], r + 16, rows1, (g + 1) * 16, c, ldc, e);
      }
    }
  }
  _tile_release();
}

// R rows x NB groups of 8 columns; int16 pairs through vpmaddwd (exact).
template <std::size_t NB, std::size_t R>
__attribute__((target("avx2,fma"))) inline void avx2_tile(const std::uint8_t* a, std::size_t lda,
                                                          const std::int16_t* b, std::size_t kp,
                                                          std::int32_t* c, std::size_t ldc,
                                                          const Int8Epilogue* e, std::size_t row0,
                                                          std::size_t col0) {
  __m256i acc[R][NB];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j) acc[r][j] = _mm256_setzero_si256();
  const std::size_t group = kp * 8;  // int16 per 8-column group
  for (std::size_t k2 = 0; k2 < kp / 2; ++k2) {
    __m256i bv[NB];
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j)
      bv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * group + k2 * 16));
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const std::uint8_t* ar = a + r * lda + k2 * 2;
      const __m256i av = _mm256_set1_epi32(static_cast<std::int32_t>(ar[0] | (ar[1] << 16)));
#pragma GCC unroll 16
      for (std::size_t j = 0; j < NB; ++j)
        acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(av, bv[j]));
    }
  }
  if (e) {
    if constexpr (R % 4 == 0) {
      if (e->pool4) {
#pragma GCC unroll 16
        for (std::size_t r = 0; r < R; r += 4)
#pragma GCC unroll 16
          for (std::size_t j = 0; j < NB; ++j)
            avx2_store(_mm256_max_epi32(_mm256_max_epi32(acc[r][j], acc[r + 1][j]),
                                        _mm256_max_epi32(acc[r + 2][j], acc[r + 3][j])),
                       (row0 + r) / 4, col0 + j * 8, *e);
        return;
      }
    }
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (std::size_t j = 0; j < NB; ++j) avx2_store(acc[r][j], row0 + r, col0 + j * 8, *e);
    return;
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (std::size_t j = 0; j < NB; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + j * 8), acc[r][j]);
}

template <std::size_t NB>
__attribute__((target("avx2,fma"))) inline void avx2_columns(const std::uint8_t* a, std::size_t m,
                                                             std::size_t lda, const std::int16_t* b,
                                                             std::size_t kp, std::int32_t* c,
                                                             std::size_t ldc, const Int8Epilogue* e,
                                                             std::size_t col0) {
  constexpr std::size_t R = NB == 1 ? 8 : NB == 2 ? 4 : 2;
  std::size_t r = 0;
  if (e && e->pool4) {  // whole windows per tile (m is a multiple of 4)
    for (; r < m; r += 4) avx2_tile<NB, 4>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
    return;
  }
  for (; r + R <= m; r += R)
    avx2_tile<NB, R>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
  for (; r < m; ++r) avx2_tile<NB, 1>(a + r * lda, lda, b, kp, c + r * ldc, ldc, e, r, col0);
}

__attribute__((target("avx2,fma"))) inline void gemm_avx2(const std::uint8_t* a, std::size_t m,
                                                          std::size_t lda, const PackedB& b,
                                                          std::int32_t* c, std::size_t ldc,
                                                          const Int8Epilogue* e) {
  const std::size_t groups = b.np / 8, group = b.kp * 8;
  std::size_t g = 0;
  for (; g + 4 <= groups; g += 4)
    avx2_columns<4>(a, m, lda, b.words.data() + g * group, b.kp, c + g * 8, ldc, e, g * 8);
  const std::size_t rest = groups - g;
  const std::int16_t* bg = b.words.data() + g * group;
  if (rest == 3) avx2_columns<3>(a, m, lda, bg, b.kp, c + g * 8, ldc, e, g * 8);
  if (rest == 2) avx2_columns<2>(a, m, lda, bg, b.kp, c + g * 8, ldc, e, g * 8);
  if (rest == 1) avx2_columns<1>(a, m, lda, bg, b.kp, c + g * 8, ldc, e, g * 8);
}
#endif

inline void gemm_portable(const std::uint8_t* a, std::size_t m, std::size_t lda, const PackedB& b,
                          std::int32_t* c, std::size_t ldc, const Int8Epilogue* e) {
  auto row_sums = [&](std::size_t r, std::int32_t* cr) {
    std::fill(cr, cr + b.n, 0);
    for (std::size_t k = 0; k < b.k; ++k) {
      const std::int32_t av = a[r * lda + k];
      const std::int8_t* bk = b.bytes.data() + k * b.n;
      for (std::size_t n = 0; n < b.n; ++n) cr[n] += av * bk[n];
    }
  };
  if (e && e->pool4) {  // C: two rows of scratch (ldc >= n each)
    for (std::size_t r = 0; r < m; r += 4) {
      row_sums(r, c);
      for (std::size_t q = 1; q < 4; ++q) {
        row_sums(r + q, c + ldc);
        for (std::size_t n = 0; n < b.n; ++n) c[n] = std::max(c[n], c[ldc + n]);
      }
      write_back_scalar(c, r / 4, *e);
    }
    return;
  }
  for (std::size_t r = 0; r < m; ++r) {
    // With an epilogue, C is one row of scratch (ldc >= n) written back at once.
    std::int32_t* cr = e ? c : c + r * ldc;
    row_sums(r, cr);
    if (e) write_back_scalar(cr, r, *e);
  }
}

}  // namespace int8_detail

/// A (m rows of lda >= b.kp uint8) x B, written back by `e` (rows from 0 of e->out), or,
/// when e is null, stored as int32 in C (m rows of ldc >= b.np). With an epilogue, C is
/// scratch of at least b.np int32.
inline void gemm_u8s8(const std::uint8_t* a, std::size_t m, std::size_t lda, const PackedB& b,
                      std::int32_t* c, std::size_t ldc, const Int8Epilogue* e = nullptr) {
  switch (b.kernel) {
#ifdef LOCUS_INT8_X86
    case Int8Kernel::amx:
      int8_detail::gemm_amx(a, m, lda, b, c, ldc, e);
      return;
    case Int8Kernel::avx512_vnni:
      int8_detail::gemm_vnni(a, m, lda, b, c, ldc, e);
      return;
    case Int8Kernel::avx2:
      int8_detail::gemm_avx2(a, m, lda, b, c, ldc, e);
      return;
#endif
    default:
      int8_detail::gemm_portable(a, m, lda, b, c, ldc, e);
      return;
  }
}

}  // namespace locus::inference::cpu
