// Reading a model file into host memory, before any device is involved.
//
// A file is recognised by its first bytes, not its name: a zip is a Keras 3 .keras archive
// (config.json, model.weights.h5, metadata.json), an HDF5 file is either a Keras 3 weights
// file (.weights.h5: groups layers/<key>/vars/<i>) or a legacy Keras file (.h5: the
// model_config attribute and model_weights/<layer>/<weight name>, Keras 2 or 3, or a legacy
// weights-only file). Every weight is read, checked against the model's description (layer
// count, class, name, weight count, shape) and kept in host memory, so that a caller can
// refuse the whole file before it changes anything. This is the part the fuzzers run.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../nn/config.hpp"
#include "../nn/functional.hpp"
#include "../nn/layers/registry.hpp"
#include "../nn/optimizers.hpp"
#include "compile_config.hpp"
#include "hdf5.hpp"
#include "json.hpp"
#include "keras_layout.hpp"
#include "zip.hpp"

namespace locus::io {

/// How a file lays out its weights.
enum class WeightLayout {
  keras3,  ///< .keras and .weights.h5: layers/<key>/vars/<i>
  legacy,  ///< Keras 2 and legacy .h5: layer_names, weight_names
};

/// A model file opened in memory.
struct ModelFile {
  std::string what;      ///< the file name, for messages
  bool archive = false;  ///< a .keras zip
  WeightLayout layout = WeightLayout::keras3;
  nn::Config model;           ///< {"class_name", "config"}; null in a weights-only file
  nn::Config compile;         ///< compile_config / training_config; null when absent
  nn::Config metadata;        ///< metadata.json of an archive; null otherwise
  H5File h5;                  ///< the weights
  std::string weights_group;  ///< the group holding the legacy layer_names ("" or "model_weights")
};

namespace detail {

inline bool starts_with_bytes(const std::vector<std::byte>& b, std::string_view magic) {
  if (b.size() < magic.size()) return false;
  for (std::size_t i = 0; i < magic.size(); ++i)
    if (b[i] != static_cast<std::byte>(magic[i])) return false;
  return true;
}

inline std::string text_of(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// The largest entry an archive of `archive_bytes` may hold: deflate expands at most about
/// 1032 times, so anything declaring more is corrupt (and is not allocated).
inline std::size_t max_entry_bytes(std::size_t archive_bytes, std::size_t cap) {
  const std::size_t bound = archive_bytes > cap / 1100 ? cap : archive_bytes * 1100 + (1u << 16);
  return std::min(bound, cap);
}

}  // namespace detail

/// Opens a .keras, .weights.h5 or .h5 file held in `bytes` (`what` names it in messages).
/// A file of another kind, truncated or corrupt, is a format_error naming it.
inline ModelFile open_model_file(std::vector<std::byte> bytes, const std::string& what) {
  if (detail::starts_with_bytes(bytes, "PK\x03\x04") ||
      detail::starts_with_bytes(bytes, "PK\x05\x06")) {
    const std::size_t n = bytes.size();
    ZipReader zip = ZipReader::from_bytes(std::move(bytes), what);
    for (const char* member : {"config.json", "model.weights.h5"}) {
      if (!zip.contains(member))
        throw format_error(what + ": a .keras archive has a " + member + "; this one has not");
    }
    const nn::Config config =
        parse_json(detail::text_of(zip.read("config.json", detail::max_entry_bytes(n, 256u << 20))),
                   what + ": config.json");
    if (!config.is_object() || !config.contains("class_name") || !config.contains("config"))
      throw config_error(what +
                         ": config.json is not a model configuration (no class_name and config)");
    nn::Config compile, metadata;
    if (const nn::Config* c = config.find("compile_config"); c && !c->is_null()) compile = *c;
    if (zip.contains("metadata.json"))
      metadata = parse_json(
          detail::text_of(zip.read("metadata.json", detail::max_entry_bytes(n, 1u << 20))),
          what + ": metadata.json");
    H5File h5 = H5File::from_bytes(
        zip.read("model.weights.h5", detail::max_entry_bytes(n, std::size_t{1} << 34)),
        what + ": model.weights.h5");
    return ModelFile{what,
                     true,
                     WeightLayout::keras3,
                     nn::Config::make({{"class_name", config.at("class_name")},
                                       {"config", config.at("config")}}),
                     compile,
                     metadata,
                     std::move(h5),
                     ""};
  }
  if (!detail::starts_with_bytes(bytes, "\x89HDF\r\n\x1a\n"))
    throw format_error(what +
                       ": neither a .keras archive (zip) nor an HDF5 file (.h5, .weights.h5)");
  H5File h5 = H5File::from_bytes(std::move(bytes), what);
  const H5Group root = h5.root();
  nn::Config model, compile;
  if (root.has_attribute("model_config")) {
    model = parse_json(root.string_attribute("model_config"), what + ": model_config");
    if (root.has_attribute("training_config"))
      compile = parse_json(root.string_attribute("training_config"), what + ": training_config");
    if (!root.is_group("model_weights"))
      throw format_error(what +
                         ": a legacy Keras model file has a model_weights group; this one has not");
    return ModelFile{what,    false, WeightLayout::legacy, model,
                     compile, {},    std::move(h5),        "model_weights"};
  }
  if (root.has_attribute("layer_names"))  // weights only, saved by Keras 2's save_weights
    return ModelFile{what, false, WeightLayout::legacy, {}, {}, {}, std::move(h5), ""};
  if (root.is_group("model_weights"))
    throw format_error(what + ": a legacy Keras model file without its model_config attribute");
  if (root.is_group("layers") || root.is_group("vars"))
    return ModelFile{what, false, WeightLayout::keras3, {}, {}, {}, std::move(h5), ""};
  throw format_error(
      what + ": an HDF5 file, but not one Keras wrote (no model_config, layer_names or layers)");
}

/// The model description a file holds. A file without one (weights only) is a
/// format_error; a configuration locus cannot build (an unsupported layer class, dtype or
/// data format; not a model) is a config_error naming the layer.
inline nn::Functional model_description(const ModelFile& f) {
  if (f.model.is_null())
    throw format_error(
        f.what +
        ": holds weights only, no model configuration; build the model and call load_weights");
  // Only float32 models: a weight of another type would silently change precision.
  const auto check_dtypes = [&](const nn::Config& entry, auto&& self) -> void {
    if (!entry.is_object()) return;
    const nn::Config* cfg = entry.find("config");
    if (!cfg || !cfg->is_object()) return;
    const std::string cls = entry.contains("class_name") && entry.at("class_name").is_string()
                                ? entry.at("class_name").as_string()
                                : "?";
    const std::string name =
        cfg->contains("name") && cfg->at("name").is_string() ? cfg->at("name").as_string() : "?";
    if (const nn::Config* d = cfg->find("dtype"); d && !d->is_null()) {
      std::string dtype;
      if (d->is_string()) {
        dtype = d->as_string();
      } else if (d->is_object()) {
        if (const nn::Config* dc = d->find("config"); dc && dc->is_object())
          if (const nn::Config* n = dc->find("name"); n && n->is_string()) dtype = n->as_string();
      }
      if (!dtype.empty() && dtype != "float32")
        throw config_error(f.what + ": layer '" + name + "' (" + cls + ") computes in " + dtype +
                           "; locus loads float32 models only");
    }
    if (const nn::Config* layers = cfg->find("layers"); layers && layers->is_array())
      for (const nn::Config& l : layers->as_array()) self(l, self);
  };
  check_dtypes(f.model, check_dtypes);
  try {
    return nn::model_from_config(f.model);
  } catch (const config_error& e) {
    throw config_error(f.what + ": " + e.what());
  } catch (const shape_error& e) {
    throw config_error(f.what + ": the model configuration does not fit together: " + e.what());
  }
}

/// Every weight of a model, read from a file into host memory (one vector per weight, in
/// Model::weights() order), checked against the model. `check_names` also requires the
/// file's layer names to be the model's.
struct HostWeights {
  std::vector<std::vector<float>> values;
};

namespace detail {

[[noreturn]] inline void mismatch(const std::string& what, const std::string& layer,
                                  const std::string& problem, const std::string& expected,
                                  const std::string& found) {
  throw model_mismatch_error(what + ": layer '" + layer + "': " + problem + ": the model has " +
                                 expected + ", the file " + found,
                             layer, expected, found);
}

inline std::vector<float> read_weight(const H5Group& g, const std::string& dataset,
                                      const WeightSlot& slot, const std::string& what,
                                      const std::string& layer) {
  if (!g.is_dataset(dataset))
    mismatch(what, layer, "weight '" + slot.weight + "' is missing", "it",
             "has no dataset '" + g.path() + "/" + dataset + "'");
  const H5DatasetInfo info = g.dataset_info(dataset);
  if (!info.is_float && !info.is_integer)
    throw format_error(what + ": " + g.path() + "/" + dataset + " holds neither numbers");
  if (info.shape != slot.shape.to_vector())
    mismatch(what, layer, "weight '" + slot.weight + "' has another shape", shape_text(slot.shape),
             shape_text(info.shape));
  return g.read_float(dataset);
}

inline HostWeights read_keras3_weights(const ModelFile& f, const std::vector<KerasLayer>& layers,
                                       const std::vector<WeightSlot>& slots, bool check_names) {
  HostWeights out;
  out.values.resize(slots.size());
  const H5Group root = f.h5.root();
  // Layer counts, per container: Keras writes a group for every layer, weights or not.
  std::map<std::string, std::vector<const KerasLayer*>> containers;
  for (const auto& l : layers) containers[l.key.substr(0, l.key.rfind('/'))].push_back(&l);
  for (const auto& [container, ls] : containers) {
    std::vector<std::string> in_file;
    if (root.is_group(container)) in_file = root.group(container).members();
    if (in_file.size() != ls.size()) {
      std::string names;
      for (const auto& n : in_file) names += (names.empty() ? "" : ", ") + n;
      const std::string where =
          container == "layers"
              ? "the model"
              : "'" + ls.front()->path.substr(0, ls.front()->path.rfind('/')) + "'";
      throw model_mismatch_error(
          f.what + ": " + where + " has " + std::to_string(ls.size()) + " layers, the file " +
              std::to_string(in_file.size()) + " at '" + container + "' (" + names + ")",
          where, std::to_string(ls.size()) + " layers", std::to_string(in_file.size()) + " layers");
    }
  }
  for (const auto& l : layers) {
    if (!root.is_group(l.key)) {
      std::string names;
      const std::string container = l.key.substr(0, l.key.rfind('/'));
      for (const auto& n : root.group(container).members())
        names += (names.empty() ? "" : ", ") + n;
      mismatch(f.what, l.path, "no weights of its class in the file",
               l.class_name + " at '" + l.key + "'", "has " + names + " there");
    }
    const std::string vars = l.key + "/vars";
    const bool has_vars = root.is_group(vars);
    if (check_names && has_vars) {
      const H5Group vg = root.group(vars);
      if (vg.has_attribute("name")) {
        const std::string name = vg.string_attribute("name");
        if (name != l.name)
          mismatch(f.what, l.path, "another name", "'" + l.name + "'", "'" + name + "'");
      }
    }
    if (l.is_model) continue;
    std::size_t found = 0;
    if (has_vars)
      for (const auto& m : root.group(vars).members())
        if (root.group(vars).is_dataset(m)) ++found;
    if (found != l.weights.size())
      mismatch(f.what, l.path, "another number of weights",
               std::to_string(l.weights.size()) + " (" + l.class_name + ")", std::to_string(found));
    if (l.weights.empty()) continue;
    const H5Group vg = root.group(vars);
    for (std::size_t j = 0; j < l.weights.size(); ++j)
      out.values[l.weights[j]] =
          read_weight(vg, std::to_string(j), slots[l.weights[j]], f.what, l.path);
  }
  return out;
}

inline HostWeights read_legacy_weights(const ModelFile& f, const std::vector<KerasLayer>& layers,
                                       const std::vector<WeightSlot>& slots, bool check_names) {
  HostWeights out;
  out.values.resize(slots.size());
  const H5Group g = f.weights_group.empty() ? f.h5.root() : f.h5.root().group(f.weights_group);
  struct file_layer {
    std::string name;
    std::vector<std::string> weights;
  };
  std::vector<file_layer> in_file;
  for (const std::string& name : g.string_list_attribute("layer_names")) {
    if (!g.is_group(name))
      throw format_error(f.what + ": layer_names lists '" + name + "', which has no group");
    std::vector<std::string> w = g.group(name).string_list_attribute("weight_names");
    if (!w.empty()) in_file.push_back({name, std::move(w)});
  }
  struct model_layer {
    const KerasLayer* layer;
    std::vector<std::size_t> weights;
  };
  std::vector<model_layer> ours;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].depth != 0) continue;
    auto w = legacy_weight_order(layers, i, slots);
    if (!w.empty()) ours.push_back({&layers[i], std::move(w)});
  }
  if (in_file.size() != ours.size()) {
    throw model_mismatch_error(f.what + ": the model has " + std::to_string(ours.size()) +
                                   " layers with weights, the file " +
                                   std::to_string(in_file.size()),
                               "the model", std::to_string(ours.size()) + " layers with weights",
                               std::to_string(in_file.size()) + " layers with weights");
  }
  for (std::size_t i = 0; i < ours.size(); ++i) {
    const KerasLayer& l = *ours[i].layer;
    if (check_names && in_file[i].name != l.name)
      mismatch(f.what, l.path, "another name", "'" + l.name + "'", "'" + in_file[i].name + "'");
    if (in_file[i].weights.size() != ours[i].weights.size())
      mismatch(f.what, l.path, "another number of weights", std::to_string(ours[i].weights.size()),
               std::to_string(in_file[i].weights.size()));
    const H5Group lg = g.group(in_file[i].name);
    for (std::size_t j = 0; j < ours[i].weights.size(); ++j) {
      const std::size_t s = ours[i].weights[j];
      out.values[s] = read_weight(lg, in_file[i].weights[j], slots[s], f.what, l.path);
    }
  }
  return out;
}

}  // namespace detail

/// Reads every weight of `model` from `f`, checking the file against it (see HostWeights).
inline HostWeights read_weights(const ModelFile& f, const nn::Functional& model,
                                bool check_names = true) {
  const std::vector<WeightSlot> slots = weight_slots(model);
  const std::vector<KerasLayer> layers = keras_layers(model, slots);
  return f.layout == WeightLayout::keras3
             ? detail::read_keras3_weights(f, layers, slots, check_names)
             : detail::read_legacy_weights(f, layers, slots, check_names);
}

/// An optimizer's state as a file holds it, per trainable weight in Model::parameters()
/// order: the slots the optimizer uses, in Optimizer::used_slots() order.
struct HostOptimizerState {
  std::uint64_t iterations = 0;
  std::vector<std::vector<std::vector<float>>> slots;  ///< empty: never stepped
};

namespace detail {

/// Keras's slot variables of `o` in file order: (trainable weight in Keras's order, slot
/// 0/1/2 = momentum, second moment, centred mean), as each Keras optimizer's build() adds
/// them.
inline std::vector<std::pair<std::size_t, int>> keras_slot_order(const OptimizerConfig& o,
                                                                 std::size_t params) {
  std::vector<std::pair<std::size_t, int>> order;
  std::visit(
      [&](const auto& c) {
        using C = std::remove_cvref_t<decltype(c)>;
        if constexpr (std::is_same_v<C, SGD>) {
          if (c.momentum != 0.0)
            for (std::size_t p = 0; p < params; ++p) order.push_back({p, 0});
        } else if constexpr (std::is_same_v<C, Adam>) {
          for (std::size_t p = 0; p < params; ++p) {
            order.push_back({p, 0});
            order.push_back({p, 1});
          }
        } else {
          for (std::size_t p = 0; p < params; ++p) order.push_back({p, 1});
          if (c.momentum > 0.0)
            for (std::size_t p = 0; p < params; ++p) order.push_back({p, 0});
          if (c.centered)
            for (std::size_t p = 0; p < params; ++p) order.push_back({p, 2});
        }
      },
      o);
  return order;
}

/// Position of slot kind `k` among the used ones (restore()'s order).
inline std::size_t used_position(const std::array<bool, 3>& used, int k) {
  std::size_t pos = 0;
  for (int i = 0; i < k; ++i) pos += used[static_cast<std::size_t>(i)];
  return pos;
}

/// Maps Keras's trainable order to Model::parameters() order (both over weight_slots()).
inline std::vector<std::size_t> keras_to_parameter(const std::vector<KerasLayer>& layers,
                                                   const std::vector<WeightSlot>& slots) {
  std::vector<std::size_t> param_of_slot(slots.size(), 0);
  std::size_t p = 0;
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (slots[i].trainable) param_of_slot[i] = p++;
  std::vector<std::size_t> out;
  for (std::size_t s : keras_trainable_order(layers, slots)) out.push_back(param_of_slot[s]);
  return out;
}

}  // namespace detail

/// The optimizer state in a .keras file (optimizer/vars: the iteration count, the learning
/// rate, then the slot variables in Keras's order), or nothing when the file has none.
/// A state that does not fit `optimizer` over `model` is a model_mismatch_error.
inline std::optional<HostOptimizerState> read_optimizer_state(const ModelFile& f,
                                                              const nn::Functional& model,
                                                              const OptimizerConfig& optimizer) {
  const H5Group root = f.h5.root();
  if (f.layout != WeightLayout::keras3 || !root.is_group("optimizer/vars")) return std::nullopt;
  const H5Group vars = root.group("optimizer/vars");
  std::size_t n = 0;
  for (const auto& m : vars.members())
    if (vars.is_dataset(m)) ++n;
  const std::vector<WeightSlot> slots = weight_slots(model);
  const std::vector<KerasLayer> layers = keras_layers(model, slots);
  const std::vector<std::size_t> to_param = detail::keras_to_parameter(layers, slots);
  const auto order = detail::keras_slot_order(optimizer, to_param.size());
  if (n < 2 || (n != 2 && n != 2 + order.size())) {
    throw model_mismatch_error(
        f.what + ": the optimizer state has " + std::to_string(n) +
            " variables; this optimizer over " + std::to_string(to_param.size()) +
            " trainable weights keeps 2 or " + std::to_string(2 + order.size()),
        "optimizer", std::to_string(2 + order.size()) + " variables",
        std::to_string(n) + " variables");
  }
  HostOptimizerState st;
  const std::int64_t it = vars.read_int64_scalar("0");
  if (it < 0) throw format_error(f.what + ": optimizer/vars/0 (the iteration count) is negative");
  st.iterations = static_cast<std::uint64_t>(it);
  if (n == 2) return st;
  const std::array<bool, 3> used = used_slots(optimizer);
  const std::size_t per = static_cast<std::size_t>(used[0]) + used[1] + used[2];
  // Trainable weights in Model::parameters() order, to check each slot's shape.
  std::vector<const WeightSlot*> params;
  for (const auto& s : slots)
    if (s.trainable) params.push_back(&s);
  st.slots.assign(params.size(), std::vector<std::vector<float>>(per));
  for (std::size_t v = 0; v < order.size(); ++v) {
    const std::size_t p = to_param[order[v].first];
    st.slots[p][detail::used_position(used, order[v].second)] = detail::read_weight(
        vars, std::to_string(v + 2), *params[p], f.what, "optimizer slot of " + params[p]->name);
  }
  return st;
}

}  // namespace locus::io
