// Every input the fuzzers kept (tests/fuzz/corpus/<target>/) and every input that once
// crashed a loader (tests/fuzz/crashes/<target>/), replayed through the same targets:
// each must end in success or a typed locus::error (a crash or sanitizer report fails the
// test binary).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/fuzz_targets.hpp"

namespace fs = std::filesystem;

namespace {

using target_fn = void (*)(const std::uint8_t*, std::size_t);

std::size_t replay(const std::string& target, target_fn fn) {
  std::size_t n = 0;
  for (const char* kind : {"corpus", "crashes"}) {
    const fs::path dir = fs::path(LOCUS_FUZZ_CORPUS_DIR) / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
      SCOPED_TRACE(e.path().string());
      fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++n;
    }
  }
  return n;
}

}  // namespace

// Each target has a corpus in the repository (an empty one would make the replay vacuous).
TEST(FuzzCorpus, ModelFile) {
  EXPECT_GT(replay("model_file", locus_fuzz::model_file), 0u);
}
TEST(FuzzCorpus, Zip) {
  EXPECT_GT(replay("zip", locus_fuzz::zip), 0u);
}
TEST(FuzzCorpus, ModelConfig) {
  EXPECT_GT(replay("model_config", locus_fuzz::model_config), 0u);
}
TEST(FuzzCorpus, Hdf5Weights) {
  EXPECT_GT(replay("hdf5_weights", locus_fuzz::hdf5_weights), 0u);
}
TEST(FuzzCorpus, Npy) {
  EXPECT_GT(replay("npy", locus_fuzz::npy), 0u);
}
TEST(FuzzCorpus, QuantizedFile) {
  EXPECT_GT(replay("quantized_file", locus_fuzz::quantized_file), 0u);
}
