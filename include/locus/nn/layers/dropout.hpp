// Dropout (inverted): a training call keeps each element with probability 1 - rate and
// scales it by 1 / (1 - rate); inference is the identity (and takes its input's storage
// when nothing else needs it, so it copies nothing). The mask is drawn on the device
// from the call's seed (the layer's seed and the training step), so runs are reproducible
// and identical across devices.
#pragma once

#include <string>

#include "common.hpp"

namespace locus::layers {

struct Dropout : nn::LayerSpec<Dropout> {
  double rate;
  explicit Dropout(double r) : rate(r) {
    if (!(rate >= 0.0 && rate < 1.0)) {
      throw argument_error("locus::Dropout: rate must be in [0, 1), got " + std::to_string(rate));
    }
  }

  static constexpr const char* keras_class = "Dropout";
  nn::Config config() const override {
    return nn::Config::make({{"rate", rate}, {"seed", nullptr}, {"noise_shape", nullptr}});
  }
  static Dropout from_config(const nn::Config& c) {
    if (const auto* ns = c.find("noise_shape"); ns && !ns->is_null())
      throw config_error("locus::Dropout: noise_shape " + ns->dump() + " is not supported");
    return Dropout(c.at("rate").as_double());
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {in[0]}; }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    std::vector<Tensor<T, Dev>> out;
    if (!f.training() || rate == 0.0) {
      out.push_back(f.in[0].take());
      return out;
    }
    const T keep_scale = static_cast<T>(1.0 / (1.0 - rate));
    Tensor<T, Dev> mask = Tensor<T, Dev>::uniform(f.x().shape(), f.seed);
    mask = where(greater_equal(mask, static_cast<T>(rate)), keep_scale, T(0));
    out.push_back(f.x() * mask);
    f.saved->tensors.push_back(std::move(mask));
    return out;
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    if (rate != 0.0) *b.dy[0] *= b.saved.tensors[0];
    dx[0] = std::move(*b.dy[0]);
    return dx;
  }
};

}  // namespace locus::layers
