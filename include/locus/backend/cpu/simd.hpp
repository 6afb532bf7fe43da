// The SIMD batch type of the CPU backend.
//
// xsimd 8.1's AVX-512BW kernels for integer select (used inside its own exp/log/tanh)
// contain a run-time switch over element widths whose byte- and word-blend branches do
// not compile for 32-bit lanes unless the optimiser removes them first; an unoptimised
// (-O0) build with -march=native on an AVX-512BW machine therefore fails inside xsimd.
// Debug builds use AVX2 batches instead; optimised builds get the best available arch.
//
// Every locus header that needs xsimd includes it through this one, because of GCC bug
// 105593 (GCC 12.1 and 12.2; fixed in 12.3 and 13): the AVX-512 intrinsics in GCC's own
// avx512fintrin.h pass `_mm512_undefined_*()` (a deliberately self-initialised `__Y`) as
// the unused merge operand of masked builtins, and once xsimd's exp, ldexp, nearbyint or
// to_int are inlined at -O2/-O3 GCC reports `'__Y' is used uninitialized`
// (-Wuninitialized) or `may be used` (-Wmaybe-uninitialized). Which of the two, and where,
// depends on -march *and* -mtune: `-march=cooperlake -mtune=generic`, what -march=native
// gives on a CPU GCC 12 does not know by model, fails at -Werror while
// `-march=cooperlake` passes. These middle-end warnings honour the diagnostic state of the
// location they point at, so ignoring both around the point where the intrinsic headers
// are first read silences exactly GCC's header and nothing in locus or in user code.
// A program that includes <immintrin.h> itself before locus keeps GCC's warnings; the
// -march matrix in tests/CMakeLists.txt (tests/simd_matrix/) proves the rest.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <xsimd/xsimd.hpp>
#pragma GCC diagnostic pop
#else
#include <xsimd/xsimd.hpp>
#endif

namespace locus::backend::cpu {

#if defined(__AVX512BW__) && !defined(__OPTIMIZE__)
using simd_arch = xsimd::avx2;
#else
using simd_arch = xsimd::default_arch;
#endif

template <class T>
using simd = xsimd::batch<T, simd_arch>;

}  // namespace locus::backend::cpu
