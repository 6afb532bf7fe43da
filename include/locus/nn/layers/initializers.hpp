// Keras's default initialisers, drawn on the layer's own device from an explicit seed.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../tensor.hpp"

namespace locus::nn {

/// Glorot (Xavier) uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)).
template <class T, class Dev>
Tensor<T, Dev> glorot_uniform(const Shape& shape, std::size_t fan_in, std::size_t fan_out,
                              std::uint64_t seed) {
  const T limit = static_cast<T>(std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)));
  return Tensor<T, Dev>::uniform(shape, seed, -limit, limit);
}

}  // namespace locus::nn
