// The layer classes locus knows: binding a description to its device kernels, and
// rebuilding descriptions from Keras configurations.
//
// Every layer class is listed once, in builtin_layers. A bound model turns each layer of
// its plan into a Kernel<Spec, Dev, T> by finding its class here, and model_from_config
// reads a Keras model configuration (Sequential or Functional) back into a Functional.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../error.hpp"
#include "../functional.hpp"
#include "../layer.hpp"
#include "activation_layer.hpp"
#include "advanced_activations.hpp"
#include "batch_norm.hpp"
#include "conv1d.hpp"
#include "conv2d.hpp"
#include "dense.hpp"
#include "depthwise_conv2d.hpp"
#include "dropout.hpp"
#include "embedding.hpp"
#include "flatten.hpp"
#include "global_pooling.hpp"
#include "input.hpp"
#include "layer_normalization.hpp"
#include "merge.hpp"
#include "pooling.hpp"
#include "reshape.hpp"
#include "separable_conv2d.hpp"

namespace locus::nn {

template <class... L>
struct type_list {};

/// Every layer class a model can run (InputLayer and Functional are structure, not
/// layers that compute).
using builtin_layers =
    type_list<layers::Dense, layers::Conv2D, layers::MaxPooling2D, layers::AveragePooling2D,
              layers::Flatten, layers::Dropout, layers::BatchNormalization, layers::Activation,
              layers::Add, layers::Subtract, layers::Multiply, layers::Concatenate, layers::Reshape,
              layers::ZeroPadding2D, layers::GlobalAveragePooling2D, layers::GlobalMaxPooling2D,
              layers::GlobalAveragePooling1D, layers::LeakyReLU, layers::ELU, layers::ReLU,
              layers::Softmax, layers::Conv1D, layers::DepthwiseConv2D, layers::SeparableConv2D,
              layers::LayerNormalization, layers::Embedding>;

namespace detail {

template <AnyDevice Dev, class T, class... L>
std::unique_ptr<const LayerKernel<Dev, T>> bind(const std::shared_ptr<const Layer>& layer,
                                                type_list<L...>) {
  std::unique_ptr<const LayerKernel<Dev, T>> k;
  (void)((!k && dynamic_cast<const L*>(layer.get())
              ? (k = std::make_unique<Kernel<L, Dev, T>>(layer), true)
              : false) ||
         ...);
  if (!k) {
    throw config_error("locus: layer class '" + layer->class_name() +
                       "' has no implementation in locus (it is not one of locus's layers)");
  }
  return k;
}

template <class... L>
std::shared_ptr<Layer> from_config(const std::string& class_name, const Config& config,
                                   type_list<L...>) {
  std::shared_ptr<Layer> made;
  (void)((!made && class_name == L::keras_class
              ? (made = std::make_shared<L>(L::from_config(config)), true)
              : false) ||
         ...);
  return made;
}

inline std::string entry_name(const Config& entry) {
  if (const Config* n = entry.find("name"); n && n->is_string()) return n->as_string();
  if (const Config* c = entry.find("config")) {
    if (const Config* n = c->find("name"); n && n->is_string()) return n->as_string();
  }
  return "";
}

}  // namespace detail

/// The device-typed kernel of a layer description.
template <AnyDevice Dev, class T>
std::unique_ptr<const LayerKernel<Dev, T>> bind_layer(const std::shared_ptr<const Layer>& layer) {
  return detail::bind<Dev, T>(layer, builtin_layers{});
}

inline Functional model_from_config(const Config& model);

/// A layer description from Keras's class name and configuration (nested models
/// included). An unknown class is a config_error naming it and the layer.
inline std::shared_ptr<Layer> layer_from_config(const std::string& class_name, const Config& config,
                                                const std::string& name = "") {
  std::shared_ptr<Layer> made;
  if (class_name == "Functional" || class_name == "Sequential" || class_name == "Model") {
    made = std::make_shared<Functional>(
        model_from_config(Config::make({{"class_name", class_name}, {"config", config}})));
  } else if (class_name == "InputLayer") {
    made = std::make_shared<InputLayer>(InputLayer::from_config(config));
  } else {
    try {
      made = detail::from_config(class_name, config, builtin_layers{});
    } catch (const config_error& e) {
      throw config_error(std::string(e.what()) + (name.empty() ? "" : " (layer '" + name + "')"));
    }
    if (!made) {
      throw config_error("locus: layer class '" + class_name + "'" +
                         (name.empty() ? "" : " (layer '" + name + "')") +
                         " is not supported by locus");
    }
  }
  if (!name.empty()) made->set_name(name);
  return made;
}

/// A model description from a Keras model configuration: {"class_name": "Sequential" or
/// "Functional", "config": {...}}. Layers are rebuilt with their names; the graph is
/// rebuilt from the inbound nodes (Functional) or the order of the layers (Sequential).
inline Functional model_from_config(const Config& model) {
  if (!model.is_object() || !model.contains("class_name") || !model.contains("config")) {
    throw config_error("locus: a model configuration is an object with 'class_name' and 'config'");
  }
  const std::string kind = model.at("class_name").as_string();
  const Config& cfg = model.at("config");
  const std::string model_name =
      cfg.contains("name") && cfg.at("name").is_string() ? cfg.at("name").as_string() : "";
  if (kind != "Sequential" && kind != "Functional" && kind != "Model") {
    throw config_error("locus: '" + kind + "' is not a model class (Sequential or Functional)");
  }
  const Config::array& entries = cfg.at("layers").as_array();
  if (kind == "Sequential") {
    // The input shape: an InputLayer entry, build_input_shape, or the first layer's
    // batch_input_shape (Keras 2).
    std::optional<SymbolicTensor> x;
    std::vector<SymbolicTensor> in;
    const auto start = [&](const Config& batch_shape) {
      in = {layers::Input(
          InputLayer::from_config(Config::make({{"batch_shape", batch_shape}})).shape)};
      x = in[0];
    };
    for (const Config& e : entries) {
      const std::string cls = e.at("class_name").as_string();
      const Config& lc = e.at("config");
      if (cls == "InputLayer") {
        if (x)
          throw config_error(
              "locus: a Sequential configuration has an InputLayer after other layers");
        start(lc.contains("batch_shape") ? lc.at("batch_shape") : lc.at("batch_input_shape"));
        continue;
      }
      if (!x) {
        if (const Config* b = lc.find("batch_input_shape")) {
          start(*b);
        } else if (const Config* b2 = cfg.find("build_input_shape"); b2 && !b2->is_null()) {
          start(*b2);
        } else {
          throw config_error("locus: the Sequential configuration does not say its input shape");
        }
      }
      auto layer = layer_from_config(cls, lc, detail::entry_name(e));
      x = layer->call({*x}).at(0);
    }
    if (!x || in.empty()) throw config_error("locus: the Sequential configuration has no layers");
    return Functional(in, {*x}, model_name, "Sequential");
  }
  // Functional: create every layer, then resolve the calls in passes until all are made
  // (a call can be made once the tensors it reads exist).
  struct pending {
    std::shared_ptr<Layer> layer;
    const Config::array* nodes;
    std::size_t done = 0;
  };
  std::map<std::string, pending> by_name;
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::vector<SymbolicTensor>>> made;  // layer -> node -> outputs
  for (const Config& e : entries) {
    const std::string name = detail::entry_name(e);
    if (name.empty())
      throw config_error("locus: a layer of the Functional configuration has no name");
    if (by_name.count(name))
      throw config_error("locus: two layers of the configuration are named '" + name + "'");
    const std::string cls = e.at("class_name").as_string();
    static const Config::array none;
    const Config* nodes = e.find("inbound_nodes");
    if (cls == "InputLayer") {
      const Config& lc = e.at("config");
      const InputLayer il = InputLayer::from_config(lc);
      made[name].push_back({layers::Input(il.shape, name)});
      by_name[name] = {nullptr, &none, 0};
      order.push_back(name);
      continue;
    }
    by_name[name] = {layer_from_config(cls, e.at("config"), name),
                     nodes ? &nodes->as_array() : &none, 0};
    order.push_back(name);
  }
  const auto tensor_of = [&](const Config& history) -> const SymbolicTensor* {
    const auto& h = history.as_array();
    if (h.size() < 3)
      throw config_error("locus: a tensor reference needs [layer, node, index], found " +
                         history.dump());
    auto it = made.find(h[0].as_string());
    if (it == made.end()) {
      if (!by_name.count(h[0].as_string()))
        throw config_error("locus: the configuration refers to a layer '" + h[0].as_string() +
                           "' it does not have");
      return nullptr;
    }
    const auto node = static_cast<std::size_t>(h[1].as_int()),
               index = static_cast<std::size_t>(h[2].as_int());
    if (node >= it->second.size()) return nullptr;
    if (index >= it->second[node].size())
      throw config_error("locus: the configuration refers to output " + std::to_string(index) +
                         " of layer '" + h[0].as_string() + "', which has " +
                         std::to_string(it->second[node].size()));
    return &it->second[node][index];
  };
  // Keras 3 writes a call's arguments as keras tensors ({"class_name": "__keras_tensor__",
  // "config": {"keras_history": [...]}}), Keras 2 as [layer, node, index, kwargs] lists.
  const auto collect = [&](const Config& arg, std::vector<const Config*>& out,
                           auto&& self) -> void {
    if (arg.is_object() && arg.contains("config") && arg.at("config").contains("keras_history")) {
      out.push_back(&arg.at("config").at("keras_history"));
    } else if (arg.is_array() && arg.as_array().size() >= 3 && arg.as_array()[0].is_string()) {
      out.push_back(&arg);
    } else if (arg.is_array()) {
      for (const Config& a : arg.as_array()) self(a, out, self);
    } else {
      throw config_error("locus: cannot read the layer call argument " + arg.dump());
    }
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (const std::string& name : order) {
      pending& p = by_name[name];
      while (p.layer && p.done < p.nodes->size()) {
        const Config& node = (*p.nodes)[p.done];
        std::vector<const Config*> refs;
        collect(node.is_object() && node.contains("args") ? node.at("args") : node, refs, collect);
        std::vector<SymbolicTensor> ins;
        bool ready = true;
        for (const Config* r : refs) {
          const SymbolicTensor* t = tensor_of(*r);
          if (!t) {
            ready = false;
            break;
          }
          ins.push_back(*t);
        }
        if (!ready) break;
        made[name].push_back(p.layer->call(ins));
        ++p.done;
        progress = true;
      }
    }
  }
  for (const std::string& name : order) {
    const pending& p = by_name.at(name);
    if (p.layer && p.done < p.nodes->size()) {
      throw config_error(
          "locus: call " + std::to_string(p.done) + " of layer '" + name +
          "' reads a tensor no layer of the configuration makes (a cycle or a missing layer)");
    }
  }
  const auto ends = [&](const char* key) {
    std::vector<SymbolicTensor> out;
    const Config& list = cfg.at(key);
    // [name, node, index] or a list of them.
    const bool single =
        list.is_array() && !list.as_array().empty() && list.as_array()[0].is_string();
    const auto add = [&](const Config& h) {
      const SymbolicTensor* t = tensor_of(h);
      if (!t)
        throw config_error(std::string("locus: ") + key +
                           " refers to a tensor the configuration does not make");
      out.push_back(*t);
    };
    if (single) {
      add(list);
    } else {
      for (const Config& h : list.as_array()) add(h);
    }
    return out;
  };
  return Functional(ends("input_layers"), ends("output_layers"), model_name, "Functional");
}

}  // namespace locus::nn

// Every layer kernel (Kernel<Spec, Dev, T> of each builtin layer) is instantiated in each
// translation unit that binds a model: half the compile time of such a unit. A program of
// several units can compile them once: define LOCUS_EXTERN_LAYER_KERNELS in every unit
// and include <locus/nn/instantiate_layer_kernels.hpp> in exactly one (the tests, examples
// and benchmarks do). Combinations not listed here are instantiated where they are used, as usual.
#define LOCUS_NN_FOR_EACH_LAYER_KERNEL_SET_(X) \
  X(::locus::Device<::locus::CPU>, float)      \
  X(::locus::Device<::locus::CPU>, double)     \
  X(::locus::Device<::locus::GPU>, float)      \
  X(::locus::Device<::locus::GPU>, double)
#define LOCUS_NN_BIND_LAYER_SIGNATURE_(Dev, T)                                           \
  std::unique_ptr<const ::locus::nn::LayerKernel<Dev, T>> locus::nn::bind_layer<Dev, T>( \
      const std::shared_ptr<const ::locus::nn::Layer>&)

#if defined(LOCUS_EXTERN_LAYER_KERNELS)
#define LOCUS_NN_EXTERN_BIND_LAYER_(Dev, T) extern template LOCUS_NN_BIND_LAYER_SIGNATURE_(Dev, T);
LOCUS_NN_FOR_EACH_LAYER_KERNEL_SET_(LOCUS_NN_EXTERN_BIND_LAYER_)
#undef LOCUS_NN_EXTERN_BIND_LAYER_
#endif
