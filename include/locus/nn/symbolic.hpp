// Symbolic tensors: the values of the functional API.
//
// `auto x = Input({28, 28, 1}); auto y = Dense(10)(Flatten()(x));` computes nothing: each
// layer call records a node (the layer and the symbolic tensors it was called on) and
// returns symbolic tensors that know only their per-sample shape. A Functional walks the
// nodes back from its outputs to its inputs to become a model description. No device is
// involved; one enters when the description is bound (Model<Dev>).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "../shape.hpp"

namespace locus::nn {

class Layer;
class SymbolicTensor;

namespace detail {

/// One layer call in a graph under construction.
struct Node {
  std::shared_ptr<const Layer> layer;  // the snapshot of the layer called
  std::vector<SymbolicTensor> inputs;  // empty for an input node
  std::vector<Shape> output_shapes;    // per sample
};

/// The state a layer object shares with its copies: the description taken at its first
/// call and the input shapes of that call (later calls share its weights).
struct LayerSlot {
  std::shared_ptr<const Layer> snapshot;
  std::vector<Shape> input_shapes;
};

}  // namespace detail

/// A tensor of the functional API: output `index` of a layer call, with its per-sample
/// shape. Cheap to copy; copies are the same tensor.
class SymbolicTensor {
 public:
  SymbolicTensor() = default;
  SymbolicTensor(std::shared_ptr<const detail::Node> node, std::size_t index)
      : node_(std::move(node)), index_(index) {}

  bool valid() const { return node_ != nullptr; }
  /// Per-sample shape (no batch axis).
  const Shape& shape() const { return node_->output_shapes[index_]; }
  const std::shared_ptr<const detail::Node>& node() const { return node_; }
  std::size_t index() const { return index_; }

  friend bool operator==(const SymbolicTensor& a, const SymbolicTensor& b) {
    return a.node_ == b.node_ && a.index_ == b.index_;
  }

 private:
  std::shared_ptr<const detail::Node> node_;
  std::size_t index_ = 0;
};

}  // namespace locus::nn
