// Loading a model onto the device its type names.
//
//   auto model = locus::load_model<locus::Device<locus::GPU>>("model.keras");
//   locus::load_weights(model, "other.weights.h5");
//
// A file (.keras, legacy .h5 of Keras 2 or 3, .weights.h5) is read and checked whole in
// host memory first (io/model_file.hpp); then each weight goes from the file's buffer to
// the device once (locus::from_host, one counted upload), with no model made anywhere else.
// A failed load_weights leaves the model as it was: nothing is assigned until every weight
// has been read, checked and uploaded.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "../device.hpp"
#include "../error.hpp"
#include "../locus.hpp"
#include "../transfer.hpp"
#include "compile_config.hpp"
#include "file.hpp"
#include "model_file.hpp"

namespace locus {

struct LoadOptions {
  /// Compile the model as the file says (optimizer, loss, metrics) and restore the
  /// optimizer's state, as keras.models.load_model does. A file compiled with something
  /// locus cannot train with is then a config_error; load with compile = false to predict.
  bool compile = true;
  /// Require the file's layer names to be the model's (load_weights).
  bool check_names = true;
};

namespace io {

/// A model file read and checked in host memory: everything load_model needs but a device.
struct LoadedModel {
  nn::Functional description;
  HostWeights weights;
  std::optional<CompileSettings> compile;
  std::optional<HostOptimizerState> optimizer;
  std::uint64_t seed = 0, training_step = 0;
};

/// Reads a whole model from `bytes` (a file's content; `what` names it in messages).
inline LoadedModel read_model(std::vector<std::byte> bytes, const std::string& what,
                              const LoadOptions& o = {}) {
  ModelFile f = open_model_file(std::move(bytes), what);
  LoadedModel m{model_description(f), {}, std::nullopt, std::nullopt, 0, 0};
  m.weights = read_weights(f, m.description, /*check_names=*/true);
  // Keras writes "compile_config": {} for a model never compiled.
  const nn::Config* optimizer = f.compile.is_object() ? f.compile.find("optimizer") : nullptr;
  if (!optimizer && f.compile.is_object()) optimizer = f.compile.find("optimizer_config");
  if (o.compile && optimizer && !optimizer->is_null()) {
    try {
      m.compile = compile_settings(f.compile);
    } catch (const config_error& e) {
      throw config_error(what + ": " + e.what());
    }
    m.optimizer = read_optimizer_state(f, m.description, m.compile->optimizer);
  }
  const auto meta_int = [&](const char* key) -> std::uint64_t {
    const nn::Config* v = f.metadata.is_object() ? f.metadata.find(key) : nullptr;
    return v && v->is_int() && v->as_int() >= 0 ? static_cast<std::uint64_t>(v->as_int()) : 0;
  };
  m.seed = meta_int("locus_seed");
  m.training_step = meta_int("locus_training_step");
  return m;
}

namespace detail {

/// Every weight of `values` on Dev, one upload each (nothing assigned yet).
template <AnyDevice Dev>
std::vector<Tensor<float, Dev>> upload_all(const std::vector<WeightSlot>& slots,
                                           const HostWeights& w) {
  std::vector<Tensor<float, Dev>> out;
  out.reserve(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i)
    out.push_back(locus::from_host<Dev>(slots[i].shape, w.values[i].data()));
  return out;
}

template <AnyDevice Dev>
void restore_optimizer(Model<Dev, float>& m, const HostOptimizerState& st) {
  std::vector<const WeightSlot*> params;
  const std::vector<WeightSlot> slots = weight_slots(m.description());
  for (const auto& s : slots)
    if (s.trainable) params.push_back(&s);
  std::vector<std::vector<Tensor<float, Dev>>> values(st.slots.size());
  for (std::size_t p = 0; p < st.slots.size(); ++p)
    for (const auto& v : st.slots[p])
      values[p].push_back(locus::from_host<Dev>(params[p]->shape, v.data()));
  m.optimizer().restore(st.iterations, std::move(values));
}

}  // namespace detail

/// The model of a LoadedModel, bound to Dev: each weight uploaded once, compiled and with
/// its optimizer state when the file has them.
template <AnyDevice Dev>
Model<Dev, float> bind_loaded(const LoadedModel& l) {
  Model<Dev, float> m(l.description, uninitialized, l.seed);
  const std::vector<WeightSlot> slots = weight_slots(l.description);
  auto uploaded = detail::upload_all<Dev>(slots, l.weights);
  auto targets = m.weights();
  for (std::size_t i = 0; i < targets.size(); ++i) *targets[i].second = std::move(uploaded[i]);
  m.set_training_step(l.training_step);
  if (l.compile) {
    m.compile(l.compile->optimizer, l.compile->loss, l.compile->metrics);
    if (l.optimizer) detail::restore_optimizer(m, *l.optimizer);
  }
  return m;
}

}  // namespace io

/// The model saved at `path` (.keras, legacy .h5 or a Keras 2 .h5), on device Dev.
template <AnyDevice Dev, class T = float>
Model<Dev, T> load_model(const std::filesystem::path& path, const LoadOptions& o = {}) {
  static_assert(std::is_same_v<T, float>,
                "locus::load_model: Keras files hold float32 models; load a Model<Dev, float>");
  return io::bind_loaded<Dev>(io::read_model(io::read_file(path), path.string(), o));
}

/// The model held in `bytes` (a file's content read elsewhere), on device Dev.
template <AnyDevice Dev, class T = float>
Model<Dev, T> load_model_from_bytes(std::vector<std::byte> bytes,
                                    const std::string& what = "<memory>",
                                    const LoadOptions& o = {}) {
  static_assert(std::is_same_v<T, float>,
                "locus::load_model: Keras files hold float32 models; load a Model<Dev, float>");
  return io::bind_loaded<Dev>(io::read_model(std::move(bytes), what, o));
}

/// Loads the weights of a .weights.h5, .keras or legacy .h5 file into `m`, checking every
/// layer (count, class, name unless o.check_names is false, weight count, shapes). On any
/// error (model_mismatch_error, format_error, out_of_memory_error) `m` is unchanged.
template <AnyDevice Dev, class T>
void load_weights(Model<Dev, T>& m, const std::filesystem::path& path, const LoadOptions& o = {}) {
  static_assert(std::is_same_v<T, float>, "locus::load_weights: Keras files hold float32 models");
  const io::ModelFile f = io::open_model_file(io::read_file(path), path.string());
  const nn::Functional& desc = m.description();
  const io::HostWeights w = io::read_weights(f, desc, o.check_names);
  auto uploaded = io::detail::upload_all<Dev>(io::weight_slots(desc), w);
  auto targets = m.weights();
  for (std::size_t i = 0; i < targets.size(); ++i) *targets[i].second = std::move(uploaded[i]);
}

}  // namespace locus
