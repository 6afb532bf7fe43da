// The SIMD batch type of the CPU backend.
//
// xsimd 8.1's AVX-512BW kernels for integer select (used inside its own exp/log/tanh)
// contain a run-time switch over element widths whose byte- and word-blend branches do
// not compile for 32-bit lanes unless the optimiser removes them first; an unoptimised
// (-O0) build with -march=native on an AVX-512BW machine therefore fails inside xsimd.
// Debug builds use AVX2 batches instead; optimised builds get the best available arch.
#pragma once

#include <xsimd/xsimd.hpp>

namespace locus::backend::cpu {

#if defined(__AVX512BW__) && !defined(__OPTIMIZE__)
using simd_arch = xsimd::avx2;
#else
using simd_arch = xsimd::default_arch;
#endif

template <class T>
using simd = xsimd::batch<T, simd_arch>;

}  // namespace locus::backend::cpu
