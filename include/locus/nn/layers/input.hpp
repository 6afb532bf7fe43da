// Input: the symbolic input of a functional model, like keras.Input(shape=...).
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include "../layer.hpp"

namespace locus::nn {

/// The description of a model input (Keras's InputLayer). It computes nothing: a model
/// feeds its input tensors to the layers that consume it.
class InputLayer final : public LayerSpec<InputLayer> {
 public:
  Shape shape;  ///< per sample (no batch axis)

  explicit InputLayer(Shape s, std::string name = "") : shape(s) { name_ = std::move(name); }

  static constexpr const char* keras_class = "InputLayer";
  std::size_t min_inputs() const override { return 0; }
  std::size_t max_inputs() const override { return 0; }
  Config config() const override {
    Config batch = Config::list({nullptr});
    for (auto d : shape) batch.push_back(d);
    return Config::make({{"batch_shape", batch}, {"dtype", "float32"}, {"sparse", false}});
  }
  static InputLayer from_config(const Config& c) {
    const Config* s = c.find("batch_shape");
    if (!s) s = c.find("batch_input_shape");  // Keras 2
    if (!s) throw config_error("locus: an InputLayer configuration needs 'batch_shape'");
    const auto& a = s->as_array();
    if (a.empty()) throw config_error("locus: InputLayer 'batch_shape' is empty");
    Shape shape;
    for (std::size_t i = 1; i < a.size(); ++i) {
      if (a[i].is_null() || a[i].as_int() <= 0)
        throw config_error("locus: InputLayer 'batch_shape' " + s->dump() +
                           " has an unknown or invalid extent; locus needs fixed per-sample shapes");
      shape.push_back(static_cast<std::size_t>(a[i].as_int()));
    }
    return InputLayer(shape);
  }
  std::vector<Shape> output_shapes(const std::vector<Shape>&) const override { return {shape}; }
};

}  // namespace locus::nn

namespace locus::layers {

/// A symbolic model input of the given per-sample shape: `auto x = Input({28, 28, 1});`.
/// In a Sequential it declares the input shape (the model then builds at once).
class Input : public nn::SymbolicTensor {
 public:
  explicit Input(Shape shape, std::string name = "")
      : nn::SymbolicTensor(make(shape, std::move(name)), 0) {}
  Input(std::initializer_list<std::size_t> shape) : Input(Shape(shape)) {}

 private:
  static std::shared_ptr<const nn::detail::Node> make(const Shape& shape, std::string name) {
    auto node = std::make_shared<nn::detail::Node>();
    node->layer = std::make_shared<nn::InputLayer>(shape, std::move(name));
    node->output_shapes = {shape};
    return node;
  }
};

}  // namespace locus::layers
