// Random tensors: Philox-4x32-10, a line-for-line mirror of detail/philox.hpp, so that a
// seed gives the same uniform numbers on every device, bit for bit. The scaling is an
// explicit fma on both sides (a correctly rounded operation everywhere); written as
// `a + (b - a) * u`, a host compiler may contract it and another device may not. normal()
// uses the device's log/cos/sqrt and agrees with the host within float tolerance.
#pragma once

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

template <class T>
const program_source& random_program() {
  static const program_source src(
      std::string("locus_random<") + cl_type_name<T>() + ">", type_prelude<T>() + R"CLC(
#pragma OPENCL FP_CONTRACT OFF

inline uint4 locus_philox(ulong index, ulong seed) {
  uint c0 = (uint)index, c1 = (uint)(index >> 32), c2 = 0u, c3 = 0u;
  uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint hi0 = mul_hi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint hi1 = mul_hi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return (uint4)(c0, c1, c2, c3);
}

inline float locus_unit_float(uint x) { return (float)(x >> 8) * 0x1.0p-24f; }
inline float locus_unit_float_open0(uint x) { return (float)((x >> 8) + 1u) * 0x1.0p-24f; }
#ifdef cl_khr_fp64
inline double locus_unit_double(uint hi, uint lo) {
  return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) * (1.0 / 9007199254740992.0);
}
#endif

__kernel void locus_uniform(__global T* dst, ulong n, ulong seed, T a, T b) {
  const size_t i = get_global_id(0);
  if (i >= n) return;
  const uint4 r = locus_philox((ulong)i, seed);
#if defined(LOCUS_INT)
  const uint span = (uint)(b - a);
  dst[i] = span ? a + (int)(r.x % span) : a;
#elif defined(LOCUS_DOUBLE)
  dst[i] = fma(b - a, locus_unit_double(r.x, r.y), a);
#else
  dst[i] = fma(b - a, locus_unit_float(r.x), a);
#endif
}

#ifndef LOCUS_INT
__kernel void locus_normal(__global T* dst, ulong n, ulong seed, T mean, T stddev) {
  const size_t i = get_global_id(0);
  if (i >= n) return;
  const uint4 r = locus_philox((ulong)i, seed);
#if defined(LOCUS_DOUBLE)
  const double u1 = 1.0 - locus_unit_double(r.x, r.y);
  const double u2 = locus_unit_double(r.z, r.w);
  dst[i] = mean + stddev * (sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2));
#else
  const float u1 = locus_unit_float_open0(r.x);
  const float u2 = locus_unit_float(r.y);
  dst[i] = mean + stddev * (sqrt(-2.0f * log(u1)) * cos(6.2831853071795864769f * u2));
#endif
}
#endif
)CLC",
      std::string(base_options()) + (std::is_same_v<T, double> ? " -DLOCUS_DOUBLE=1" : ""));
  return src;
}

}  // namespace locus::backend::opencl::kernels
