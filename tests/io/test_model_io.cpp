// Saving and loading models: round trips on both devices, loading straight onto the
// device, resuming training, mismatches and corrupt files as typed errors, checkpoints.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "temp_dir.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "test_devices.hpp"

namespace fs = std::filesystem;
using locus_test::TempDir;
using namespace locus;
using locus_test::TestDevices;

namespace {

/// Inputs with values in [-1, 1], the same on every device.
template <class Dev>
Tensor<float, Dev> inputs(const Shape& shape, std::uint64_t seed) {
  Tensor<float, Device<CPU>> h(uninitialized, shape);
  std::uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (std::size_t i = 0; i < h.size(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    h.data()[i] = static_cast<float>((s >> 40) % 2001) / 1000.0f - 1.0f;
  }
  return to<Dev>(h);
}

/// A functional model with a nested Sequential, batch normalisation, dropout and a
/// residual connection: every kind of weight group a file has.
Functional residual_description() {
  auto x = Input({6, 6, 2}, "image");
  auto c = Conv2D(3, 3, Activation::relu, {1, 1}, Padding::same)(x);
  auto b = BatchNormalization()(c);
  auto s = Conv2D(3, 1)(x);
  auto a = Add()(std::vector<nn::SymbolicTensor>{b, s});
  auto f = Flatten()(MaxPooling2D(2)(a));
  auto ii = Input({27});
  auto io = Dense(4)(Dropout(0.25)(Dense(5, Activation::tanh)(ii)));
  Functional inner({ii}, {io}, "inner", "Sequential");
  auto y = Dense(3, Activation::softmax)(inner(f));
  return Functional(x, y, "residual");
}

template <class T, class Dev>
std::vector<float> values(const Tensor<T, Dev>& t) {
  const auto h = locus_test::host(t);
  return {h.data(), h.data() + h.size()};
}

template <class Dev>
std::vector<std::vector<float>> all_weights(const Model<Dev>& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : m.weights()) out.push_back(values(*t));
  return out;
}

}  // namespace

template <class Dev>
class ModelIo : public ::testing::Test {};
TYPED_TEST_SUITE(ModelIo, TestDevices, locus_test::DeviceNames);

TYPED_TEST(ModelIo, SavedModelLoadsWithTheSameWeightsAndPredictions) {
  using Dev = TypeParam;
  TempDir dir;
  Model<Dev> m(residual_description(), /*seed=*/7);
  m.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = inputs<Dev>({8, 6, 6, 2}, 1);
  Tensor<std::int32_t, Device<CPU>> yh(uninitialized, {8});
  for (std::size_t i = 0; i < 8; ++i) yh.data()[i] = static_cast<std::int32_t>(i % 3);
  m.fit(x, to<Dev>(yh), {.epochs = 1, .batch_size = 4, .verbose = 0});
  save_model(m, dir / "m.keras");
  auto l = load_model<Dev>(dir / "m.keras");
  EXPECT_EQ(all_weights(l), all_weights(m));
  EXPECT_EQ(values(l.predict(x)), values(m.predict(x)));
  EXPECT_EQ(l.get_config(), m.get_config());
  ASSERT_TRUE(l.compiled());
  EXPECT_EQ(l.optimizer().iterations(), m.optimizer().iterations());
  // Weights only, into a fresh model of the same description.
  save_weights(m, dir / "m.weights.h5");
  Model<Dev> w(residual_description(), /*seed=*/99);
  load_weights(w, dir / "m.weights.h5");
  EXPECT_EQ(all_weights(w), all_weights(m));
}

TYPED_TEST(ModelIo, LoadPutsEachWeightOnTheDeviceOnceAndNowhereElse) {
  using Dev = TypeParam;
  using Other = locus_test::OtherDev<Dev>;
  TempDir dir;
  Model<Dev> m(residual_description(), 3);
  save_model(m, dir / "m.keras");
  std::size_t weight_bytes = 0;
  for (const auto& [name, t] : m.weights()) weight_bytes += t->size() * sizeof(float);
  const std::size_t weights = m.weights().size();
  std::size_t in_use_before = 0;
  if constexpr (!HostDevice<Dev>) in_use_before = memory_info<Dev>().in_use;
  reset_stats<Dev>();
  reset_stats<Other>();
  using SecondGpu = Device<GPU, 1>;
  reset_stats<SecondGpu>();
  {
    auto l = load_model<Dev>(dir / "m.keras");
    const transfer_stats s = stats<Dev>();
    if constexpr (HostDevice<Dev>) {
      EXPECT_EQ(s.transfer_calls(), 0u);
    } else {
      // One upload per weight, exactly the weights' bytes; nothing came back.
      EXPECT_EQ(s.host_to_device_calls, weights);
      EXPECT_EQ(s.host_to_device_bytes, weight_bytes);
      EXPECT_EQ(s.device_to_host_calls, 0u);
      EXPECT_EQ(s.device_to_device_calls, 0u);
      // The device holds the weights and (buffers are rounded up to size classes) not
      // much more: no second copy of the model.
      const std::size_t grown = memory_info<Dev>().in_use - in_use_before;
      EXPECT_GE(grown, weight_bytes);
      EXPECT_LT(grown, 2 * weight_bytes + weights * 256);
    }
    // No other device saw any of it.
    EXPECT_EQ(stats<Other>().transfer_calls(), 0u);
    EXPECT_EQ(stats<SecondGpu>().transfer_calls(), 0u);
    EXPECT_EQ(stats<Other>().kernel_launches, 0u);
  }
}

TYPED_TEST(ModelIo, ResumedTrainingEqualsTrainingInOneGo) {
  using Dev = TypeParam;
  TempDir dir;
  const auto x = inputs<Dev>({24, 6, 6, 2}, 5);
  Tensor<std::int32_t, Device<CPU>> yh(uninitialized, {24});
  for (std::size_t i = 0; i < 24; ++i) yh.data()[i] = static_cast<std::int32_t>((i * 7) % 3);
  const auto y = to<Dev>(yh);
  for (const OptimizerConfig& opt :
       {OptimizerConfig(Adam{.learning_rate = 0.01}),
        OptimizerConfig(SGD{.learning_rate = 0.05, .momentum = 0.9}),
        OptimizerConfig(RMSprop{.learning_rate = 0.01, .momentum = 0.5, .centered = true})}) {
    SCOPED_TRACE(opt.index());
    const FitOptions<Dev, float, std::int32_t> fo{
        .epochs = 1, .batch_size = 8, .shuffle = false, .verbose = 0};
    Model<Dev> once(residual_description(), 11);
    once.compile(opt, SparseCategoricalCrossentropy{});
    for (int e = 0; e < 3; ++e) once.fit(x, y, fo);

    Model<Dev> first(residual_description(), 11);
    first.compile(opt, SparseCategoricalCrossentropy{});
    for (int e = 0; e < 2; ++e) first.fit(x, y, fo);
    save_model(first, dir / "resume.keras");
    auto resumed = load_model<Dev>(dir / "resume.keras");
    EXPECT_EQ(resumed.optimizer().iterations(), first.optimizer().iterations());
    EXPECT_EQ(resumed.training_step(), first.training_step());
    resumed.fit(x, y, fo);

    const auto a = all_weights(resumed), b = all_weights(once);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      if constexpr (HostDevice<Dev>) {
        EXPECT_EQ(a[i], b[i]) << "weight " << i;  // bitwise on the CPU
      } else {
        for (std::size_t j = 0; j < a[i].size(); ++j)
          EXPECT_NEAR(a[i][j], b[i][j], 1e-5) << "weight " << i;
      }
    }
  }
}

TYPED_TEST(ModelIo, MismatchedWeightsAreTypedErrorsAndChangeNothing) {
  using Dev = TypeParam;
  TempDir dir;
  Sequential<Dev> small(Input({4}), Dense(3, Activation::relu), Dense(2));
  small.build();
  save_weights(small, dir / "small.weights.h5");

  const auto expect_unchanged = [&](Model<Dev>& target, const std::string& path,
                                    const std::string& layer, const std::string& expected,
                                    const std::string& found, LoadOptions o = {}) {
    const auto before = all_weights(target);
    try {
      load_weights(target, path, o);
      ADD_FAILURE() << "no error for " << path;
    } catch (const model_mismatch_error& e) {
      EXPECT_EQ(e.layer(), layer) << e.what();
      EXPECT_EQ(e.expected(), expected) << e.what();
      EXPECT_EQ(e.found(), found) << e.what();
      EXPECT_NE(std::string(e.what()).find(layer), std::string::npos) << e.what();
    }
    EXPECT_EQ(all_weights(target), before);
  };
  // Another shape.
  Sequential<Dev> wider(Input({4}), Dense(5, Activation::relu), Dense(2));
  wider.build();
  expect_unchanged(wider, dir / "small.weights.h5", "dense", "(4, 5)", "(4, 3)");
  // Another number of layers.
  Sequential<Dev> deeper(Input({4}), Dense(3, Activation::relu), Dense(2), Dense(2));
  deeper.build();
  expect_unchanged(deeper, dir / "small.weights.h5", "the model", "3 layers", "2 layers");
  // Another class at the same position.
  Sequential<Dev> other(Input({4}), Dense(3, Activation::relu), BatchNormalization());
  other.build();
  try {
    load_weights(other, dir / "small.weights.h5");
    ADD_FAILURE() << "no error for another class";
  } catch (const model_mismatch_error& e) {
    EXPECT_EQ(e.layer(), "batch_normalization");
    EXPECT_NE(e.expected().find("BatchNormalization"), std::string::npos) << e.what();
    EXPECT_NE(e.found().find("dense_1"), std::string::npos) << e.what();
  }
  // Another name: refused unless the names are not checked.
  Sequential<Dev> renamed(Input({4}), Dense(3, Activation::relu).named("hidden"), Dense(2));
  renamed.build();
  expect_unchanged(renamed, dir / "small.weights.h5", "hidden", "'hidden'", "'dense'");
  EXPECT_NO_THROW(load_weights(renamed, dir / "small.weights.h5", {.check_names = false}));
  EXPECT_EQ(all_weights(renamed), all_weights(small));
}

TYPED_TEST(ModelIo, CheckpointsSaveEveryEpochOrTheBestOnly) {
  using Dev = TypeParam;
  TempDir dir;
  Sequential<Dev> m(Input({3}), Dense(4, Activation::relu), Dense(2, Activation::softmax));
  m.build();
  m.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = inputs<Dev>({16, 3}, 2);
  Tensor<std::int32_t, Device<CPU>> yh(uninitialized, {16});
  for (std::size_t i = 0; i < 16; ++i) yh.data()[i] = static_cast<std::int32_t>(i % 2);
  const auto y = to<Dev>(yh);
  auto every = std::make_shared<ModelCheckpoint<Dev>>(m, (dir / "e{epoch:02d}.keras").string());
  // A monitor that gets worse after the first epoch is saved once: a rising loss.
  auto best = std::make_shared<ModelCheckpoint<Dev>>(
      m, (dir / "best.weights.h5").string(),
      ModelCheckpointOptions{
          .monitor = "loss", .save_best_only = true, .save_weights_only = true, .mode = "max"});
  const History h =
      m.fit(x, y, {.epochs = 3, .batch_size = 8, .verbose = 0, .callbacks = {every, best}});
  for (int e = 1; e <= 3; ++e) {
    char name[32];
    std::snprintf(name, sizeof name, "e%02d.keras", e);
    ASSERT_TRUE(fs::exists(dir / name)) << name;
  }
  // The every-epoch file of the last epoch is the model as it ended.
  auto last = load_model<Dev>(dir / "e03.keras");
  EXPECT_EQ(all_weights(last), all_weights(m));
  // mode max on the loss: the best file holds the weights of the epoch of the largest loss.
  const std::vector<double>& losses = h.history.at("loss");
  ASSERT_EQ(losses.size(), 3u);
  const auto worst =
      static_cast<int>(std::max_element(losses.begin(), losses.end()) - losses.begin());
  EXPECT_EQ(best->best(), losses[static_cast<std::size_t>(worst)]);
  ASSERT_TRUE(fs::exists(dir / "best.weights.h5"));
  char name[32];
  std::snprintf(name, sizeof name, "e%02d.keras", worst + 1);
  auto at_worst = load_model<Dev>(dir / name);
  Sequential<Dev> probe(Input({3}), Dense(4, Activation::relu), Dense(2, Activation::softmax));
  probe.build();
  load_weights(probe, dir / "best.weights.h5");
  EXPECT_EQ(all_weights(probe), all_weights(at_worst));
}

TYPED_TEST(ModelIo, TruncatedAndCorruptFilesAreTypedErrors) {
  using Dev = TypeParam;
  TempDir dir;
  Sequential<Dev> m(Input({4}), Dense(3), Dense(2));
  m.build();
  m.compile(Adam{}, MeanSquaredError{});
  save_model(m, dir / "m.keras");
  save_weights(m, dir / "m.weights.h5");
  for (const char* name : {"m.keras", "m.weights.h5"}) {
    const auto bytes = io::read_file(dir / name);
    std::size_t typed = 0, cases = 0;
    // Every cut point (steps of 97 bytes) and bytes flipped along the file.
    for (std::size_t cut = 0; cut < bytes.size(); cut += 97) {
      std::vector<std::byte> b(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      ++cases;
      try {
        if (std::string(name) == "m.keras") {
          (void)load_model_from_bytes<Dev>(b, name);
        } else {
          (void)io::read_weights(io::open_model_file(b, name), m.description());
        }
      } catch (const format_error&) {
        ++typed;
      } catch (const config_error&) {
        ++typed;
      }
    }
    EXPECT_EQ(typed, cases) << name << ": every truncated copy is a format_error";
    for (std::size_t at = 0; at < bytes.size(); at += 61) {
      std::vector<std::byte> b = bytes;
      b[at] = static_cast<std::byte>(~std::to_integer<unsigned>(b[at]));
      try {
        (void)load_model_from_bytes<Dev>(b, name, {.compile = true});
      } catch (const locus::error&) {
        // A typed error, or (a flipped byte in a weight's value) a model that loads.
      }
    }
  }
}

// ---- a process killed in the middle of a save --------------------------------------------

namespace {
constexpr const char* kill_env = "LOCUS_IO_SAVE_FOREVER";
}

// Run as a child process by the test below: saves a large model over the same file until
// it is killed.
TEST(ModelIoChild, SaveForever) {
  const char* path = std::getenv(kill_env);
  if (!path)
    GTEST_SKIP() << "only run as the child of ModelIoAtomic.KilledSaveLeavesThePreviousFile";
  Sequential<Device<CPU>> big(Input({512}), Dense(1024), Dense(1024), Dense(10));
  big.build();
  std::ofstream(std::string(path) + ".ready") << "1";
  for (;;) save_model(big, path);
}

TEST(ModelIoAtomic, KilledSaveLeavesThePreviousFile) {
  TempDir dir;
  const fs::path file = dir / "model.keras";
  Sequential<Device<CPU>> small(Input({4}), Dense(3), Dense(2));
  small.build();
  save_model(small, file);
  const auto saved = all_weights(small);
  for (int round = 0; round < 3; ++round) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      setenv(kill_env, file.c_str(), 1);
      execl("/proc/self/exe", "locus_io_tests", "--gtest_filter=ModelIoChild.SaveForever",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // Wait until the child saves, then kill it at a point inside a save (each save of
    // ~2.6M weights takes tens of milliseconds).
    const fs::path ready = file.string() + ".ready";
    for (int i = 0; i < 2000 && !fs::exists(ready); ++i) usleep(5000);
    ASSERT_TRUE(fs::exists(ready)) << "the child did not start";
    usleep(static_cast<useconds_t>(20000 + 17000 * round));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    fs::remove(ready);
    // Whatever the child managed, the file is a whole model: the small one or the big one.
    auto l = load_model<Device<CPU>>(file);
    const std::size_t big_params = 512u * 1024 + 1024 + 1024 * 1024 + 1024 + 10250;
    EXPECT_TRUE(l.count_params() == small.count_params() || l.count_params() == big_params)
        << l.count_params();
    // No temporary is left over but the one a kill may leave (named .model.keras.tmp.*),
    // which never replaces the file.
    for (const auto& e : fs::directory_iterator(dir.path)) {
      const std::string n = e.path().filename().string();
      EXPECT_TRUE(n == "model.keras" || n.rfind(".model.keras.tmp.", 0) == 0) << n;
    }
  }
  (void)saved;
}

// Options of Keras layers that change what a layer computes are refused by name, not
// silently dropped, when a file's configuration is read.
TEST(ModelIoConfig, OptionsLocusDoesNotComputeAreRefusedByName) {
  const auto message = [](const std::string& cls, const nn::Config& cfg) -> std::string {
    try {
      (void)nn::layer_from_config(cls, cfg, "the_layer");
    } catch (const config_error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string renorm = message("BatchNormalization", nn::Config::make({{"renorm", true}}));
  EXPECT_NE(renorm.find("renorm"), std::string::npos) << renorm;
  EXPECT_NE(renorm.find("the_layer"), std::string::npos) << renorm;
  EXPECT_EQ(message("BatchNormalization", nn::Config::make({{"renorm", false}})), "no error");
  const std::string quantized = message(
      "Dense",
      nn::Config::make(
          {{"units", 3}, {"activation", "linear"}, {"quantization_config", nn::Config::make({})}}));
  EXPECT_NE(quantized.find("quantized"), std::string::npos) << quantized;
}
