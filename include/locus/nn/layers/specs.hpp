// Device-neutral layer descriptions, spelled as in Keras. A model turns each one into a
// layer bound to its own device (nn::make_layer<Dev, T>), so a layer description can
// never carry memory of another device into a model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "../../backend/nn_backend.hpp"
#include "../../shape.hpp"
#include "../activation.hpp"

namespace locus {

enum class Padding { valid, same };

/// A 2-D window or stride: `{3, 3}` or a single extent for both axes.
struct Window {
  std::size_t h = 1, w = 1;
  Window() = default;
  Window(std::size_t both) : h(both), w(both) {}  // NOLINT: `Conv2D(32, 3)` as in Keras
  Window(std::size_t h_, std::size_t w_) : h(h_), w(w_) {}
};

namespace layers {

/// Declares the per-sample input shape (no batch axis), like keras.Input(shape=...).
struct Input {
  Shape shape;
  explicit Input(Shape s) : shape(s) {}
  Input(std::initializer_list<std::size_t> s) : shape(s) {}
};

struct Dense {
  std::size_t units;
  locus::Activation activation = locus::Activation::linear;
  bool use_bias = true;
  explicit Dense(std::size_t u, locus::Activation a = locus::Activation::linear, bool bias = true)
      : units(u), activation(a), use_bias(bias) {}
  Dense(std::size_t u, const char* a) : units(u), activation(parse_activation(a)) {}
};

struct Conv2D {
  std::size_t filters;
  Window kernel_size;
  locus::Activation activation = locus::Activation::linear;
  Window strides{1, 1};
  Padding padding = Padding::valid;
  bool use_bias = true;
  Conv2D(std::size_t f, Window k, locus::Activation a = locus::Activation::linear,
         Window s = {1, 1}, Padding p = Padding::valid)
      : filters(f), kernel_size(k), activation(a), strides(s), padding(p) {}
  Conv2D(std::size_t f, Window k, const char* a) : filters(f), kernel_size(k), activation(parse_activation(a)) {}
  Conv2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  Conv2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }
};

/// Pooling windows; strides default to the window (Keras's strides=None).
template <pool_kind Kind>
struct Pooling2D {
  static constexpr pool_kind kind = Kind;
  Window pool_size{2, 2};
  Window strides{0, 0};
  Padding padding = Padding::valid;
  // No two-argument form: `MaxPooling2D({2, 2})` would then also read as a copy of a
  // pooling layer built from (2, 2). Strides and padding go through the setters or all three.
  explicit Pooling2D(Window p = {2, 2}) : pool_size(p) {}
  Pooling2D(Window p, Window s, Padding pad) : pool_size(p), strides(s), padding(pad) {}
  Pooling2D& with_strides(Window s) {
    strides = s;
    return *this;
  }
  Pooling2D& with_padding(Padding p) {
    padding = p;
    return *this;
  }
};
using MaxPooling2D = Pooling2D<pool_kind::max>;
using AveragePooling2D = Pooling2D<pool_kind::average>;

struct Flatten {};

struct Dropout {
  double rate;
  explicit Dropout(double r) : rate(r) {}
};

/// Normalises the last axis (Keras's axis=-1 default).
struct BatchNormalization {
  double momentum = 0.99;
  double epsilon = 1e-3;
  BatchNormalization() = default;
  BatchNormalization(double m, double e) : momentum(m), epsilon(e) {}
};

struct Activation {
  locus::Activation activation;
  explicit Activation(locus::Activation a) : activation(a) {}
  explicit Activation(const char* a) : activation(parse_activation(a)) {}
};

}  // namespace layers

// The Keras names, usable without the namespace. (layers::Activation is the exception:
// `locus::Activation` is the enum of activation functions.)
using layers::AveragePooling2D;
using layers::BatchNormalization;
using layers::Conv2D;
using layers::Dense;
using layers::Dropout;
using layers::Flatten;
using layers::Input;
using layers::MaxPooling2D;

}  // namespace locus
