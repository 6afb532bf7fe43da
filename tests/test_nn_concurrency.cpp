// Const, thread-safe inference: several threads predicting with one model at once get
// exactly what one thread gets. The suite also runs this file alone under
// ThreadSanitizer (scripts/test.sh, phase tsan), which fails on any data race.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

using HostF = Tensor<float, CPUDev>;

template <class Dev>
class NnConcurrency : public ::testing::Test {};
TYPED_TEST_SUITE(NnConcurrency, TestDevices, DeviceNames);

/// A small CNN with every layer kind that behaves differently at inference (batch
/// normalisation's moving statistics, an identity dropout) and a shared layer.
Functional small_cnn() {
  const Input x({8, 8, 1});
  auto h = Conv2D(4, 3, "relu")(x);
  h = BatchNormalization()(h);
  h = Flatten()(MaxPooling2D()(Dropout(0.5)(h)));
  Dense shared(12, Activation::tanh);
  return Functional(x, Dense(3, "softmax")(shared(shared(Dense(12)(h)))));
}

TYPED_TEST(NnConcurrency, ConcurrentPredictionsOnOneModelAgreeWithSerialOnes) {
  using Dev = TypeParam;
  const Model<Dev> m(small_cnn(), 6);
  constexpr int threads = 4, rounds = 6;
  std::vector<Tensor<float, Dev>> inputs;
  std::vector<HostF> expected;
  for (int t = 0; t < threads; ++t) {
    inputs.push_back(
        to<Dev>(random_host<float>({5 + static_cast<std::size_t>(t), 8, 8, 1}, 100 + t)));
    expected.push_back(host(m.predict(inputs.back(), 3)));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int r = 0; r < rounds; ++r) {
        const HostF got = host(r % 2 ? m(inputs[t]) : m.predict(inputs[t], 3));
        if (!bitwise_equal(got, expected[t])) ++mismatches;
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TYPED_TEST(NnConcurrency, TrainingOneModelWhileAnotherPredicts) {
  using Dev = TypeParam;
  // Distinct models on distinct threads share only the device (its queue, memory pool,
  // kernel cache and counters): a training thread and an inference thread at once.
  const Model<Dev> frozen(small_cnn(), 1);
  Model<Dev> trained(small_cnn(), 2);
  trained.compile(Adam{}, SparseCategoricalCrossentropy{});
  const auto x = to<Dev>(random_host<float>({16, 8, 8, 1}, 3));
  const auto y = to<Dev>(Tensor<std::int32_t, CPUDev>::zeros({16}));
  const HostF want = host(frozen(x));
  std::atomic<int> mismatches{0};
  std::thread infer([&] {
    for (int r = 0; r < 6; ++r)
      if (!bitwise_equal(host(frozen(x)), want)) ++mismatches;
  });
  trained.fit(x, y, {.epochs = 3, .batch_size = 4, .verbose = 0});
  infer.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
