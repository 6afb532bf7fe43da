// Every layer locus has, under its Keras name.
#pragma once

#include "layers/activation_layer.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/dense.hpp"
#include "layers/dropout.hpp"
#include "layers/flatten.hpp"
#include "layers/input.hpp"
#include "layers/pooling.hpp"
#include "layers/registry.hpp"

namespace locus {
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
