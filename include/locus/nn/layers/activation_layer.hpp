// layers::Activation: an activation function as a layer (Keras's Activation layer).
#pragma once

#include <string>

#include "activated.hpp"
#include "common.hpp"

namespace locus::layers {

struct Activation : nn::LayerSpec<Activation> {
  locus::Activation activation;
  explicit Activation(locus::Activation a) : activation(a) {}
  explicit Activation(const char* a) : activation(parse_activation(a)) {}

  static constexpr const char* keras_class = "Activation";
  nn::Config config() const override { return nn::Config::make({{"activation", to_string(activation)}}); }
  static Activation from_config(const nn::Config& c) { return Activation(parse_activation(c.at("activation").as_string())); }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override { return {in[0]}; }
  nn::BackwardNeeds backward_needs() const override {
    const bool from_input = nn::derivative_needs_input(activation);
    return {from_input, !from_input && activation != locus::Activation::linear};
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    std::vector<Tensor<T, Dev>> out;
    out.push_back(nn::activate(activation, f.in[0].take()));
    return out;
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    nn::activation_grad_in_place(activation, b.out[0], b.in[0], *b.dy[0]);
    dx[0] = std::move(*b.dy[0]);
    return dx;
  }
};

}  // namespace locus::layers
