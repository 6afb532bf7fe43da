// The residual CNN of examples/residual_cnn.cpp as a device-neutral description, shared
// with bench/bench_cnn.cpp (and described again, layer for layer, for the peers in
// bench/cnn_peer_common.py).
#pragma once

#include <cstddef>

#include <locus/locus.hpp>

namespace residual_example {

using namespace locus;
using nn::SymbolicTensor;

/// conv -> batch norm, with a relu unless `relu` is false. The moving statistics follow
/// the batches with momentum 0.9 rather than Keras's default 0.99: a 0.99 average still
/// holds 28% of its initial variance (1) after the 128 steps of a --quick run, far above
/// the first layer's real variance (~0.02), and the model collapses in inference mode.
inline SymbolicTensor conv_bn(const SymbolicTensor& x, std::size_t filters, bool relu = true) {
  SymbolicTensor h = Conv2D(filters, 3, Activation::linear, 1, Padding::same)(x);
  h = BatchNormalization(/*momentum=*/0.9, /*epsilon=*/1e-3)(h);
  return relu ? layers::Activation("relu")(h) : h;
}

/// relu(x + conv_bn(conv_bn(x), no relu)): the block keeps the shape of its input.
inline SymbolicTensor residual_block(const SymbolicTensor& x, std::size_t filters) {
  const SymbolicTensor y = conv_bn(conv_bn(x, filters), filters, /*relu=*/false);
  return layers::Activation("relu")(Add()({x, y}));
}

/// The description (16, 32 and 64 channels): no weights, no device.
inline Functional residual_cnn() {
  const Input x({28, 28, 1});
  SymbolicTensor h = conv_bn(x, 16);
  h = residual_block(h, 16);
  h = MaxPooling2D({2, 2})(h);  // 14x14x16
  h = conv_bn(h, 32);
  h = residual_block(h, 32);
  h = MaxPooling2D({2, 2})(h);  // 7x7x32
  h = conv_bn(h, 64);
  h = residual_block(h, 64);  // 7x7x64
  h = GlobalAveragePooling2D()(h);
  return Functional(x, Dense(10, Activation::softmax)(h), "residual_cnn");
}

}  // namespace residual_example
