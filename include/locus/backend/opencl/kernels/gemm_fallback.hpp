// A plain local-memory tiled GEMM for element types the tuned GEMM (gemm.hpp, float and
// double only) does not cover: int32. Same contract as backend.hpp's gemm_args.
#pragma once

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

inline constexpr std::size_t gemm_fallback_tile = 16;

template <class T>
const program_source& gemm_fallback_program() {
  static const program_source src(std::string("locus_gemm_fallback<") + cl_type_name<T>() + ">",
                                  type_prelude<T>() + R"CLC(
#define TS 16
__kernel void locus_gemm_fallback(ulong M, ulong N, ulong K, int ta, int tb, T alpha,
                                  __global const T* A, ulong a_off, ulong lda, ulong sa,
                                  __global const T* B, ulong b_off, ulong ldb, ulong sb, T beta,
                                  __global T* C, ulong c_off, ulong ldc, ulong sc) {
  __local T As[TS][TS];
  __local T Bs[TS][TS + 1];
  const size_t lx = get_local_id(0), ly = get_local_id(1);
  const size_t col = get_group_id(0) * TS + lx, row = get_group_id(1) * TS + ly;
  const size_t batch = get_global_id(2);
  A += a_off + batch * sa;
  B += b_off + batch * sb;
  C += c_off + batch * sc;
  T acc = (T)0;
  for (ulong t = 0; t < K; t += TS) {
    const ulong ka = t + lx, kb = t + ly;
    As[ly][lx] = (row < M && ka < K) ? (ta ? A[ka * lda + row] : A[row * lda + ka]) : (T)0;
    Bs[ly][lx] = (kb < K && col < N) ? (tb ? B[col * ldb + kb] : B[kb * ldb + col]) : (T)0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = 0; p < TS; ++p) acc += As[ly][p] * Bs[p][lx];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (row < M && col < N) {
    __global T* c = C + row * ldc + col;
    // beta == 0 must not read C: it may hold NaN or garbage (BLAS semantics).
    *c = beta == (T)0 ? alpha * acc : alpha * acc + beta * *c;
  }
}
)CLC",
                                  base_options());
  return src;
}

}  // namespace locus::backend::opencl::kernels
