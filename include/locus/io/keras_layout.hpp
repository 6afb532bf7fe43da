// Where Keras keeps each weight of a model in its files, computed from the description.
//
// Keras 3 (.keras's model.weights.h5, .weights.h5) does not key weights by layer name: it
// walks the model's layer list and keys each layer by its Python class name in snake case,
// made unique within its container ("layers/dense", "layers/dense_1", nested models
// "layers/sequential/layers/dense"); a layer's own variables are "vars/0", "vars/1", ...
// (trainable ones first), and its "vars" group carries the layer's name as an attribute.
// A Sequential's layer list leaves out its InputLayer; a Functional's keeps it.
//
// The legacy HDF5 format (Keras 2, and Keras 3's model.save("x.h5")) lists the layers
// with weights by name (layer_names) and each layer's weights (weight_names): a nested
// model's weights are all its trainable weights and then all the others, as
// layer.trainable_weights + layer.non_trainable_weights.
//
// Both orders are derived here from the same walk, so saving and loading agree by
// construction; nothing here touches a device.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../nn/functional.hpp"
#include "../nn/plan.hpp"

namespace locus::io {

/// One weight of a model, in the order of Model::weights() (layers in plan order).
struct WeightSlot {
  std::string name;    ///< "dense/kernel", "inner/dense/kernel"
  std::string layer;   ///< the layer's path: "dense", "inner/dense"
  std::string weight;  ///< "kernel"
  Shape shape;
  bool trainable = true;
};

/// The weights of a description, in Model::weights() order.
inline std::vector<WeightSlot> weight_slots(const nn::Functional& model) {
  const nn::Plan plan(model);
  std::vector<WeightSlot> out;
  for (const auto& pl : plan.layers)
    for (const auto& w : pl.weights)
      out.push_back({pl.path + "/" + w.name, pl.path, w.name, w.shape, w.trainable});
  return out;
}

/// One layer as Keras's saving walk meets it.
struct KerasLayer {
  std::string key;   ///< group of the layer: "layers/conv2d", "layers/sequential/layers/dense"
  std::string path;  ///< locus's path of the layer: "conv2d", "inner/dense"
  std::string name;  ///< the layer's name (the "name" attribute of its vars group)
  std::string class_name;  ///< "Conv2D"; "Sequential"/"Functional" for a nested model
  std::size_t depth = 0;   ///< 0 for the model's own layers, 1 inside a nested model, ...
  bool is_model = false;
  /// Indices into weight_slots() of the layer's own weights, trainable ones first (a
  /// nested model has none of its own).
  std::vector<std::size_t> weights;
};

namespace detail {

inline void walk_keras_layers(const nn::Functional& f, const std::string& key_prefix,
                              const std::string& path_prefix, std::size_t depth,
                              const std::map<std::string, std::vector<std::size_t>>& by_layer,
                              const std::vector<WeightSlot>& slots, std::vector<KerasLayer>& out) {
  std::map<std::string, std::size_t> used;  // Keras's _get_unique_name, per container
  const bool sequential = f.class_name() == "Sequential";
  for (const nn::GraphLayer& gl : f.layers()) {
    const std::string cls = gl.layer->class_name();
    if (sequential && cls == "InputLayer") continue;
    std::string key = nn::snake_case(cls);
    if (auto it = used.find(key); it != used.end()) {
      key += "_" + std::to_string(++it->second);
    } else {
      used.emplace(key, 0);
    }
    KerasLayer kl;
    kl.key = key_prefix + "layers/" + key;
    kl.path = path_prefix + gl.name;
    kl.name = gl.name;
    kl.class_name = cls;
    kl.depth = depth;
    const auto* nested = dynamic_cast<const nn::Functional*>(gl.layer.get());
    kl.is_model = nested != nullptr;
    if (!nested) {
      if (auto it = by_layer.find(kl.path); it != by_layer.end()) {
        kl.weights = it->second;
        std::stable_partition(kl.weights.begin(), kl.weights.end(),
                              [&](std::size_t i) { return slots[i].trainable; });
      }
    }
    out.push_back(kl);
    if (nested)
      walk_keras_layers(*nested, kl.key + "/", kl.path + "/", depth + 1, by_layer, slots, out);
  }
}

}  // namespace detail

/// Every layer of `model` in Keras's saving order (a nested model, then its layers), with
/// its group in a Keras 3 weights file and its weights.
inline std::vector<KerasLayer> keras_layers(const nn::Functional& model,
                                            const std::vector<WeightSlot>& slots) {
  std::map<std::string, std::vector<std::size_t>> by_layer;
  for (std::size_t i = 0; i < slots.size(); ++i) by_layer[slots[i].layer].push_back(i);
  std::vector<KerasLayer> out;
  detail::walk_keras_layers(model, "", "", 0, by_layer, slots, out);
  return out;
}

/// The weights of one top-level layer in the legacy HDF5 order: all trainable weights of
/// the layer (and, for a nested model, of its layers in order), then all the others.
inline std::vector<std::size_t> legacy_weight_order(const std::vector<KerasLayer>& layers,
                                                    std::size_t top,
                                                    const std::vector<WeightSlot>& slots) {
  std::vector<std::size_t> all;
  for (std::size_t i = top; i < layers.size() && (i == top || layers[i].depth > layers[top].depth);
       ++i)
    all.insert(all.end(), layers[i].weights.begin(), layers[i].weights.end());
  std::stable_partition(all.begin(), all.end(), [&](std::size_t i) { return slots[i].trainable; });
  return all;
}

/// The trainable weights in the order of Keras's model.trainable_variables (the order of
/// an optimizer's slot variables in its files): layers in saving order.
inline std::vector<std::size_t> keras_trainable_order(const std::vector<KerasLayer>& layers,
                                                      const std::vector<WeightSlot>& slots) {
  std::vector<std::size_t> out;
  for (const auto& l : layers)
    for (std::size_t i : l.weights)
      if (slots[i].trainable) out.push_back(i);
  return out;
}

/// "(3, 3, 1, 4)", as Keras prints shapes.
inline std::string shape_text(const std::vector<std::size_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}
inline std::string shape_text(const Shape& s) {
  return shape_text(s.to_vector());
}

}  // namespace locus::io
