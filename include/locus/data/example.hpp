// Example<Dev, T, L>: one element of a Dataset (a sample, or a batch once batched): the
// features and the labels on the device the element arrives on, and where it came from.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../device.hpp"
#include "../tensor.hpp"

namespace locus::data {

template <AnyDevice Dev, Element T = float, Element L = std::int32_t>
struct Example {
  using device_type = Dev;
  using value_type = T;
  using label_type = L;

  Tensor<T, Dev> x;
  Tensor<L, Dev> y;
  /// Index of the element's first source record in its pass over the source: errors name
  /// it, so a corrupt record can be found in the file.
  std::uint64_t record = 0;
  /// The element's random key, a function of the pass (epoch) and the record only, never of
  /// which thread handles it: random augmentation seeded by it is reproducible.
  std::uint64_t key = 0;
};

/// splitmix64's finaliser: a well-mixed 64-bit value of two 64-bit values (keys of
/// records, passes and samples within a batch).
constexpr std::uint64_t mix_keys(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace locus::data
