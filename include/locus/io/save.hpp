// Saving a model as Keras 3 writes it: a .keras archive or a .weights.h5 file.
//
//   locus::save_model(model, "model.keras");        // config, weights, optimizer state
//   locus::save_weights(model, "model.weights.h5");  // weights only
//
// keras.models.load_model opens what save_model writes. Each weight is read from the
// model's device once (a counted transfer) into the HDF5 image; the file is written to a
// temporary in the same directory, flushed and renamed over the old one, so a save that
// fails or is killed leaves the previous file as it was.
#pragma once

#include <chrono>
#include <cstddef>
#include <ctime>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../device.hpp"
#include "../error.hpp"
#include "../locus.hpp"
#include "../transfer.hpp"
#include "compile_config.hpp"
#include "file.hpp"
#include "hdf5.hpp"
#include "json.hpp"
#include "keras_layout.hpp"
#include "model_file.hpp"
#include "zip.hpp"

namespace locus {

struct SaveOptions {
  /// Keep the optimizer (its configuration, iteration count and slots) so that training
  /// resumes where it stopped; only for a compiled model.
  bool include_optimizer = true;
};

namespace io {

/// The version of locus that writes files (metadata.json's "locus_version").
inline constexpr const char* locus_version = "0.1.0";
/// The Keras release whose format locus writes (metadata.json's "keras_version").
inline constexpr const char* keras_format_version = "3.15.1";

namespace detail {

/// Writes one weight, read from the model's device once.
template <AnyDevice Dev>
void write_tensor(H5Group& g, const std::string& name, const Tensor<float, Dev>& t) {
  if constexpr (HostDevice<Dev>) {
    g.write(name, t.shape().to_vector(), t.data());
  } else {
    const auto host = locus::to<Device<CPU>>(t);
    g.write(name, host.shape().to_vector(), host.data());
  }
}

template <AnyDevice Dev>
void write_keras3_weights(H5Group root, const Model<Dev, float>& m, bool include_optimizer) {
  const nn::Functional& desc = m.description();
  const std::vector<WeightSlot> slots = weight_slots(desc);
  const std::vector<KerasLayer> layers = keras_layers(desc, slots);
  const auto weights = m.weights();
  if (weights.size() != slots.size())
    throw argument_error("locus::save: the model's weights do not match its description");
  for (const KerasLayer& l : layers) {
    // Groups are made along the way (a nested model's "layers" group, then its layers).
    H5Group g = root;
    std::size_t start = 0;
    while (start < l.key.size()) {
      const std::size_t end = l.key.find('/', start);
      const std::string part =
          l.key.substr(start, end == std::string::npos ? std::string::npos : end - start);
      g = g.is_group(part) ? g.group(part) : g.create_group(part);
      if (end == std::string::npos) break;
      start = end + 1;
    }
    H5Group vars = g.create_group("vars");
    vars.set_string_attribute("name", l.name);
    for (std::size_t j = 0; j < l.weights.size(); ++j) {
      const Tensor<float, Dev>* t = weights[l.weights[j]].second;
      if (t->size() != slots[l.weights[j]].shape.size())
        throw argument_error("locus::save: weight '" + slots[l.weights[j]].name + "' has no value");
      write_tensor(vars, std::to_string(j), *t);
    }
  }
  H5Group top = root.create_group("vars");
  top.set_string_attribute("name", desc.model_name());
  if (!include_optimizer || !m.compiled()) return;
  const Optimizer<Dev, float>& opt = m.optimizer();
  H5Group ovars = root.create_group("optimizer").create_group("vars");
  ovars.set_string_attribute("name", std::visit(
                                         [](const auto& c) {
                                           using C = std::remove_cvref_t<decltype(c)>;
                                           return std::string(std::is_same_v<C, SGD> ? "SGD"
                                                              : std::is_same_v<C, Adam>
                                                                  ? "adam"
                                                                  : "rmsprop");
                                         },
                                         opt.config()));
  ovars.write_int64_scalar("0", static_cast<std::int64_t>(opt.iterations()));
  const double lr = std::visit([](const auto& c) { return c.learning_rate; }, opt.config());
  const float lr32 = static_cast<float>(lr);
  ovars.write("1", {}, &lr32);
  if (opt.slotted_parameters() == 0) return;  // never stepped: Keras has no slots either
  const std::vector<std::size_t> to_param = keras_to_parameter(layers, slots);
  const auto order = keras_slot_order(opt.config(), to_param.size());
  const std::array<bool, 3> used = opt.used_slots();
  for (std::size_t v = 0; v < order.size(); ++v) {
    const std::size_t p = to_param[order[v].first];
    const auto present = opt.slot_tensors(p);
    const std::size_t k = used_position(used, order[v].second);
    if (k >= present.size())
      throw argument_error("locus::save: the optimizer has no state for parameter " +
                           std::to_string(p));
    write_tensor(ovars, std::to_string(v + 2), *present[k]);
  }
}

inline std::vector<std::byte> bytes_of(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

inline std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d@%H:%M:%S", &tm);
  return buf;
}

}  // namespace detail

/// The bytes of a .keras archive of `m` (what save_model writes), with `extra` entries after
/// Keras's own (a quantized model's locus_quantization.json).
template <AnyDevice Dev>
std::vector<std::byte> keras_archive(
    const Model<Dev, float>& m, const SaveOptions& o = {},
    const std::vector<std::pair<std::string, std::vector<std::byte>>>& extra = {}) {
  const nn::Functional& desc = m.description();
  nn::Config config = nn::Config::make(
      {{"module", desc.class_name() == "Sequential" ? "keras" : "keras.src.models.functional"},
       {"class_name", desc.class_name()},
       {"config", m.get_config()},
       {"registered_name", nullptr}});
  if (m.compiled()) {
    config.set("compile_config", compile_config({m.optimizer().config(), m.loss(), m.metrics()}));
  }
  // Keras's own keys, and locus's: the seed of the layers' random streams and the training
  // step, so that a resumed model draws the same dropout masks.
  const nn::Config metadata =
      nn::Config::make({{"keras_version", keras_format_version},
                        {"date_saved", detail::utc_now()},
                        {"locus_version", locus_version},
                        {"locus_seed", static_cast<std::int64_t>(m.seed())},
                        {"locus_training_step", static_cast<std::int64_t>(m.training_step())}});
  H5File h5 = H5File::create_in_memory("model.weights.h5");
  detail::write_keras3_weights(h5.root(), m, o.include_optimizer);
  ZipWriter zip;
  zip.add("metadata.json", detail::bytes_of(to_json_text(metadata)));
  zip.add("config.json", detail::bytes_of(to_json_text(config)));
  zip.add("model.weights.h5", h5.image());
  for (const auto& [name, bytes] : extra) zip.add(name, bytes);
  return zip.finish();
}

/// The bytes of a .weights.h5 file of `m` (what save_weights writes).
template <AnyDevice Dev>
std::vector<std::byte> keras_weights_file(const Model<Dev, float>& m) {
  H5File h5 = H5File::create_in_memory("weights.h5");
  detail::write_keras3_weights(h5.root(), m, /*include_optimizer=*/false);
  return h5.image();
}

}  // namespace io

/// Saves `m` as a Keras 3 .keras archive at `path` (atomically: see the file comment).
template <AnyDevice Dev, class T>
void save_model(const Model<Dev, T>& m, const std::filesystem::path& path,
                const SaveOptions& o = {}) {
  static_assert(std::is_same_v<T, float>,
                "locus::save_model: Keras files hold float32 models; save a Model<Dev, float>");
  if (!path.string().ends_with(".keras"))
    throw argument_error("locus::save_model: '" + path.string() +
                         "' does not end in .keras (use save_weights for a .weights.h5 file)");
  io::write_file_atomically(path, io::keras_archive(m, o));
}

/// Saves the weights of `m` as a Keras 3 .weights.h5 file at `path` (atomically).
template <AnyDevice Dev, class T>
void save_weights(const Model<Dev, T>& m, const std::filesystem::path& path) {
  static_assert(std::is_same_v<T, float>,
                "locus::save_weights: Keras files hold float32 models; save a Model<Dev, float>");
  if (!path.string().ends_with(".weights.h5"))
    throw argument_error("locus::save_weights: '" + path.string() +
                         "' does not end in .weights.h5, as Keras requires");
  io::write_file_atomically(path, io::keras_weights_file(m));
}

}  // namespace locus
