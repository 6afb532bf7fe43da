// Layers without their own kernels: Flatten, Activation, Dropout.
#pragma once

#include <cstdint>
#include <string>

#include "../../error.hpp"
#include "../activation.hpp"
#include "../layer.hpp"
#include "specs.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
class FlattenLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  std::string type_name() const override { return "Flatten"; }
  Shape build(const Shape& in, std::uint64_t) override { return {in.size()}; }
  tensor forward(const tensor& x, bool) override {
    return x.reshape(Shape{x.shape()[0], x.size() / std::max<std::size_t>(x.shape()[0], 1)});
  }
  tensor backward(const tensor& x, const tensor&, const tensor& dy, bool need_dx) override {
    if (!need_dx) return tensor();
    return dy.reshape(x.shape());
  }
};

template <AnyDevice Dev, class T>
class ActivationLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit ActivationLayer(Activation a) : act_(a) {}
  std::string type_name() const override { return "Activation"; }
  Shape build(const Shape& in, std::uint64_t) override { return in; }
  tensor forward(const tensor& x, bool) override { return activate(act_, x); }
  tensor backward(const tensor&, const tensor& y, const tensor& dy, bool need_dx) override {
    if (!need_dx) return tensor();
    return activation_backward(act_, y, dy);
  }

 private:
  Activation act_;
};

/// Inverted dropout: at training time keeps each element with probability 1 - rate and
/// scales it by 1 / (1 - rate); the identity at inference. The mask is drawn on the
/// device from (seed, step), so runs are reproducible and identical across devices.
template <AnyDevice Dev, class T>
class DropoutLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  explicit DropoutLayer(double rate) : rate_(rate) {
    if (!(rate >= 0.0 && rate < 1.0)) {
      throw argument_error("locus::Dropout: rate must be in [0, 1), got " + std::to_string(rate));
    }
  }
  std::string type_name() const override { return "Dropout"; }
  Shape build(const Shape& in, std::uint64_t seed) override {
    seed_ = seed;
    return in;
  }
  tensor forward(const tensor& x, bool training) override {
    if (!training || rate_ == 0.0) return x;
    const T keep_scale = static_cast<T>(1.0 / (1.0 - rate_));
    // The step counter advances the stream; the high bits keep streams of layers apart.
    mask_ = tensor::uniform(x.shape(), seed_ * 0x9E3779B97F4A7C15ull + step_++);
    mask_ = where(greater_equal(mask_, static_cast<T>(rate_)), keep_scale, T(0));
    return x * mask_;
  }
  tensor backward(const tensor&, const tensor&, const tensor& dy, bool need_dx) override {
    if (!need_dx) return tensor();
    if (rate_ == 0.0) return dy;
    return dy * mask_;
  }

 private:
  double rate_;
  std::uint64_t seed_ = 0, step_ = 0;
  tensor mask_;
};

}  // namespace locus::nn
