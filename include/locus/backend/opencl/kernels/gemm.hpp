// OpenCL GEMM kernels of the OpenCL backend: C_b = alpha * op(A_b) * op(B_b) + beta * C_b.
//
// Usage (by the OpenCL runtime, once per device and element type):
//   gemm_config cfg = choose_gemm_config(dev, /*fp64=*/false);
//   program = clCreateProgramWithSource(ctx, 1, &src = gemm_source(), ...);
//   clBuildProgram(program, 1, &dev, cfg.build_options().c_str(), ...);
//   gemm_kernels ks; create_gemm_kernels(program, &ks);   // every name in gemm_kernel_names()
//   ... per call: enqueue_gemm(queue, ks, cfg, call, &launches);
//
// Two kernel families live in one program, so one build serves every shape (names in
// gemm_kernel_names(); all take the same arguments, locus_gemm_tiled two leading flags):
//  * "direct" kernels, one per transpose combination (locus_gemm_nn, _tn, _tt,
//    _nt_packed): each work-item owns a direct_m x (direct_nv * vector_width) block of C in
//    vector registers; per k-step it broadcasts direct_m scalars of op(A) and FMAs them
//    with direct_nv vectors of op(B). The work-group (a column of such blocks) first copies
//    the op(B) panel it shares into local memory, contiguous, which also turns a transposed
//    B into vector-loadable rows and avoids the cache-set thrashing of power-of-two ldb.
//    PoCL runs a work-group as a loop on one core, and the explicit vector types map
//    straight onto AVX/AVX-512 registers: this is the CPU path for every shape. On GPUs
//    it serves small and skinny products, where 64x64 tiles would leave the GPU idle.
//  * locus_gemm_nt: A * B^T as dot products of contiguous rows, for long k and few
//    outputs (a dense layer's forward pass: 32x10 outputs, k = 5408).
//  * locus_gemm_tiled: the classic local-memory tiled kernel with a wpt_m x wpt_n
//    register block per work-item; the GPU path for large products.
// One launch covers the whole batch (global dimension 2). Edges are handled inside the
// kernels (clamped loads, guarded stores): no padding buffers, no per-call allocation.
//
// Epilogue (gemm_call::bias, act): C = act(C + bias) with the bias per column of C, as one
// more launch of locus_gemm_epilogue right after the product (one work-item per element),
// so a layer's bias and activation need no expression kernel of their own.
//
// Thread-safety: enqueue_gemm calls clSetKernelArg on the given kernels, which is not
// thread-safe for a shared cl_kernel. The caller must serialise calls that use the same
// gemm_kernels (e.g. one mutex per device, or per-thread kernel objects).
#pragma once

#include <CL/cl.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>

#include "../../backend.hpp"

namespace locus::backend::opencl::kernels {

enum class gemm_device_kind { cpu, gpu };

/// Compile-time shape parameters of the GEMM program (all become -D options) plus the
/// run-time policy that picks a kernel for a call. Build one program per gemm_config.
struct gemm_config {
  bool fp64 = false;                              // element type: double instead of float
  bool use_fma = true;                            // fma() (hardware FMA) rather than mad()
  gemm_device_kind kind = gemm_device_kind::gpu;  // selects the large-product path

  // Direct kernels. vector_width is the OpenCL vector type width (2, 4, 8 or 16).
  // nn/tn/tt/nt_packed: a work-item owns direct_m rows x (direct_nv * vector_width) columns.
  // nt kernel (dot products along k): a work-item owns dot_m x dot_n outputs.
  int vector_width = 4;
  int direct_m = 4;
  int direct_nv = 1;
  int direct_kc = 64;  // k-rows of the shared operand panel staged in local memory
  int dot_m = 2;
  int dot_n = 2;
  // nt products use the dot-product kernel only when k is long (else it is mostly
  // horizontal sums and scalar tails) and m*n is small (the packed kernel then has too few
  // work-groups to occupy the device; when it has enough, its cache reuse wins).
  std::size_t dot_min_k = 64;
  std::size_t dot_max_mn = 24576;
  std::size_t direct_local = 1;  // work-group size along dimension 0 (rows of blocks)

  // Tiled kernel: tile_m x tile_n outputs per work-group, k stepped by tile_k,
  // wpt_m x wpt_n outputs per work-item, so the work-group is (tile_n/wpt_n, tile_m/wpt_m).
  int tile_m = 64;
  int tile_n = 64;
  int tile_k = 16;
  int wpt_m = 4;
  int wpt_n = 4;
  bool use_tiled = true;           // false: direct kernels for every shape (CPU devices)
  std::size_t tiled_min_mn = 256;  // tiled only when m*n >= tiled_min_mn * tiled_min_mn

  std::size_t tiled_local_n() const { return static_cast<std::size_t>(tile_n / wpt_n); }
  std::size_t tiled_local_m() const { return static_cast<std::size_t>(tile_m / wpt_m); }
  std::size_t element_size() const { return fp64 ? sizeof(double) : sizeof(float); }

  std::string build_options() const {
    auto d = [](const char* name, long v) {
      return std::string(" -D") + name + "=" + std::to_string(v);
    };
    std::string s = fp64 ? "-DLOCUS_T=double -DLOCUS_FP64=1" : "-DLOCUS_T=float -DLOCUS_FP64=0";
    s += d("LOCUS_USE_FMA", use_fma ? 1 : 0) + d("LOCUS_VW", vector_width) +
         d("LOCUS_DM", direct_m) + d("LOCUS_DNV", direct_nv) + d("LOCUS_KC", direct_kc) +
         d("LOCUS_DOT_M", dot_m) + d("LOCUS_DOT_N", dot_n) + d("LOCUS_TS_M", tile_m) +
         d("LOCUS_TS_N", tile_n) + d("LOCUS_TS_K", tile_k) + d("LOCUS_WPT_M", wpt_m) +
         d("LOCUS_WPT_N", wpt_n);
    return s;
  }
};

namespace detail {

template <class T>
T device_info(cl_device_id dev, cl_device_info what, T fallback) {
  T v{};
  if (clGetDeviceInfo(dev, what, sizeof(T), &v, nullptr) != CL_SUCCESS) return fallback;
  return v;
}

}  // namespace detail

/// The configuration for a device of kind `kind` with the given limits (split from
/// choose_gemm_config so that tests can build the GPU configuration on a CPU device).
inline gemm_config make_gemm_config(gemm_device_kind kind, bool fp64, std::size_t max_wg,
                                    cl_ulong local_mem, bool hardware_fma) {
  gemm_config c;
  c.fp64 = fp64;
  c.kind = kind;
  c.use_fma = hardware_fma;
  if (kind == gemm_device_kind::cpu) {
    // PoCL: a work-item is one SIMD micro-kernel. 16 floats (8 doubles) fill an AVX-512
    // register (LLVM splits them on narrower SIMD). 6 x 32 floats = 12 accumulators + 2
    // B vectors + 1 broadcast: no spills in 32 zmm registers. Measured here (n = 512..2048):
    // 6x32 beat 4x16, 4x64 and 8x32; work-groups of 16 x 6 rows share one packed panel,
    // and k-panels of 256 rows (32 KiB) stay in L1 while giving long inner loops.
    c.vector_width = fp64 ? 8 : 16;
    c.direct_m = 6;
    c.direct_nv = 2;
    c.direct_kc = 256;
    c.dot_m = 4;
    c.dot_n = 4;
    c.direct_local = 16;
    c.use_tiled = false;
    // Never launched on CPUs, but it is compiled: keep it small so it always builds.
    c.tile_m = c.tile_n = 32;
    c.tile_k = 8;
    c.wpt_m = c.wpt_n = 4;
  } else {
    // GPUs and accelerators: conservative, widely valid settings (16x16 work-groups, 64x64
    // tiles, 4x4 per work-item); small/skinny products use narrow direct kernels so that
    // they still spread over many work-groups.
    c.vector_width = 4;
    c.direct_m = 4;
    c.direct_nv = 1;
    c.direct_kc = 64;
    c.dot_m = 2;
    c.dot_n = 2;
    c.direct_local = 64;
    c.use_tiled = true;
  }
  auto tiled_bytes = [&] {
    return static_cast<cl_ulong>(c.tile_k) * static_cast<cl_ulong>(c.tile_m + c.tile_n + 2) *
           c.element_size();
  };
  while ((c.tiled_local_m() * c.tiled_local_n() > max_wg || tiled_bytes() > local_mem) &&
         c.tile_m > 8) {
    c.tile_m /= 2;
    c.tile_n /= 2;
  }
  auto direct_bytes = [&] {
    return static_cast<cl_ulong>(c.direct_kc) *
           static_cast<cl_ulong>(c.direct_nv * c.vector_width) * c.element_size();
  };
  while (direct_bytes() > local_mem / 2 && c.direct_kc > 8) c.direct_kc /= 2;
  c.direct_local = std::max<std::size_t>(1, std::min(c.direct_local, max_wg));
  return c;
}

/// Picks kernel shapes for `dev` (CL_DEVICE_TYPE, local memory, work-group limit).
/// `fp64` selects double; check the device for cl_khr_fp64 first.
inline gemm_config choose_gemm_config(cl_device_id dev, bool fp64 = false) {
  const auto type = detail::device_info<cl_device_type>(dev, CL_DEVICE_TYPE, CL_DEVICE_TYPE_GPU);
  const auto max_wg = detail::device_info<std::size_t>(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, 64);
  const auto local_mem = detail::device_info<cl_ulong>(dev, CL_DEVICE_LOCAL_MEM_SIZE, 16384);
  const bool cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  // GPUs all have hardware FMA; a CPU without it would run fma() in software.
  bool fma = true;
  if (cpu) {
    const auto fp = detail::device_info<cl_device_fp_config>(
        dev, fp64 ? CL_DEVICE_DOUBLE_FP_CONFIG : CL_DEVICE_SINGLE_FP_CONFIG, 0);
    fma = (fp & CL_FP_FMA) != 0;
  }
  return make_gemm_config(cpu ? gemm_device_kind::cpu : gemm_device_kind::gpu, fp64, max_wg,
                          local_mem, fma);
}

/// OpenCL C 1.2 source of every GEMM kernel; shapes and element type come from
/// gemm_config::build_options().
inline const char* gemm_source() {
  return R"CLC(
#ifndef LOCUS_T
#define LOCUS_T float
#define LOCUS_FP64 0
#endif
#if LOCUS_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#ifndef LOCUS_VW
#define LOCUS_VW 4
#endif
#ifndef LOCUS_USE_FMA
#define LOCUS_USE_FMA 1
#endif
#ifndef LOCUS_DM
#define LOCUS_DM 4
#endif
#ifndef LOCUS_DNV
#define LOCUS_DNV 1
#endif
#ifndef LOCUS_KC
#define LOCUS_KC 64
#endif
#ifndef LOCUS_DOT_M
#define LOCUS_DOT_M 2
#endif
#ifndef LOCUS_DOT_N
#define LOCUS_DOT_N 2
#endif
#ifndef LOCUS_TS_M
#define LOCUS_TS_M 64
#define LOCUS_TS_N 64
#define LOCUS_TS_K 16
#define LOCUS_WPT_M 4
#define LOCUS_WPT_N 4
#endif

#define LOCUS_CAT_(a, b) a##b
#define LOCUS_CAT(a, b) LOCUS_CAT_(a, b)
typedef LOCUS_T T;
typedef LOCUS_CAT(LOCUS_T, LOCUS_VW) TV;
#define VLOAD LOCUS_CAT(vload, LOCUS_VW)
#define VSTORE LOCUS_CAT(vstore, LOCUS_VW)

#define VW LOCUS_VW
#define DM LOCUS_DM
#define DNV LOCUS_DNV
#define DN (LOCUS_DNV * LOCUS_VW)
#define KC LOCUS_KC

/* fma() maps to one instruction on GPUs and FMA-capable CPUs (PoCL compiles mad() to a
   separate multiply and add); LOCUS_USE_FMA=0 avoids software fma on FMA-less CPUs. */
#if LOCUS_USE_FMA
#define LOCUS_MAD(a, b, c) fma(a, b, c)
#else
#define LOCUS_MAD(a, b, c) mad(a, b, c)
#endif

static inline T locus_hsum(TV v) {
#if VW == 16
  TV w = v;
  LOCUS_CAT(LOCUS_T, 8) s8 = w.lo + w.hi;
  LOCUS_CAT(LOCUS_T, 4) s4 = s8.lo + s8.hi;
  LOCUS_CAT(LOCUS_T, 2) s2 = s4.lo + s4.hi;
  return s2.x + s2.y;
#elif VW == 8
  LOCUS_CAT(LOCUS_T, 4) s4 = v.lo + v.hi;
  LOCUS_CAT(LOCUS_T, 2) s2 = s4.lo + s4.hi;
  return s2.x + s2.y;
#elif VW == 4
  LOCUS_CAT(LOCUS_T, 2) s2 = v.lo + v.hi;
  return s2.x + s2.y;
#else
  return v.x + v.y;
#endif
}

/* Writes alpha*acc (+ beta*C) for one output; beta == 0 never reads C (it may hold NaN). */
static inline void locus_store1(__global T* c, T acc, T alpha, T beta) {
  if (beta == (T)0)
    *c = alpha * acc;
  else
    *c = LOCUS_MAD(alpha, acc, beta * *c);
}

/* Direct "row-vector" GEMM: R (rows x cols) = X (rows x k) * Y (k x cols). A work-item
   keeps DM x DN results in DM*DNV vector registers and per k-step does DNV vector loads of
   Y, DM scalar broadcasts of X and DM*DNV vector FMAs.
   X element (r, p) is at X[r * xrs + p * xcs]; Y element (p, c) at Y[p * yks + c * ycs]
   (this covers op(A), op(B) with and without transposition); output (r, c) is at
   Cout[r * crs + c * ccs] (ccs != 1 when the kernel computes C^T).
   The work-group (along rows) shares one DN-column panel of Y, copied KC k-rows at a time
   into local memory, contiguous. Read straight from Y, the panel rows would sit ldb apart,
   and for power-of-two ldb they all map to the same cache sets and thrash (n = 1024 ran
   2-3x slower than n = 512 on PoCL); packing also turns a transposed Y into a contiguous
   panel. Rows past the edge are clamped when loading X, columns when packing Y, so the
   inner loop has no branches; neither is stored. */
static inline void locus_rowvec(int rows, int cols, int k, T alpha, T beta,
                                const __global T* X, int xrs, int xcs,
                                const __global T* Y, int yks, int ycs,
                                __global T* Cout, int crs, int ccs, __local T* ys) {
  const int r0 = (int)get_global_id(0) * DM;
  const int c0 = (int)get_global_id(1) * DN;
  const int lid = (int)get_local_id(0);
  const int nl = (int)get_local_size(0);
  /* Uniform over the work-group (its extent along dimension 1 is 1): no barrier skipped. */
  if (c0 >= cols) return;

  size_t xoff[DM];
#pragma unroll
  for (int i = 0; i < DM; ++i) xoff[i] = (size_t)min(r0 + i, rows - 1) * (size_t)xrs;
  TV acc[DM][DNV];
#pragma unroll
  for (int i = 0; i < DM; ++i)
#pragma unroll
    for (int v = 0; v < DNV; ++v) acc[i][v] = (TV)(0);

  const int full = c0 + DN <= cols;
  const int last = cols - 1 - c0;
  for (int kb = 0; kb < k; kb += KC) {
    const int kc = min(KC, k - kb);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ycs == 1) {
      /* Y rows contiguous: one work-item copies whole panel rows with vector loads. */
      for (int p = lid; p < kc; p += nl) {
        const __global T* src = Y + (size_t)(kb + p) * (size_t)yks + c0;
        if (full) {
#pragma unroll
          for (int v = 0; v < DNV; ++v) VSTORE(VLOAD(v, src), v, ys + p * DN);
        } else {
          for (int c = 0; c < DN; ++c) ys[p * DN + c] = src[min(c, last)];
        }
      }
    } else {
      /* Y transposed (contiguous along k): one work-item reads a k-run of one column. */
      for (int c = lid; c < DN; c += nl) {
        const __global T* src = Y + (size_t)(c0 + min(c, last)) * (size_t)ycs + kb;
        for (int p = 0; p < kc; ++p) ys[p * DN + c] = src[p];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const __global T* xp = X + (size_t)kb * (size_t)xcs;
    /* Work-items past the last row only help with packing. */
    for (int p = 0; p < (r0 < rows ? kc : 0); ++p) {
      TV y[DNV];
#pragma unroll
      for (int v = 0; v < DNV; ++v) y[v] = VLOAD(v, ys + p * DN);
#pragma unroll
      for (int i = 0; i < DM; ++i) {
        const TV x = (TV)(xp[xoff[i]]);
#pragma unroll
        for (int v = 0; v < DNV; ++v) acc[i][v] = LOCUS_MAD(x, y[v], acc[i][v]);
      }
      xp += xcs;
    }
  }

  if (r0 >= rows) return;
  const int nr = min(DM, rows - r0);
  const int nc = min(DN, cols - c0);
  if (ccs == 1 && nc == DN) {
#pragma unroll
    for (int i = 0; i < DM; ++i) {
      if (i < nr) {
        __global T* cp = Cout + (size_t)(r0 + i) * (size_t)crs + c0;
#pragma unroll
        for (int v = 0; v < DNV; ++v) {
          if (beta == (T)0)
            VSTORE(alpha * acc[i][v], v, cp);
          else
            VSTORE(LOCUS_MAD((TV)(alpha), acc[i][v], beta * VLOAD(v, cp)), v, cp);
        }
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < DM; ++i) {
      if (i < nr) {
#pragma unroll
        for (int v = 0; v < DNV; ++v) {
          T tmp[VW];
          VSTORE(acc[i][v], 0, tmp);
          for (int e = 0; e < VW; ++e) {
            const int c = v * VW + e;
            if (c < nc)
              locus_store1(Cout + (size_t)(r0 + i) * (size_t)crs + (size_t)(c0 + c) * (size_t)ccs,
                           tmp[e], alpha, beta);
          }
        }
      }
    }
  }
}

#define LOCUS_BATCH_ARGS                                                          \
  int m, int n, int k, T alpha, T beta, const __global T *A, ulong a_off, int lda, \
      ulong sa, const __global T *B, ulong b_off, int ldb, ulong sb, __global T *C, \
      ulong c_off, int ldc, ulong sc
#define LOCUS_BATCH_SETUP                       \
  const ulong bi = get_global_id(2);            \
  A += a_off + bi * sa;                         \
  B += b_off + bi * sb;                         \
  C += c_off + bi * sc;

/* C = A * B: A rows are streamed as scalars, B rows as vectors. */
__kernel void locus_gemm_nn(LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  __local T ys[KC * DN];
  locus_rowvec(m, n, k, alpha, beta, A, lda, 1, B, ldb, 1, C, ldc, 1, ys);
}

/* C = A^T * B: A is k x m, its element (i, p) at A[p * lda + i]. */
__kernel void locus_gemm_tn(LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  __local T ys[KC * DN];
  locus_rowvec(m, n, k, alpha, beta, A, 1, lda, B, ldb, 1, C, ldc, 1, ys);
}

/* C = A^T * B^T = (B * A)^T: compute the n x m product B * A (B is n x k, A is k x m,
   both contiguous the right way for locus_rowvec) and store it transposed. */
__kernel void locus_gemm_tt(LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  __local T ys[KC * DN];
  locus_rowvec(n, m, k, alpha, beta, B, ldb, 1, A, lda, 1, C, 1, ldc, ys);
}

/* C = A * B^T through the packed row-vector path: the panel of B^T is gathered from rows of
   B (contiguous along k) while packing. Best when k is short or m large. */
__kernel void locus_gemm_nt_packed(LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  __local T ys[KC * DN];
  locus_rowvec(m, n, k, alpha, beta, A, lda, 1, B, 1, ldb, C, ldc, 1, ys);
}

/* C = A * B^T: A (m x k) and B (n x k) are both contiguous along k, so each output is a
   dot product of two contiguous rows; a work-item keeps DOT_M x DOT_N vector partial sums
   along k and reduces them at the end. */
__kernel void locus_gemm_nt(LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  const int i0 = (int)get_global_id(0) * LOCUS_DOT_M;
  const int j0 = (int)get_global_id(1) * LOCUS_DOT_N;
  if (i0 >= m || j0 >= n) return;
  const __global T* ar[LOCUS_DOT_M];
  const __global T* br[LOCUS_DOT_N];
  #pragma unroll
  for (int i = 0; i < LOCUS_DOT_M; ++i) ar[i] = A + (size_t)min(i0 + i, m - 1) * (size_t)lda;
  #pragma unroll
  for (int j = 0; j < LOCUS_DOT_N; ++j) br[j] = B + (size_t)min(j0 + j, n - 1) * (size_t)ldb;
  TV acc[LOCUS_DOT_M][LOCUS_DOT_N];
  #pragma unroll
  for (int i = 0; i < LOCUS_DOT_M; ++i)
    #pragma unroll
    for (int j = 0; j < LOCUS_DOT_N; ++j) acc[i][j] = (TV)(0);
  const int kv = k - k % VW;
  for (int p = 0; p < kv; p += VW) {
    TV a[LOCUS_DOT_M];
    #pragma unroll
    for (int i = 0; i < LOCUS_DOT_M; ++i) a[i] = VLOAD(0, ar[i] + p);
    #pragma unroll
    for (int j = 0; j < LOCUS_DOT_N; ++j) {
      const TV b = VLOAD(0, br[j] + p);
      #pragma unroll
      for (int i = 0; i < LOCUS_DOT_M; ++i) acc[i][j] = LOCUS_MAD(a[i], b, acc[i][j]);
    }
  }
  T s[LOCUS_DOT_M][LOCUS_DOT_N];
  #pragma unroll
  for (int i = 0; i < LOCUS_DOT_M; ++i)
    #pragma unroll
    for (int j = 0; j < LOCUS_DOT_N; ++j) s[i][j] = locus_hsum(acc[i][j]);
  for (int p = kv; p < k; ++p)
    #pragma unroll
    for (int i = 0; i < LOCUS_DOT_M; ++i)
      #pragma unroll
      for (int j = 0; j < LOCUS_DOT_N; ++j) s[i][j] = LOCUS_MAD(ar[i][p], br[j][p], s[i][j]);
  #pragma unroll
  for (int i = 0; i < LOCUS_DOT_M; ++i) {
    if (i0 + i >= m) break;
    #pragma unroll
    for (int j = 0; j < LOCUS_DOT_N; ++j) {
      if (j0 + j >= n) break;
      locus_store1(C + (size_t)(i0 + i) * (size_t)ldc + (j0 + j), s[i][j], alpha, beta);
    }
  }
}

/* Local-memory tiled GEMM (GPU path). Work-group (TS_N/WPT_N, TS_M/WPT_M); each work-item
   computes WPT_M x WPT_N outputs strided by the work-group extent so that stores and local
   reads of neighbouring work-items are adjacent (coalesced, bank-conflict free). Tiles of
   op(A) and op(B) are loaded with consecutive work-items on the contiguous dimension of
   the stored matrix (which depends on the transpose flags) and zero-padded at the edges. */
#define TSM LOCUS_TS_M
#define TSN LOCUS_TS_N
#define TSK LOCUS_TS_K
#define WPTM LOCUS_WPT_M
#define WPTN LOCUS_WPT_N
#define RTSM (TSM / WPTM)
#define RTSN (TSN / WPTN)
#define NTHR (RTSM * RTSN)

__kernel __attribute__((reqd_work_group_size(RTSN, RTSM, 1)))
void locus_gemm_tiled(int ta, int tb, LOCUS_BATCH_ARGS) {
  LOCUS_BATCH_SETUP
  /* +1 column: the transposed stores below would otherwise all hit one bank. */
  __local T As[TSK][TSM + 1];
  __local T Bs[TSK][TSN + 1];
  const int tn = (int)get_local_id(0);
  const int tm = (int)get_local_id(1);
  const int tid = tm * RTSN + tn;
  const int gm0 = (int)get_group_id(1) * TSM;
  const int gn0 = (int)get_group_id(0) * TSN;

  T acc[WPTM][WPTN];
  #pragma unroll
  for (int i = 0; i < WPTM; ++i)
    #pragma unroll
    for (int j = 0; j < WPTN; ++j) acc[i][j] = (T)0;

  for (int t = 0; t < k; t += TSK) {
    for (int idx = tid; idx < TSM * TSK; idx += NTHR) {
      int r, c;
      if (ta) { r = idx % TSM; c = idx / TSM; } else { r = idx / TSK; c = idx % TSK; }
      const int gr = gm0 + r, gc = t + c;
      T v = (T)0;
      if (gr < m && gc < k) v = ta ? A[(size_t)gc * lda + gr] : A[(size_t)gr * lda + gc];
      As[c][r] = v;
    }
    for (int idx = tid; idx < TSN * TSK; idx += NTHR) {
      int r, c;
      if (tb) { r = idx / TSK; c = idx % TSK; } else { r = idx % TSN; c = idx / TSN; }
      const int gr = gn0 + r, gc = t + c;
      T v = (T)0;
      if (gr < n && gc < k) v = tb ? B[(size_t)gr * ldb + gc] : B[(size_t)gc * ldb + gr];
      Bs[c][r] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int kk = 0; kk < TSK; ++kk) {
      T breg[WPTN];
      #pragma unroll
      for (int j = 0; j < WPTN; ++j) breg[j] = Bs[kk][tn + j * RTSN];
      #pragma unroll
      for (int i = 0; i < WPTM; ++i) {
        const T a = As[kk][tm + i * RTSM];
        #pragma unroll
        for (int j = 0; j < WPTN; ++j) acc[i][j] = LOCUS_MAD(a, breg[j], acc[i][j]);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  #pragma unroll

  for (int i = 0; i < WPTM; ++i) {
    const int gr = gm0 + tm + i * RTSM;
    if (gr >= m) break;
    #pragma unroll
    for (int j = 0; j < WPTN; ++j) {
      const int gc = gn0 + tn + j * RTSN;
      if (gc < n) locus_store1(C + (size_t)gr * ldc + gc, acc[i][j], alpha, beta);
    }
  }
}

/* The epilogue of a product: C = act(C + bias), bias per column (has_bias == 0: none, and
   bias is not read). act: 0 linear, 1 relu, 2 sigmoid, 3 tanh, with the formulas of the
   element-wise expressions (codegen.hpp), so a fused layer computes what the unfused one
   did. One work-item per element: (column, row, batch entry). */
__kernel void locus_gemm_epilogue(int m, int n, __global T* C, ulong c_off, int ldc, ulong sc,
                                  const __global T* bias, ulong bias_off, int has_bias, int act) {
  const int j = (int)get_global_id(0);
  const int i = (int)get_global_id(1);
  if (i >= m || j >= n) return;
  __global T* c = C + c_off + get_global_id(2) * sc + (size_t)i * (size_t)ldc + (size_t)j;
  T x = *c;
  if (has_bias) x = x + bias[bias_off + (ulong)j];
  if (act == 1)
    x = x > (T)0 ? x : (T)0;
  else if (act == 2)
    x = (T)1 / ((T)1 + exp(-x));
  else if (act == 3)
    x = tanh(x);
  *c = x;
}
)CLC";
}

/// Work-group of locus_gemm_epilogue: (columns, rows). Fixed, so that PoCL compiles one
/// specialisation of the kernel.
inline constexpr std::size_t gemm_epilogue_local[2] = {16, 4};

/// Names of every kernel in gemm_source(), in gemm_kernels member order.
inline constexpr std::array<const char*, 7> gemm_kernel_names() {
  return {"locus_gemm_nn", "locus_gemm_nt",    "locus_gemm_nt_packed", "locus_gemm_tn",
          "locus_gemm_tt", "locus_gemm_tiled", "locus_gemm_epilogue"};
}

/// The kernel objects of one built GEMM program (not owned: see release_gemm_kernels).
struct gemm_kernels {
  cl_kernel nn = nullptr, nt = nullptr, nt_packed = nullptr, tn = nullptr, tt = nullptr,
            tiled = nullptr, epilogue = nullptr;

  /// The members in gemm_kernel_names() order.
  std::array<cl_kernel*, 7> slots() { return {&nn, &nt, &nt_packed, &tn, &tt, &tiled, &epilogue}; }
};

/// Creates every GEMM kernel of a program built from gemm_source(). On failure releases
/// what it created and returns the error.
inline cl_int create_gemm_kernels(cl_program program, gemm_kernels* out) {
  const auto names = gemm_kernel_names();
  const auto slots = out->slots();
  for (std::size_t i = 0; i < names.size(); ++i) {
    cl_int err = CL_SUCCESS;
    *slots[i] = clCreateKernel(program, names[i], &err);
    if (err != CL_SUCCESS) {
      for (std::size_t j = 0; j < i; ++j) {
        clReleaseKernel(*slots[j]);
        *slots[j] = nullptr;
      }
      *slots[i] = nullptr;
      return err;
    }
  }
  return CL_SUCCESS;
}

inline void release_gemm_kernels(gemm_kernels& ks) {
  for (cl_kernel* k : ks.slots()) {
    if (*k) clReleaseKernel(*k);
    *k = nullptr;
  }
}

/// One (batched) GEMM: for b < batch, C_b = act(alpha * op(A_b) * op(B_b) + beta * C_b + bias).
/// Row-major; op(A) is m x k, op(B) is k x n. Offsets, leading dimensions and batch
/// strides are in elements; a batch stride of 0 shares that operand across the batch.
/// The epilogue is optional: bias (null: none) holds n values from bias_offset; act is
/// applied last. With a shared C (stride_c == 0) it is applied once, after every product.
struct gemm_call {
  std::size_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  double alpha = 1.0, beta = 0.0;
  cl_mem a = nullptr;
  std::size_t a_offset = 0, lda = 0, stride_a = 0;
  cl_mem b = nullptr;
  std::size_t b_offset = 0, ldb = 0, stride_b = 0;
  cl_mem c = nullptr;
  std::size_t c_offset = 0, ldc = 0, stride_c = 0;
  cl_mem bias = nullptr;
  std::size_t bias_offset = 0;
  gemm_activation act = gemm_activation::linear;

  bool has_epilogue() const { return bias != nullptr || act != gemm_activation::linear; }
};

/// How far past m, n or k the kernels' 32-bit int index arithmetic reaches for `cfg`:
/// the last work-group's blocks start below the edge and run past it. Direct kernels: a
/// row block index (global id 0, rounded up to whole work-groups of direct_local) times
/// direct_m or dot_m, plus the rows of the block; columns: one block of direct_nv *
/// vector_width or dot_n; k: one k-panel (direct_kc) or vector step. Tiled kernel: one
/// tile (tile_m, tile_n, tile_k).
inline std::size_t gemm_index_headroom(const gemm_config& cfg) {
  const auto u = [](int v) { return static_cast<std::size_t>(v > 0 ? v : 0); };
  const std::size_t row_block = std::max(u(cfg.direct_m), u(cfg.dot_m));
  std::size_t h = (cfg.direct_local + 1) * row_block;
  for (std::size_t v : {u(cfg.direct_nv) * u(cfg.vector_width), u(cfg.dot_n), u(cfg.direct_kc),
                        u(cfg.vector_width), u(cfg.tile_m), u(cfg.tile_n), u(cfg.tile_k)}) {
    h = std::max(h, v);
  }
  return h;
}

/// The largest m, n and k the kernels of `cfg` can index: every index they compute,
/// including the overshoot of the last work-group, must fit an OpenCL C int.
inline std::size_t gemm_max_extent(const gemm_config& cfg) {
  return static_cast<std::size_t>(std::numeric_limits<cl_int>::max()) - gemm_index_headroom(cfg);
}

/// The largest leading dimension (lda, ldb, ldc) the kernels take: they receive it as an
/// int and multiply only after widening to size_t.
inline constexpr std::size_t gemm_max_leading_dimension() {
  return static_cast<std::size_t>(std::numeric_limits<cl_int>::max());
}

/// The first size of a call the kernels cannot index (what == nullptr: none).
struct gemm_size_violation {
  const char* what = nullptr;  // "m", "n", "k", "lda", "ldb" or "ldc"
  std::size_t size = 0;
  std::size_t limit = 0;
  explicit operator bool() const { return what != nullptr; }
};

/// Checks every size enqueue_gemm passes to the kernels as an int (m, n, k against
/// gemm_max_extent(cfg), the leading dimensions against gemm_max_leading_dimension()).
/// Offsets and batch strides are passed as ulong and have no such limit.
inline gemm_size_violation find_gemm_size_violation(const gemm_call& call, const gemm_config& cfg) {
  const std::size_t ext = gemm_max_extent(cfg), ld = gemm_max_leading_dimension();
  const std::pair<const char*, std::size_t> extents[] = {
      {"m", call.m}, {"n", call.n}, {"k", call.k}};
  for (const auto& [what, v] : extents) {
    if (v > ext) return {what, v, ext};
  }
  const std::pair<const char*, std::size_t> lds[] = {
      {"lda", call.lda}, {"ldb", call.ldb}, {"ldc", call.ldc}};
  for (const auto& [what, v] : lds) {
    if (v > ld) return {what, v, ld};
  }
  return {};
}

namespace detail {

inline std::size_t round_up(std::size_t v, std::size_t to) {
  return (v + to - 1) / to * to;
}

inline std::size_t ceil_div(std::size_t v, std::size_t d) {
  return (v + d - 1) / d;
}

// Sets the arguments shared by every kernel starting at index `first`. The int casts are
// safe: enqueue_gemm has checked the sizes (find_gemm_size_violation) first.
template <class T>
cl_int set_gemm_args(cl_kernel kn, cl_uint first, const gemm_call& c) {
  const cl_int m = static_cast<cl_int>(c.m), n = static_cast<cl_int>(c.n),
               k = static_cast<cl_int>(c.k);
  const T alpha = static_cast<T>(c.alpha), beta = static_cast<T>(c.beta);
  const cl_int lda = static_cast<cl_int>(c.lda), ldb = static_cast<cl_int>(c.ldb),
               ldc = static_cast<cl_int>(c.ldc);
  const cl_ulong ao = c.a_offset, bo = c.b_offset, co = c.c_offset;
  const cl_ulong sa = c.stride_a, sb = c.stride_b, sc = c.stride_c;
  cl_uint i = first;
  cl_int err = CL_SUCCESS;
  auto set = [&](std::size_t size, const void* p) {
    if (err == CL_SUCCESS) err = clSetKernelArg(kn, i, size, p);
    ++i;
  };
  set(sizeof m, &m);
  set(sizeof n, &n);
  set(sizeof k, &k);
  set(sizeof alpha, &alpha);
  set(sizeof beta, &beta);
  set(sizeof(cl_mem), &c.a);
  set(sizeof ao, &ao);
  set(sizeof lda, &lda);
  set(sizeof sa, &sa);
  set(sizeof(cl_mem), &c.b);
  set(sizeof bo, &bo);
  set(sizeof ldb, &ldb);
  set(sizeof sb, &sb);
  set(sizeof(cl_mem), &c.c);
  set(sizeof co, &co);
  set(sizeof ldc, &ldc);
  set(sizeof sc, &sc);
  return err;
}

}  // namespace detail

/// The kernels of gemm_kernels, in member order.
enum class gemm_kernel_kind { nn, nt, nt_packed, tn, tt, tiled };

namespace detail {

// C = act(C + bias) over every C of the call (once for a shared C).
inline cl_int enqueue_epilogue(cl_command_queue q, const gemm_kernels& ks, const gemm_call& c,
                               unsigned* launches) {
  const cl_kernel kn = ks.epilogue;
  const cl_int m = static_cast<cl_int>(c.m), n = static_cast<cl_int>(c.n),
               ldc = static_cast<cl_int>(c.ldc);
  const cl_ulong co = c.c_offset, sc = c.stride_c, bo = c.bias_offset;
  const cl_int has_bias = c.bias ? 1 : 0, act = static_cast<cl_int>(c.act);
  // Without a bias the kernel never reads that argument; C stands in for it.
  const cl_mem bias = c.bias ? c.bias : c.c;
  cl_uint i = 0;
  cl_int err = CL_SUCCESS;
  auto set = [&](std::size_t size, const void* p) {
    if (err == CL_SUCCESS) err = clSetKernelArg(kn, i, size, p);
    ++i;
  };
  set(sizeof m, &m);
  set(sizeof n, &n);
  set(sizeof(cl_mem), &c.c);
  set(sizeof co, &co);
  set(sizeof ldc, &ldc);
  set(sizeof sc, &sc);
  set(sizeof(cl_mem), &bias);
  set(sizeof bo, &bo);
  set(sizeof has_bias, &has_bias);
  set(sizeof act, &act);
  if (err != CL_SUCCESS) return err;
  const std::size_t global[3] = {round_up(c.n, gemm_epilogue_local[0]),
                                 round_up(c.m, gemm_epilogue_local[1]),
                                 c.stride_c == 0 ? 1 : c.batch};
  const std::size_t local[3] = {gemm_epilogue_local[0], gemm_epilogue_local[1], 1};
  err = clEnqueueNDRangeKernel(q, kn, 3, nullptr, global, local, 0, nullptr, nullptr);
  if (err == CL_SUCCESS && launches) ++*launches;
  return err;
}

}  // namespace detail

/// What enqueue_gemm launches for a call: the kernel, its NDRange, the product it computes
/// (rows x cols: m x n, or n x m for tt, which computes C^T) and the outputs of one
/// work-item (direct kernels) or one work-group (tiled: a tile) along rows and columns.
struct gemm_launch_plan {
  gemm_kernel_kind kernel = gemm_kernel_kind::nn;
  std::size_t global[3] = {0, 0, 0};
  std::size_t local[3] = {1, 1, 1};
  std::size_t rows = 0, cols = 0;
  std::size_t block_rows = 0, block_cols = 0;
};

/// The launch of a non-empty call (batch, m and n > 0).
inline gemm_launch_plan plan_gemm_launch(const gemm_config& cfg, const gemm_call& call) {
  gemm_launch_plan p;
  p.global[2] = call.batch;
  p.rows = call.m;
  p.cols = call.n;
  const bool tiled = cfg.use_tiled && call.m * call.n >= cfg.tiled_min_mn * cfg.tiled_min_mn;
  if (tiled) {
    p.kernel = gemm_kernel_kind::tiled;
    p.block_rows = static_cast<std::size_t>(cfg.tile_m);
    p.block_cols = static_cast<std::size_t>(cfg.tile_n);
    p.local[0] = cfg.tiled_local_n();
    p.local[1] = cfg.tiled_local_m();
    p.global[0] = detail::ceil_div(call.n, p.block_cols) * p.local[0];
    p.global[1] = detail::ceil_div(call.m, p.block_rows) * p.local[1];
    return p;
  }
  // Dimension 0 walks blocks of rows: consecutive work-items (and work-groups, which
  // PoCL hands out in order) then share the same column panel of the streamed-as-vector
  // operand, which stays in cache while the scalar-side rows stream past.
  const std::size_t dn = static_cast<std::size_t>(cfg.direct_nv * cfg.vector_width);
  p.block_rows = static_cast<std::size_t>(cfg.direct_m);
  p.block_cols = dn;
  if (!call.trans_b) {
    p.kernel = call.trans_a ? gemm_kernel_kind::tn : gemm_kernel_kind::nn;
  } else if (call.trans_a) {
    p.kernel = gemm_kernel_kind::tt;  // computes C^T = B * A: rows/cols swap
    p.rows = call.n;
    p.cols = call.m;
  } else if (call.k >= cfg.dot_min_k && call.m * call.n <= cfg.dot_max_mn) {
    p.kernel = gemm_kernel_kind::nt;  // long dot products: both operands stream along k
    p.block_rows = static_cast<std::size_t>(cfg.dot_m);
    p.block_cols = static_cast<std::size_t>(cfg.dot_n);
  } else {
    // Short k: dot products would be mostly horizontal sums and scalar tails.
    p.kernel = gemm_kernel_kind::nt_packed;
  }
  // Always the configured work-group size: PoCL compiles one specialisation of a kernel
  // per work-group size (about a second each), so sizes must not vary with the shape.
  p.local[0] = cfg.direct_local;
  p.global[0] = detail::round_up(detail::ceil_div(p.rows, p.block_rows), p.local[0]);
  p.global[1] = detail::ceil_div(p.cols, p.block_cols);
  return p;
}

/// Enqueues one GEMM (a single kernel launch covering the whole batch). Returns
/// CL_SUCCESS or the first error of clSetKernelArg / clEnqueueNDRangeKernel (it throws
/// nothing); adds the number of launched kernels to *launches when non-null. An empty
/// product (batch, m or n is 0) enqueues nothing; k == 0 yields C = beta * C.
/// Indices inside the kernels are 32-bit: a call with a size beyond the limits of
/// find_gemm_size_violation() enqueues nothing and returns CL_INVALID_VALUE (the OpenCL
/// backend checks first and throws locus::size_limit_error naming the size and limit).
/// Not thread-safe per gemm_kernels (clSetKernelArg): the caller serialises.
inline cl_int enqueue_gemm(cl_command_queue q, const gemm_kernels& ks, const gemm_config& cfg,
                           const gemm_call& call, unsigned* launches) {
  if (call.batch == 0 || call.m == 0 || call.n == 0) return CL_SUCCESS;
  // Never truncate a size to int below (that would index out of bounds on the device).
  if (find_gemm_size_violation(call, cfg)) return CL_INVALID_VALUE;
  const gemm_launch_plan p = plan_gemm_launch(cfg, call);
  const cl_kernel kernels[] = {ks.nn, ks.nt, ks.nt_packed, ks.tn, ks.tt, ks.tiled};
  const cl_kernel kn = kernels[static_cast<int>(p.kernel)];
  cl_int err = CL_SUCCESS;
  cl_uint first = 0;
  if (p.kernel == gemm_kernel_kind::tiled) {
    const cl_int ta = call.trans_a ? 1 : 0, tb = call.trans_b ? 1 : 0;
    err = clSetKernelArg(kn, 0, sizeof ta, &ta);
    if (err == CL_SUCCESS) err = clSetKernelArg(kn, 1, sizeof tb, &tb);
    first = 2;
  }
  if (err == CL_SUCCESS) {
    err = cfg.fp64 ? detail::set_gemm_args<cl_double>(kn, first, call)
                   : detail::set_gemm_args<cl_float>(kn, first, call);
  }
  if (err != CL_SUCCESS) return err;
  err = clEnqueueNDRangeKernel(q, kn, 3, nullptr, p.global, p.local, 0, nullptr, nullptr);
  if (err == CL_SUCCESS && launches) ++*launches;
  if (err == CL_SUCCESS && call.has_epilogue())
    err = detail::enqueue_epilogue(q, ks, call, launches);
  return err;
}

}  // namespace locus::backend::opencl::kernels
