// Turns a device-neutral layer description into a layer on device Dev.
#pragma once

#include <memory>
#include <type_traits>

#include "../../detail/contract.hpp"
#include "batch_norm.hpp"
#include "conv2d.hpp"
#include "dense.hpp"
#include "pooling.hpp"
#include "simple.hpp"
#include "specs.hpp"

namespace locus::nn {

template <class L>
struct is_layer_spec
    : std::bool_constant<std::is_same_v<L, layers::Dense> || std::is_same_v<L, layers::Conv2D> ||
                         std::is_same_v<L, layers::MaxPooling2D> ||
                         std::is_same_v<L, layers::AveragePooling2D> ||
                         std::is_same_v<L, layers::Flatten> || std::is_same_v<L, layers::Dropout> ||
                         std::is_same_v<L, layers::BatchNormalization> ||
                         std::is_same_v<L, layers::Activation>> {};

template <AnyDevice Dev, class T, class Spec>
std::unique_ptr<Layer<Dev, T>> make_layer(const Spec& s) {
  if constexpr (std::is_same_v<Spec, layers::Dense>) {
    return std::make_unique<DenseLayer<Dev, T>>(s);
  } else if constexpr (std::is_same_v<Spec, layers::Conv2D>) {
    return std::make_unique<Conv2DLayer<Dev, T>>(s);
  } else if constexpr (std::is_same_v<Spec, layers::MaxPooling2D> ||
                       std::is_same_v<Spec, layers::AveragePooling2D>) {
    return std::make_unique<Pooling2DLayer<Dev, T>>(Spec::kind, s.pool_size, s.strides, s.padding);
  } else if constexpr (std::is_same_v<Spec, layers::Flatten>) {
    return std::make_unique<FlattenLayer<Dev, T>>();
  } else if constexpr (std::is_same_v<Spec, layers::Dropout>) {
    return std::make_unique<DropoutLayer<Dev, T>>(s.rate);
  } else if constexpr (std::is_same_v<Spec, layers::BatchNormalization>) {
    return std::make_unique<BatchNormLayer<Dev, T>>(s);
  } else if constexpr (std::is_same_v<Spec, layers::Activation>) {
    return std::make_unique<ActivationLayer<Dev, T>>(s.activation);
  } else {
    static_assert(locus::detail::dependent_false<Spec>,
                  "locus: not a layer; use a layer description such as locus::Dense(10) or a "
                  "layer bound to the model's device");
    return nullptr;
  }
}

}  // namespace locus::nn
