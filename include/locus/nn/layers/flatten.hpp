// Flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...] (row-major, so NHWC flattens over
// (H, W, C) as Keras does). A reshape: it takes its input's storage when nothing else
// needs it, so it copies nothing.
#pragma once

#include <string>

#include "common.hpp"

namespace locus::layers {

struct Flatten : nn::LayerSpec<Flatten> {
  static constexpr const char* keras_class = "Flatten";
  nn::Config config() const override { return nn::Config::make({{"data_format", "channels_last"}}); }
  static Flatten from_config(const nn::Config& c) {
    nn::require_channels_last(c, "Flatten");
    return {};
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {{in[0].size()}}; }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const Shape& s = f.x().shape();
    const std::size_t n = s[0];
    std::vector<Tensor<T, Dev>> out;
    out.push_back(f.in[0].take().reshape(Shape{n, n ? s.size() / n : per_sample_size(s)}));
    return out;
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (b.need_dx[0]) dx[0] = std::move(*b.dy[0]).reshape(b.in_shapes[0]);
    return dx;
  }

 private:
  static std::size_t per_sample_size(const Shape& s) {
    std::size_t k = 1;
    for (std::size_t i = 1; i < s.rank(); ++i) k *= s[i];
    return k;
  }
};

}  // namespace locus::layers
