// Every layer locus has, under its Keras name.
#pragma once

#include "layers/activation_layer.hpp"
#include "layers/advanced_activations.hpp"
#include "layers/batch_norm.hpp"
#include "layers/conv1d.hpp"
#include "layers/conv2d.hpp"
#include "layers/dense.hpp"
#include "layers/depthwise_conv2d.hpp"
#include "layers/dropout.hpp"
#include "layers/embedding.hpp"
#include "layers/flatten.hpp"
#include "layers/global_pooling.hpp"
#include "layers/input.hpp"
#include "layers/layer_normalization.hpp"
#include "layers/merge.hpp"
#include "layers/pooling.hpp"
#include "layers/registry.hpp"
#include "layers/reshape.hpp"
#include "layers/separable_conv2d.hpp"

namespace locus {
// The Keras names, usable without the namespace. (layers::Activation is the exception:
// `locus::Activation` is the enum of activation functions.)
using layers::Add;
using layers::AveragePooling2D;
using layers::BatchNormalization;
using layers::Concatenate;
using layers::Conv1D;
using layers::Conv2D;
using layers::Dense;
using layers::DepthwiseConv2D;
using layers::Dropout;
using layers::ELU;
using layers::Embedding;
using layers::Flatten;
using layers::GlobalAveragePooling1D;
using layers::GlobalAveragePooling2D;
using layers::GlobalMaxPooling2D;
using layers::Input;
using layers::LayerNormalization;
using layers::LeakyReLU;
using layers::MaxPooling2D;
using layers::Multiply;
using layers::ReLU;
using layers::Reshape;
using layers::SeparableConv2D;
using layers::Softmax;
using layers::Subtract;
using layers::ZeroPadding2D;
}  // namespace locus
