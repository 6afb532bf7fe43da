// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11),
// the counter-based generator behind locus's random tensors.
//
// Element i of a random tensor is a pure function of (seed, i): counter = {lo(i), hi(i),
// 0, 0}, key = {lo(seed), hi(seed)}. That makes generation embarrassingly parallel and
// gives the same numbers on every device: the OpenCL backend runs the same arithmetic
// (backend/opencl/kernels/random.hpp mirrors the functions below line for line).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace locus::detail {

using philox_block = std::array<std::uint32_t, 4>;

inline philox_block philox4x32_10(std::uint64_t index, std::uint64_t seed) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  std::uint32_t c0 = static_cast<std::uint32_t>(index), c1 = static_cast<std::uint32_t>(index >> 32);
  std::uint32_t c2 = 0, c3 = 0;
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += w0;
    k1 += w1;
  }
  return {c0, c1, c2, c3};
}

/// float in [0, 1) from the top 24 bits.
inline float unit_float(std::uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }
/// float in (0, 1] (safe for log).
inline float unit_float_open0(std::uint32_t x) {
  return static_cast<float>((x >> 8) + 1u) * 0x1.0p-24f;
}
/// double in [0, 1) from 53 bits of two words.
inline double unit_double(std::uint32_t hi, std::uint32_t lo) {
  return (static_cast<double>(hi >> 5) * 67108864.0 + static_cast<double>(lo >> 6)) *
         (1.0 / 9007199254740992.0);
}

/// Element i of uniform(seed, a, b) as float, double or int32 (int32: a + x mod (b - a)).
template <class T>
T philox_uniform(std::uint64_t i, std::uint64_t seed, T a, T b) {
  const philox_block r = philox4x32_10(i, seed);
  if constexpr (std::is_same_v<T, float>) {
    // An explicit fma, as in the OpenCL mirror: `a + (b - a) * u` may or may not be
    // contracted depending on compiler and flags, and the devices must agree bit for bit.
    return std::fma(b - a, unit_float(r[0]), a);
  } else if constexpr (std::is_same_v<T, double>) {
    return std::fma(b - a, unit_double(r[0], r[1]), a);
  } else {
    const auto span = static_cast<std::uint32_t>(b - a);
    return span ? static_cast<T>(a + static_cast<T>(r[0] % span)) : a;
  }
}

/// Element i of normal(seed, mean, stddev): Box-Muller on words 0/1 (float) or 0..3 (double).
template <class T>
T philox_normal(std::uint64_t i, std::uint64_t seed, T mean, T stddev) {
  const philox_block r = philox4x32_10(i, seed);
  if constexpr (std::is_same_v<T, float>) {
    const float u1 = unit_float_open0(r[0]);
    const float u2 = unit_float(r[1]);
    return mean + stddev * (std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864769f * u2));
  } else {
    const double u1 = 1.0 - unit_double(r[0], r[1]);  // (0, 1]
    const double u2 = unit_double(r[2], r[3]);
    return mean + stddev * (std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2));
  }
}

}  // namespace locus::detail
