// The fuzz targets of the model-file loaders, one function per loader layer. Each takes
// arbitrary bytes and must end in a typed locus::error or in success: never a crash, a
// hang or a leak. The libFuzzer programs (tests/fuzz/fuzz_*.cpp, built with LOCUS_FUZZ=ON
// and clang) call them, and locus_io_tests replays every file of tests/fuzz/corpus/ and
// tests/fuzz/crashes/ through them in CI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <locus/io.hpp>
#include <locus/io/model_file.hpp>

namespace locus_fuzz {

inline std::vector<std::byte> bytes_of(const std::uint8_t* data, std::size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);
  return {p, p + size};
}

/// A whole model file (.keras, .h5, .weights.h5): zip, JSON, HDF5 and the configuration
/// together, as load_model reads it (everything but the device).
inline void model_file(const std::uint8_t* data, std::size_t size) {
  try {
    (void)locus::io::read_model(bytes_of(data, size), "<fuzz>");
  } catch (const locus::error&) {
  }
}

/// A zip archive: every member read, with the limits the loader uses.
inline void zip(const std::uint8_t* data, std::size_t size) {
  try {
    const auto z = locus::io::ZipReader::from_bytes(bytes_of(data, size), "<fuzz>");
    for (const auto& name : z.names()) {
      try {
        (void)z.read(name, std::size_t{1} << 22);
      } catch (const locus::format_error&) {
      }
    }
  } catch (const locus::error&) {
  }
}

/// JSON text read as a Keras model configuration: parsed, interpreted as a model (every
/// layer class's from_config and the graph), and its weights and Keras layout derived.
inline void model_config(const std::uint8_t* data, std::size_t size) {
  try {
    const locus::nn::Config c = locus::io::parse_json(
        std::string_view(reinterpret_cast<const char*>(data), size), "<fuzz>");
    const locus::nn::Functional f = locus::nn::model_from_config(c);
    const auto slots = locus::io::weight_slots(f);
    (void)locus::io::keras_layers(f, slots);
    (void)locus::io::to_json_text(f.config());
  } catch (const locus::error&) {
  }
}

/// An HDF5 file read as the weights of a fixed small model, in both layouts Keras writes,
/// with an optimizer state.
inline void hdf5_weights(const std::uint8_t* data, std::size_t size) {
  using namespace locus;
  static const nn::Functional model = [] {
    auto x = Input({4});
    auto h = Dense(3, Activation::relu)(x);
    auto y = Dense(2)(BatchNormalization()(h));
    return nn::Functional({x}, {y}, "fuzz", "Sequential");
  }();
  try {
    const io::ModelFile f = io::open_model_file(bytes_of(data, size), "<fuzz>");
    (void)io::read_weights(f, model, true);
    (void)io::read_optimizer_state(f, model, Adam{});
  } catch (const locus::error&) {
  }
}

/// A quantized model file (save_quantized's .keras with locus_quantization.json): read,
/// bound to the host, lowered, quantized and its test cases re-run.
inline void quantized_file(const std::uint8_t* data, std::size_t size) {
  try {
    (void)locus::io::read_quantized<locus::Device<locus::CPU>>(bytes_of(data, size), "<fuzz>",
                                                               {.max_batch = 2, .workspaces = 1});
  } catch (const locus::error&) {
  }
}

/// A NumPy .npy file (locus-model predict's input).
inline void npy(const std::uint8_t* data, std::size_t size) {
  try {
    const auto* p = reinterpret_cast<const std::byte*>(data);
    (void)locus::io::read_npy(std::span<const std::byte>(p, size), "<fuzz>");
  } catch (const locus::error&) {
  }
}

}  // namespace locus_fuzz
