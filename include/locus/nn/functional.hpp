// Functional: the device-neutral description of a model, a graph of layer calls.
//
//   auto inputs = Input({28, 28, 1});
//   auto x = Conv2D(32, 3, "relu")(inputs);
//   auto outputs = Dense(10, "softmax")(Flatten()(x));
//   Functional net(inputs, outputs);          // a description: no weights, no device
//   Model<Device<GPU>> model(net, /*seed=*/1);  // bound: every weight lives on the GPU
//
// The graph is collected from the symbolic tensors, walking back from the outputs to the
// inputs; layers called more than once appear once (their weights are shared), nested
// models appear as layers. Layers get Keras's names ("dense", "dense_1", ...) unless they
// were named, and config() is Keras's functional configuration, from which
// model_from_config (layers/registry.hpp) rebuilds the same graph.
#pragma once

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "layer.hpp"
#include "layers/input.hpp"
#include "symbolic.hpp"

namespace locus::nn {

/// Output `index` of graph node `node`.
struct GraphRef {
  std::size_t node = 0, index = 0;
  friend bool operator==(const GraphRef&, const GraphRef&) = default;
};

struct GraphLayer {
  std::string name;
  std::shared_ptr<const Layer> layer;
  std::size_t calls = 0;  ///< how many nodes call it (more than one: shared weights)
};

struct GraphNode {
  std::size_t layer = 0;  ///< index into Functional::layers()
  std::vector<GraphRef> inputs;
  std::vector<Shape> output_shapes;
  std::size_t call = 0;  ///< which call of its layer this is (Keras's node index)
};

/// Keras's automatic layer name for a class: "Conv2D" -> "conv2d", "MaxPooling2D" ->
/// "max_pooling2d", "BatchNormalization" -> "batch_normalization" (keras.utils's
/// to_snake_case: an underscore before each capitalised word, and between a lower-case
/// letter and a capital, then lower case).
inline std::string snake_case(const std::string& s) {
  std::string a;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool word = i > 0 && std::isupper(static_cast<unsigned char>(s[i])) && i + 1 < s.size() &&
                      std::islower(static_cast<unsigned char>(s[i + 1]));
    if (word) a += '_';
    a += s[i];
  }
  std::string b;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i > 0 && std::islower(static_cast<unsigned char>(a[i - 1])) &&
        std::isupper(static_cast<unsigned char>(a[i])))
      b += '_';
    b += static_cast<char>(std::tolower(static_cast<unsigned char>(a[i])));
  }
  return b;
}

class Functional final : public LayerSpec<Functional> {
 public:
  static constexpr const char* keras_class = "Functional";

  /// The model from `inputs` to `outputs`. `kind` is "Functional" or "Sequential" (the
  /// Keras class a description of a layer stack is written as).
  Functional(const std::vector<SymbolicTensor>& inputs, const std::vector<SymbolicTensor>& outputs,
             std::string name = "", std::string kind = "Functional")
      : g_(std::make_shared<graph>(build(inputs, outputs, std::move(kind)))) {
    name_ = std::move(name);
  }
  Functional(const SymbolicTensor& input, const SymbolicTensor& output, std::string name = "")
      : Functional(std::vector<SymbolicTensor>{input}, std::vector<SymbolicTensor>{output},
                   std::move(name)) {}

  std::string class_name() const override { return g_->kind; }
  std::size_t min_inputs() const override { return g_->inputs.size(); }
  std::size_t max_inputs() const override { return g_->inputs.size(); }

  const std::vector<GraphLayer>& layers() const { return g_->layers; }
  const std::vector<GraphNode>& nodes() const { return g_->nodes; }
  const std::vector<GraphRef>& inputs() const { return g_->inputs; }
  const std::vector<GraphRef>& outputs() const { return g_->outputs; }
  const Shape& shape_of(GraphRef r) const { return g_->nodes[r.node].output_shapes[r.index]; }
  std::vector<Shape> input_shapes() const { return shapes_of(g_->inputs); }
  std::vector<Shape> output_shapes() const { return shapes_of(g_->outputs); }
  /// The name of the model (Keras's default: "functional" or "sequential").
  std::string model_name() const { return name_.empty() ? snake_case(g_->kind) : name_; }
  /// Whether node i is a model input (an InputLayer node).
  bool is_input_node(std::size_t i) const { return g_->nodes[i].inputs.empty(); }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const auto want = input_shapes();
    bool ok = in.size() == want.size();
    for (std::size_t i = 0; ok && i < in.size(); ++i) ok = in[i] == want[i];
    if (!ok) {
      std::string got, exp;
      for (const auto& s : in) got += (got.empty() ? "" : ", ") + to_string(s);
      for (const auto& s : want) exp += (exp.empty() ? "" : ", ") + to_string(s);
      throw shape_error("locus::" + g_->kind + " '" + model_name() + "': called on inputs " + got +
                        ", built for " + exp);
    }
    return output_shapes();
  }

  /// Keras's configuration of the model: its layers (each with its class name, config
  /// and the calls that feed it) and its input and output tensors.
  Config config() const override {
    Config c = Config::make({{"name", model_name()}, {"trainable", true}});
    Config layers_cfg = Config::array{};
    const bool sequential = g_->kind == "Sequential";
    for (std::size_t li = 0; li < g_->layers.size(); ++li) {
      const GraphLayer& gl = g_->layers[li];
      Config lc = layer_entry(gl);
      if (!sequential) {
        Config inbound = Config::array{};
        for (const GraphNode& n : g_->nodes) {
          if (n.layer != li || n.inputs.empty()) continue;
          Config args = Config::array{};
          for (const GraphRef& r : n.inputs) args.push_back(keras_tensor(r));
          Config call_args =
              n.inputs.size() == 1 ? Config::list({args.as_array()[0]}) : Config::list({args});
          inbound.push_back(Config::make({{"args", call_args}, {"kwargs", Config::object{}}}));
        }
        lc.set("inbound_nodes", inbound);
      }
      layers_cfg.push_back(lc);
    }
    c.set("layers", layers_cfg);
    if (sequential) {
      Config b = Config::list({nullptr});
      for (auto d : shape_of(g_->inputs[0])) b.push_back(d);
      c.set("build_input_shape", b);
    } else {
      c.set("input_layers", history_list(g_->inputs));
      c.set("output_layers", history_list(g_->outputs));
    }
    return c;
  }

  /// The entry of one layer in a model configuration: {"module", "class_name", "config"
  /// (with "name", "trainable", "dtype"), "registered_name", "build_config", "name"}.
  Config layer_entry(const GraphLayer& gl) const {
    const Layer& l = *gl.layer;
    Config cfg = l.config();
    Config named = Config::make({{"name", gl.name}, {"trainable", true}});
    if (l.class_name() != "Functional" && l.class_name() != "Sequential") {
      named.set("dtype", Config::make({{"module", "keras"},
                                       {"class_name", "DTypePolicy"},
                                       {"config", Config::make({{"name", "float32"}})},
                                       {"registered_name", nullptr}}));
    }
    for (const auto& [k, v] : cfg.as_object()) named.set(k, v);
    if (l.class_name() == "Functional" || l.class_name() == "Sequential")
      named.set("name", gl.name);
    const bool model = l.class_name() == "Functional" || l.class_name() == "Sequential";
    // Where Keras finds the class: a nested Functional is keras.src.models.functional's,
    // registered under its class name; Sequential and the layers are public keras names.
    const bool functional = l.class_name() == "Functional";
    Config e = Config::make({{"module", functional ? "keras.src.models.functional"
                                        : model    ? "keras"
                                                   : "keras.layers"},
                             {"class_name", l.class_name()},
                             {"config", named},
                             {"registered_name", functional ? Config("Functional") : Config()}});
    // build_config: the input shape of the first call (batch axis unknown).
    for (const GraphNode& n : g_->nodes) {
      if (g_->layers[n.layer].layer != gl.layer || n.inputs.empty()) continue;
      Config shapes = Config::array{};
      for (const GraphRef& r : n.inputs) {
        Config s = Config::list({nullptr});
        for (auto d : shape_of(r)) s.push_back(d);
        shapes.push_back(s);
      }
      e.set("build_config",
            Config::make({{"input_shape", n.inputs.size() == 1 ? shapes.as_array()[0] : shapes}}));
      break;
    }
    e.set("name", gl.name);
    return e;
  }

 private:
  struct graph {
    std::string kind;
    std::vector<GraphLayer> layers;
    std::vector<GraphNode> nodes;
    std::vector<GraphRef> inputs, outputs;
  };

  std::vector<Shape> shapes_of(const std::vector<GraphRef>& refs) const {
    std::vector<Shape> s;
    for (const auto& r : refs) s.push_back(shape_of(r));
    return s;
  }

  Config keras_tensor(GraphRef r) const {
    const GraphNode& n = g_->nodes[r.node];
    Config shape = Config::list({nullptr});
    for (auto d : n.output_shapes[r.index]) shape.push_back(d);
    return Config::make(
        {{"class_name", "__keras_tensor__"},
         {"config", Config::make({{"shape", shape},
                                  {"dtype", "float32"},
                                  {"keras_history",
                                   Config::list({g_->layers[n.layer].name, n.call, r.index})}})}});
  }

  Config history_list(const std::vector<GraphRef>& refs) const {
    Config out = Config::array{};
    for (const GraphRef& r : refs) {
      const GraphNode& n = g_->nodes[r.node];
      out.push_back(Config::list({g_->layers[n.layer].name, n.call, r.index}));
    }
    return out;
  }

  static graph build(const std::vector<SymbolicTensor>& inputs,
                     const std::vector<SymbolicTensor>& outputs, std::string kind) {
    graph g;
    g.kind = std::move(kind);
    if (inputs.empty()) throw config_error("locus::Functional: a model needs at least one input");
    if (outputs.empty()) throw config_error("locus::Functional: a model needs at least one output");
    std::map<const detail::Node*, std::size_t> node_index;
    std::map<const Layer*, std::size_t> layer_index;
    std::set<const detail::Node*> declared;
    for (const auto& x : inputs) {
      if (!x.valid()) throw config_error("locus::Functional: an input is an empty symbolic tensor");
      if (!x.node()->inputs.empty() || x.node()->layer->class_name() != "InputLayer") {
        throw config_error(
            "locus::Functional: every model input must be a locus::Input (a layer's output was "
            "given)");
      }
      declared.insert(x.node().get());
    }
    const auto add_node = [&](const detail::Node& n, std::vector<GraphRef> ins) {
      auto [it, fresh] = layer_index.emplace(n.layer.get(), g.layers.size());
      if (fresh) g.layers.push_back({n.layer->name(), n.layer, 0});
      GraphNode gn;
      gn.layer = it->second;
      gn.inputs = std::move(ins);
      gn.output_shapes = n.output_shapes;
      gn.call = g.layers[it->second].calls++;
      node_index[&n] = g.nodes.size();
      g.nodes.push_back(std::move(gn));
    };
    // Inputs first, in the order given (Keras lists its InputLayers first too).
    for (const auto& x : inputs) {
      if (!node_index.count(x.node().get())) add_node(*x.node(), {});
    }
    // Then every call the outputs depend on, inputs of a node before the node.
    std::set<const detail::Node*> on_path;
    const auto visit = [&](auto&& self, const detail::Node& n) -> void {
      if (node_index.count(&n)) return;
      if (n.inputs.empty()) {
        throw config_error(
            "locus::Functional: an output depends on an Input" +
            (n.layer->name().empty() ? std::string() : " '" + n.layer->name() + "'") +
            " that is not among the model's inputs");
      }
      on_path.insert(&n);
      std::vector<GraphRef> ins;
      for (const auto& x : n.inputs) {
        self(self, *x.node());
        ins.push_back({node_index.at(x.node().get()), x.index()});
      }
      on_path.erase(&n);
      add_node(n, std::move(ins));
    };
    for (const auto& y : outputs) {
      if (!y.valid())
        throw config_error("locus::Functional: an output is an empty symbolic tensor");
      visit(visit, *y.node());
    }
    for (const auto& x : inputs) g.inputs.push_back({node_index.at(x.node().get()), x.index()});
    for (const auto& y : outputs) g.outputs.push_back({node_index.at(y.node().get()), y.index()});
    // Names: the user's, else Keras's automatic ones; unique within the model.
    std::set<std::string> taken;
    for (const auto& l : g.layers) {
      if (l.name.empty()) continue;
      if (!taken.insert(l.name).second) {
        throw config_error("locus::Functional: two layers are named '" + l.name +
                           "'; names are unique within a model");
      }
    }
    std::map<std::string, std::size_t> counts;
    for (auto& l : g.layers) {
      if (!l.name.empty()) continue;
      const std::string base =
          l.layer->class_name() == "InputLayer" ? "input_layer" : snake_case(l.layer->class_name());
      std::string candidate;
      do {
        const std::size_t k = counts[base]++;
        candidate = k ? base + "_" + std::to_string(k) : base;
      } while (taken.count(candidate));
      taken.insert(candidate);
      l.name = candidate;
    }
    return g;
  }

  std::shared_ptr<const graph> g_;
};

}  // namespace locus::nn

namespace locus {
using nn::Functional;
}  // namespace locus
