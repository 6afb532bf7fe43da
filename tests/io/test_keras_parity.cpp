// Files Keras 3 (and Keras 2, through tf_keras) wrote, loaded on both devices: predictions
// within 1e-5 of Keras's own. The fixtures and the script that made them are in
// tests/data/keras/ and tools/keras_fixtures/make_fixtures.py; Keras is not needed here.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "test_devices.hpp"

namespace fs = std::filesystem;
using namespace locus;

namespace {

const fs::path fixtures = fs::path(LOCUS_TEST_DATA_DIR) / "keras";

struct Fixture {
  std::string name;
  std::size_t inputs = 1, outputs = 1;
};

std::vector<Fixture> manifest() {
  const auto bytes = io::read_file(fixtures / "manifest.json");
  const nn::Config m = io::parse_json(
      std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), "manifest.json");
  std::vector<Fixture> out;
  for (const nn::Config& e : m.as_array())
    out.push_back({e.at("name").as_string(), static_cast<std::size_t>(e.at("inputs").as_int()),
                   static_cast<std::size_t>(e.at("outputs").as_int())});
  return out;
}

io::NpyArray npy(const fs::path& p) {
  return io::read_npy(io::read_file(p), p.string());
}

std::string numbered(const std::string& base, const char* what, std::size_t i, std::size_t n) {
  return base + "." + what + (n == 1 ? "" : std::to_string(i)) + ".npy";
}

/// The largest |locus - keras| over the outputs of `m` on the fixture's inputs.
template <class Dev>
double max_difference(const Model<Dev>& m, const Fixture& f, const std::string& outputs_of) {
  std::vector<Tensor<float, Dev>> xs;
  for (std::size_t i = 0; i < f.inputs; ++i) {
    const auto a = npy(fixtures / numbered(f.name, "input", i, f.inputs));
    xs.push_back(to<Dev>(Tensor<float, Device<CPU>>::from_data(Shape(a.shape), a.data.data())));
  }
  const auto ys = m.predict(xs);
  EXPECT_EQ(ys.size(), f.outputs);
  double worst = 0;
  for (std::size_t i = 0; i < ys.size(); ++i) {
    const auto want = npy(fixtures / numbered(outputs_of, "output", i, f.outputs));
    const auto got = locus_test::host(ys[i]);
    EXPECT_EQ(got.shape().to_vector(), want.shape) << f.name << " output " << i;
    if (got.size() != want.data.size()) return INFINITY;
    for (std::size_t j = 0; j < got.size(); ++j)
      worst = std::max(worst, std::abs(static_cast<double>(got.data()[j]) - want.data[j]));
  }
  return worst;
}

}  // namespace

template <class Dev>
class KerasParity : public ::testing::Test {};
TYPED_TEST_SUITE(KerasParity, locus_test::TestDevices, locus_test::DeviceNames);

TYPED_TEST(KerasParity, KerasFilesPredictAsKerasDid) {
  using Dev = TypeParam;
  const auto all = manifest();
  ASSERT_GE(all.size(), 6u);
  std::size_t files = 0;
  for (const Fixture& f : all) {
    SCOPED_TRACE(f.name);
    for (const std::string ext : {".keras", ".h5"}) {
      const auto m = load_model<Dev>(fixtures / (f.name + ext), {.compile = false});
      EXPECT_LE(max_difference(m, f, f.name), 1e-5) << f.name << ext;
      ++files;
    }
    // Keras 2's legacy writer, where the fixture has one (k2fixed: its strings rewritten as
    // the fixed-length ones of h5py 2, which Keras 2 wrote for years).
    for (const std::string k2 : {".k2", ".k2fixed"}) {
      if (!fs::exists(fixtures / (f.name + k2 + ".h5"))) continue;
      const auto m = load_model<Dev>(fixtures / (f.name + k2 + ".h5"), {.compile = false});
      EXPECT_LE(max_difference(m, f, f.name + k2), 1e-5) << f.name << k2 << ".h5";
      ++files;
    }
    // The weights file into a model built from the description with other weights.
    const io::ModelFile mf =
        io::open_model_file(io::read_file(fixtures / (f.name + ".keras")), f.name);
    Model<Dev> fresh(io::model_description(mf), /*seed=*/12345);
    load_weights(fresh, fixtures / (f.name + ".weights.h5"));
    EXPECT_LE(max_difference(fresh, f, f.name), 1e-5) << f.name << ".weights.h5";
    ++files;
  }
  this->RecordProperty("files", static_cast<int>(files));
  EXPECT_GE(files, 3 * all.size());
}

TYPED_TEST(KerasParity, OptimizerStateKerasWroteLandsInTheRightSlots) {
  using Dev = TypeParam;
  // Second moments (Adam's velocity, RMSprop's) are never negative; first moments and
  // momenta of a trained model are, somewhere: a swapped order shows.
  for (const char* name : {"seq_trained_adam", "seq_trained_rmsprop", "seq_trained_sgd"}) {
    SCOPED_TRACE(name);
    const auto m = load_model<Dev>(fixtures / (std::string(name) + ".keras"));
    ASSERT_TRUE(m.compiled());
    const auto& opt = m.optimizer();
    EXPECT_GT(opt.iterations(), 0u);
    const auto used = opt.used_slots();
    ASSERT_EQ(opt.slotted_parameters(), m.parameters().size());
    bool some_negative_first = false;
    for (std::size_t p = 0; p < opt.slotted_parameters(); ++p) {
      const auto slots = opt.slot_tensors(p);
      std::size_t k = 0;
      for (int s = 0; s < 3; ++s) {
        if (!used[static_cast<std::size_t>(s)]) continue;
        const auto h = locus_test::host(*slots.at(k++));
        EXPECT_EQ(h.shape(), m.parameters()[p]->value.shape());
        for (std::size_t j = 0; j < h.size(); ++j) {
          if (s == 1) {
            ASSERT_GE(h.data()[j], 0.0f) << "second moment of parameter " << p;
          } else if (h.data()[j] < 0) {
            some_negative_first = true;
          }
        }
      }
    }
    EXPECT_TRUE(some_negative_first);
    // And it trains on from there.
    Model<Dev> again = load_model<Dev>(fixtures / (std::string(name) + ".keras"));
    const auto x = npy(fixtures / (std::string(name) + ".input.npy"));
    const auto xt = to<Dev>(Tensor<float, Device<CPU>>::from_data(Shape(x.shape), x.data.data()));
    const auto y = again.predict(xt);
    const std::uint64_t before = again.optimizer().iterations();
    if (std::holds_alternative<SparseCategoricalCrossentropy>(again.loss())) {
      Tensor<std::int32_t, Device<CPU>> labels(uninitialized, {y.shape()[0]});
      for (std::size_t i = 0; i < labels.size(); ++i)
        labels.data()[i] = static_cast<std::int32_t>(i % y.shape()[1]);
      again.fit(xt, to<Dev>(labels), {.epochs = 1, .batch_size = 8, .verbose = 0});
    } else {
      again.fit(xt, y, {.epochs = 1, .batch_size = 8, .verbose = 0});
    }
    EXPECT_GT(again.optimizer().iterations(), before);
  }
}

TYPED_TEST(KerasParity, WhatLocusCannotLoadSaysWhat) {
  using Dev = TypeParam;
  const auto message = [](const std::string& file) -> std::string {
    try {
      (void)load_model<Dev>(fixtures / file);
    } catch (const config_error& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("wrong error type: ") + e.what();
    }
    return "no error";
  };
  const std::string lstm = message("unsupported_lstm.keras");
  EXPECT_NE(lstm.find("LSTM"), std::string::npos) << lstm;
  EXPECT_NE(lstm.find("my_lstm"), std::string::npos) << lstm;
  const std::string cf = message("channels_first.keras");
  EXPECT_NE(cf.find("channels_first"), std::string::npos) << cf;
  const std::string f16 = message("float16.keras");
  EXPECT_NE(f16.find("float16"), std::string::npos) << f16;
  const std::string layer = message("not_a_model.keras");
  EXPECT_NE(layer.find("not a model"), std::string::npos) << layer;
}
