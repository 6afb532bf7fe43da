// Quantized models on file (io/quantized.hpp): a round trip on both devices, the float
// model still readable by load_model, and every way a file can disagree with itself:
// another model's weights, a broken scale, a test case that no longer reproduces, a file
// without quantization, a truncated file.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "../../examples/residual_cnn_model.hpp"
#include "temp_dir.hpp"

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

Tensor<float, C> images(std::size_t n, std::uint64_t seed) {
  return Tensor<float, C>::uniform({n, 28, 28, 1}, seed);
}

struct Saved {
  Model<C> model{residual_example::residual_cnn(), 7};
  locus_test::TempDir dir;
  std::filesystem::path path = dir / "residual.int8.keras";
  std::optional<QuantizedPlan<C>> q;
  Saved() {
    // Non-trivial normalisation statistics, so that the folded weights are not the identity.
    std::uint64_t seed = 1;
    for (auto& [name, t] : model.weights())
      if (name.find("moving_variance") != std::string::npos)
        *t = Tensor<float, C>::uniform(t->shape(), seed++, 0.5f, 2.0f);
    const InferencePlan<C> plan(model);
    q.emplace(quantize(plan, calibrate(plan, images(32, 3))));
    save_quantized(model, *q, path);
  }
};

/// The archive's entries, with locus_quantization.json edited by `edit`, written to `to`.
template <class Edit>
void rewrite(const std::filesystem::path& from, const std::filesystem::path& to, Edit edit) {
  const auto bytes = io::read_file(from);
  const io::ZipReader zip = io::ZipReader::from_bytes(bytes, from.string());
  io::ZipWriter out;
  for (const auto& name : zip.names()) {
    auto entry = zip.read(name, bytes.size() * 64);
    if (name == "locus_quantization.json") {
      nn::Config doc = io::parse_json(io::detail::text_of(entry), name);
      edit(doc);
      const std::string text = io::to_json_text(doc);
      const auto* p = reinterpret_cast<const std::byte*>(text.data());
      entry.assign(p, p + text.size());
    }
    out.add(name, entry);
  }
  io::write_file_atomically(to, out.finish());
}

TEST(QuantizedFiles, RoundTripOnBothDevices) {
  Saved s;
  const auto x = images(9, 5);
  const auto want = s.q->predict(x);
  const auto on_host = load_quantized<C>(s.path);
  const auto got = on_host.predict(x);
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  EXPECT_EQ(on_host.quantized().calibration_samples, 32u);
  const auto on_device = load_quantized<G>(s.path, {.max_batch = 4});
  const auto dev = to<C>(on_device.predict(to<G>(x)));
  for (std::size_t i = 0; i < dev.size(); ++i) EXPECT_NEAR(dev.data()[i], want.data()[i], 1e-3);
  // The float model is all there for load_model (and Keras): the archive is a .keras file.
  const auto plain = load_model<C>(s.path);
  EXPECT_EQ(plain.count_params(), s.model.count_params());
}

TEST(QuantizedFiles, RefusesFilesThatDisagreeWithThemselves) {
  Saved s;
  const auto edited = s.dir / "edited.keras";
  rewrite(s.path, edited, [](nn::Config& d) { d.set("fingerprint", "0123456789abcdef"); });
  EXPECT_THROW(load_quantized<C>(edited), model_mismatch_error);
  rewrite(s.path, edited, [](nn::Config& d) {
    nn::Config::array values = d.at("values").as_array();
    values[0] = nn::Config::make({{"scale", 0.01}, {"zero_point", 300}});
    d.set("values", nn::Config(values));
  });
  EXPECT_THROW(load_quantized<C>(edited), format_error);
  rewrite(s.path, edited, [](nn::Config& d) {
    nn::Config::array cases = d.at("test_cases").as_array();
    nn::Config::array out = cases[1].at("output").as_array();
    out[3] = 0.75;
    nn::Config c = cases[1];
    c.set("output", nn::Config(out));
    cases[1] = c;
    d.set("test_cases", nn::Config(cases));
  });
  EXPECT_THROW(load_quantized<C>(edited), model_mismatch_error);
  rewrite(s.path, edited, [](nn::Config& d) { d.set("version", 2); });
  EXPECT_THROW(load_quantized<C>(edited), format_error);
  // A float model file: no quantization in it.
  const auto plain = s.dir / "plain.keras";
  save_model(s.model, plain);
  EXPECT_THROW(load_quantized<C>(plain), format_error);
  // Truncated.
  auto bytes = io::read_file(s.path);
  bytes.resize(bytes.size() / 2);
  const auto cut = s.dir / "cut.keras";
  io::write_file_atomically(cut, bytes);
  EXPECT_THROW(load_quantized<C>(cut), format_error);
}

TEST(QuantizedFiles, SavesOnlyWithTheWeightsItWasMadeFrom) {
  Saved s;
  Tensor<float, C>* kernel = s.model.weights().front().second;
  *kernel = *kernel * 2.0f;
  EXPECT_THROW(save_quantized(s.model, *s.q, s.dir / "stale.keras"), argument_error);
  EXPECT_THROW(save_quantized(s.model, *s.q, s.dir / "wrong.h5"), argument_error);
}

}  // namespace
