// The training loop apart from the model: metrics with their own accumulators and Keras
// names, the callback hooks and what a callback can see and do, the progress output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

using HostF = Tensor<float, CPUDev>;
using HostI = Tensor<std::int32_t, CPUDev>;

template <class Dev>
class NnTraining : public ::testing::Test {};
TYPED_TEST_SUITE(NnTraining, TestDevices, DeviceNames);

/// Row-wise probabilities [n, c] and labels with ties avoided (random values).
HostF random_scores(std::size_t n, std::size_t c, std::uint64_t seed) {
  return random_host<float>({n, c}, seed, 0.f, 1.f);
}

/// The host reference of top-k: the label's score has fewer than k strictly greater scores.
double top_k_reference(const HostF& out, const std::vector<int>& labels, int k) {
  const std::size_t c = out.shape()[1];
  double correct = 0;
  for (std::size_t r = 0; r < labels.size(); ++r) {
    const float t = out.data()[r * c + static_cast<std::size_t>(labels[r])];
    int greater = 0;
    for (std::size_t j = 0; j < c; ++j) greater += out.data()[r * c + j] > t;
    correct += greater < k;
  }
  return correct;
}

TYPED_TEST(NnTraining, TopKAccuracyMatchesTheDefinition) {
  using Dev = TypeParam;
  const HostF out = random_scores(40, 6, 1);
  std::vector<int> labels;
  HostI sparse(Shape{40});
  HostF onehot = HostF::zeros({40, 6});
  for (std::size_t r = 0; r < 40; ++r) {
    labels.push_back(static_cast<int>((r * 7) % 6));
    sparse.data()[r] = labels.back();
    onehot.data()[r * 6 + static_cast<std::size_t>(labels.back())] = 1;
  }
  for (int k : {1, 2, 3, 5}) {
    const double want = top_k_reference(out, labels, k);
    const auto got_cat =
        nn::metric_sum(Metric::top_k_categorical_accuracy(k), to<Dev>(out), to<Dev>(onehot));
    const auto got_sparse =
        nn::metric_sum(Metric::sparse_top_k_categorical_accuracy(k), to<Dev>(out), to<Dev>(sparse));
    EXPECT_EQ(host(got_cat).item(), static_cast<float>(want)) << k;
    EXPECT_EQ(host(got_sparse).item(), static_cast<float>(want)) << k;
  }
  // k = 1 is plain accuracy.
  EXPECT_EQ(host(nn::metric_sum(Metric::sparse_categorical_accuracy, to<Dev>(out), to<Dev>(sparse)))
                .item(),
            static_cast<float>(top_k_reference(out, labels, 1)));
}

TYPED_TEST(NnTraining, RegressionMetricsMatchTheirDefinitionsAndKerasNames) {
  using Dev = TypeParam;
  const HostF out = random_host<float>({8, 3}, 2), y = random_host<float>({8, 3}, 3);
  double abs_sum = 0, sq_sum = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = static_cast<double>(out.data()[i]) - y.data()[i];
    abs_sum += std::abs(d);
    sq_sum += d * d;
  }
  // Per-sample means (over the 3 outputs), summed over the samples.
  EXPECT_NEAR(host(nn::metric_sum(Metric::mae, to<Dev>(out), to<Dev>(y))).item(), abs_sum / 3,
              1e-5);
  EXPECT_NEAR(host(nn::metric_sum(Metric::mse, to<Dev>(out), to<Dev>(y))).item(), sq_sum / 3, 1e-5);
  EXPECT_EQ(
      metric_keys({Metric::mae, Metric::mse, MeanAbsoluteError{}, MeanSquaredError{}, Metric::mae}),
      (std::vector<std::string>{"mae", "mse", "mean_absolute_error", "mean_squared_error",
                                "mae_1"}));
  EXPECT_EQ(metric_name(Metric::top_k_categorical_accuracy(3)), "top_k_categorical_accuracy");
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        nn::metric_sum(Metric::mae, to<Dev>(out), to<Dev>(HostF::zeros({8, 1})));
      },
      "mae", "[8, 1]", "[8, 3]"));
}

TYPED_TEST(NnTraining, EvaluateReportsEveryMetricUnderItsKey) {
  using Dev = TypeParam;
  Sequential<Dev> m(Input({4}), Dense(3, Activation::tanh), Dense(2));
  m.build(3);
  m.compile(SGD{}, MeanSquaredError{}, {Metric::mae, MeanSquaredError{}, Metric::mse});
  const HostF x = random_host<float>({10, 4}, 4), y = random_host<float>({10, 2}, 5);
  const Logs logs = m.evaluate(to<Dev>(x), to<Dev>(y), 3);
  const HostF out = host(m.predict(to<Dev>(x)));
  double abs_sum = 0, sq_sum = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = static_cast<double>(out.data()[i]) - y.data()[i];
    abs_sum += std::abs(d);
    sq_sum += d * d;
  }
  EXPECT_EQ(logs.size(), 4u);
  EXPECT_NEAR(logs.at("mae"), abs_sum / out.size(), 1e-5);
  EXPECT_NEAR(logs.at("mean_squared_error"), sq_sum / out.size(), 1e-5);
  EXPECT_NEAR(logs.at("mse"), sq_sum / out.size(), 1e-5);
  EXPECT_NEAR(logs.at("loss"), sq_sum / out.size(), 1e-5);
  // Sparse metrics with float targets: refused before the first batch.
  m.compile(SGD{}, MeanSquaredError{}, {Metric::sparse_top_k_categorical_accuracy(2)});
  EXPECT_TRUE(throws_with<argument_error>([&] { m.evaluate(to<Dev>(x), to<Dev>(y)); },
                                          "sparse_top_k_categorical_accuracy",
                                          "int32 class labels"));
}

/// Records every hook in order, and what the context offers at a few of them.
struct Recorder final : Callback {
  std::vector<std::string> events;
  std::vector<double> running_loss;
  std::vector<std::size_t> seen;
  void on_train_begin(TrainingContext& c) override {
    events.push_back("train_begin " + std::to_string(c.epochs()) + "x" +
                     std::to_string(c.steps_per_epoch()));
  }
  void on_train_end(TrainingContext&, const Logs& logs) override {
    events.push_back(std::string("train_end") + (logs.count("val_loss") ? " val" : ""));
  }
  void on_epoch_begin(TrainingContext&, std::size_t e) override {
    events.push_back("epoch_begin " + std::to_string(e));
  }
  void on_epoch_end(TrainingContext&, std::size_t e, const Logs&) override {
    events.push_back("epoch_end " + std::to_string(e));
  }
  void on_train_batch_begin(TrainingContext&, std::size_t b) override {
    events.push_back("batch_begin " + std::to_string(b));
  }
  void on_train_batch_end(TrainingContext& c, std::size_t b) override {
    events.push_back("batch_end " + std::to_string(b));
    running_loss.push_back(c.current_logs().at("loss"));
    seen.push_back(c.samples_seen());
  }
  void on_test_begin(TrainingContext&) override { events.push_back("test_begin"); }
  void on_test_end(TrainingContext&, const Logs& logs) override {
    events.push_back(std::string("test_end") + (logs.count("val_loss") ? " val_loss" : ""));
  }
};

TYPED_TEST(NnTraining, CallbackHooksRunInKerasOrder) {
  using Dev = TypeParam;
  Sequential<Dev> m(Input({3}), Dense(2, Activation::softmax));
  m.build(1);
  m.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto x = to<Dev>(random_host<float>({5, 3}, 6));
  const auto y = to<Dev>(HostI{0, 1, 1, 0, 1});
  auto rec = std::make_shared<Recorder>();
  const auto before = stats<Dev>();
  m.fit(
      x, y,
      {.epochs = 2, .batch_size = 3, .validation_data = {x, y}, .verbose = 0, .callbacks = {rec}});
  const std::vector<std::string> one_epoch = {"batch_begin 0", "batch_end 0", "batch_begin 1",
                                              "batch_end 1",   "test_begin",  "test_end val_loss"};
  std::vector<std::string> want{"train_begin 2x2"};
  for (int e = 0; e < 2; ++e) {
    want.push_back("epoch_begin " + std::to_string(e));
    want.insert(want.end(), one_epoch.begin(), one_epoch.end());
    want.push_back("epoch_end " + std::to_string(e));
  }
  want.push_back("train_end val");
  EXPECT_EQ(rec->events, want);
  EXPECT_EQ(rec->seen, (std::vector<std::size_t>{3, 5, 3, 5}));
  for (double l : rec->running_loss) EXPECT_TRUE(std::isfinite(l) && l > 0);
  if constexpr (!HostDevice<Dev>) {
    // Each current_logs() is one read, on top of fit's own (the label check, and per epoch
    // the training and the validation sums).
    const auto after = stats<Dev>();
    EXPECT_EQ(after.device_to_host_calls - before.device_to_host_calls, 4u + 1u + 2u * 2u);
  }
}

TYPED_TEST(NnTraining, ProgressOutputIsOneLinePerEpochOffATerminal) {
  using Dev = TypeParam;
  Sequential<Dev> m(Input({3}), Dense(2, Activation::softmax));
  m.build(1);
  m.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = to<Dev>(random_host<float>({6, 3}, 7));
  const auto y = to<Dev>(HostI{0, 1, 1, 0, 1, 0});
  std::ostringstream out;
  m.fit(x, y, {.epochs = 2, .batch_size = 4, .validation_data = {x, y}, .verbose = 1, .out = &out});
  const std::string s = out.str();
  EXPECT_NE(s.find("Epoch 1/2\n2/2 - "), std::string::npos) << s;
  EXPECT_NE(s.find("Epoch 2/2\n2/2 - "), std::string::npos) << s;
  EXPECT_NE(s.find("ms/step - accuracy: "), std::string::npos) << s;
  EXPECT_NE(s.find(" - loss: "), std::string::npos) << s;
  EXPECT_NE(s.find(" - val_accuracy: "), std::string::npos) << s;
  EXPECT_EQ(s.find('\r'), std::string::npos) << "no live bar off a terminal";
  std::ostringstream quiet;
  m.fit(x, y, {.verbose = 0, .out = &quiet});
  EXPECT_TRUE(quiet.str().empty());
}

TYPED_TEST(NnTraining, SnapshotsAreOfOneModel) {
  using Dev = TypeParam;
  // A callback that keeps the first epoch's weights and puts them back at the end.
  struct KeepFirst final : Callback {
    std::shared_ptr<const WeightsSnapshot> first;
    void on_epoch_end(TrainingContext& c, std::size_t e, const Logs&) override {
      if (e == 0) first = c.snapshot_weights();
    }
    void on_train_end(TrainingContext& c, const Logs&) override { c.restore_weights(*first); }
  };
  Sequential<Dev> m(Input({3}), Dense(2, Activation::softmax));
  m.build(1);
  m.compile(SGD{.learning_rate = 0.5}, SparseCategoricalCrossentropy{});
  const auto x = to<Dev>(random_host<float>({6, 3}, 8));
  const auto y = to<Dev>(HostI{0, 1, 1, 0, 1, 0});
  m.fit(x, y, {.epochs = 1, .shuffle = false, .verbose = 0});
  const auto after_one = host(*m.weights()[0].second);
  // Rewind and train 3 epochs, keeping the first.
  Sequential<Dev> n(Input({3}), Dense(2, Activation::softmax));
  n.build(1);
  n.compile(SGD{.learning_rate = 0.5}, SparseCategoricalCrossentropy{});
  auto keep = std::make_shared<KeepFirst>();
  n.fit(x, y, {.epochs = 3, .shuffle = false, .verbose = 0, .callbacks = {keep}});
  EXPECT_TRUE(bitwise_equal(*n.weights()[0].second, after_one));
  // A snapshot of another model is refused.
  struct Swap final : Callback {
    std::shared_ptr<const WeightsSnapshot> other;
    void on_train_begin(TrainingContext& c) override { c.restore_weights(*other); }
  };
  auto swap = std::make_shared<Swap>();
  swap->other = keep->first;
  EXPECT_TRUE(throws_with<argument_error>([&] { m.fit(x, y, {.verbose = 0, .callbacks = {swap}}); },
                                          "another model"));
}

}  // namespace
