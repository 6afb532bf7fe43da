// Data-parallel replicas in one process (parallel/mirrored.hpp) and the ring all-reduce
// under them (parallel/ring_allreduce.hpp), on PoCL's two devices (POCL_DEVICES="pthread
// pthread" gives Device<GPU, 0> and Device<GPU, 1>) and on the host with a device.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

Tensor<float, C> host_values(const Shape& s, float start, float step) {
  Tensor<float, C> t(uninitialized, s);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = start + step * static_cast<float>(i);
  return t;
}

// A learnable synthetic task: 10 classes of 8x8 images whose class shows in the pixels.
struct task {
  Tensor<float, C> x;
  Tensor<std::int32_t, C> y;
};
task synthetic(std::size_t n, std::uint64_t seed = 3) {
  task t{Tensor<float, C>(uninitialized, {n, 8, 8, 1}),
         Tensor<std::int32_t, C>(uninitialized, {n})};
  std::uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((s >> 40) & 0xFFFF) / 65536.0f;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const auto label = static_cast<std::int32_t>(i * 7 % 10);
    t.y.data()[i] = label;
    for (std::size_t p = 0; p < 64; ++p)
      t.x.data()[i * 64 + p] =
          0.2f * next() + (p % 10 == static_cast<std::size_t>(label) ? 1.0f : 0.0f);
  }
  return t;
}

// Conv -> (batch norm) -> pool -> (dropout) -> dense; without the optional layers the
// replicas' update is exactly the single device's one, up to float rounding.
template <AnyDevice Dev>
Sequential<Dev> small_cnn(bool norm_and_dropout, std::uint64_t seed = 5) {
  Sequential<Dev> m;
  m.add(Input({8, 8, 1}));
  m.add(Conv2D(4, {3, 3}, Activation::relu));
  if (norm_and_dropout) m.add(BatchNormalization());
  m.add(MaxPooling2D({2, 2}));
  m.add(Flatten());
  if (norm_and_dropout) m.add(Dropout(0.25));
  m.add(Dense(10, Activation::softmax));
  m.build(seed);
  return m;
}

template <class M>
std::vector<Tensor<float, C>> host_weights(M& model) {
  std::vector<Tensor<float, C>> out;
  for (auto& [name, t] : model.weights()) out.push_back(to<C>(*t));
  return out;
}

bool bitwise_equal(const std::vector<Tensor<float, C>>& a, const std::vector<Tensor<float, C>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size()) return false;
    for (std::size_t k = 0; k < a[i].size(); ++k)
      if (std::memcmp(&a[i].data()[k], &b[i].data()[k], sizeof(float)) != 0) return false;
  }
  return true;
}

double max_relative_difference(const std::vector<Tensor<float, C>>& a,
                               const std::vector<Tensor<float, C>>& b, double floor = 1e-3) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t k = 0; k < a[i].size(); ++k) {
      const double x = a[i].data()[k], y = b[i].data()[k];
      worst = std::max(worst, std::abs(x - y) / std::max(floor, std::abs(y)));
    }
  return worst;
}

// ---- the ring -------------------------------------------------------------------------------

TEST(RingAllReduce, SumsScaledTensorsBitwiseEqualOnBothDevicesWithinTheRingBound) {
  // Sizes that do not divide into two chunks evenly, and a tensor split across chunks.
  const std::vector<Shape> shapes = {{5}, {2, 3}, {1}, {7}};
  std::vector<Tensor<float, G0>> a;
  std::vector<Tensor<float, G1>> b;
  std::size_t total = 0;
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    a.push_back(to<G0>(host_values(shapes[k], 1.0f + static_cast<float>(k), 0.5f)));
    b.push_back(to<G1>(host_values(shapes[k], -3.0f, 0.25f * static_cast<float>(k + 1))));
    total += shapes[k].size();
  }
  std::vector<Tensor<float, G0>*> pa;
  std::vector<Tensor<float, G1>*> pb;
  for (auto& t : a) pa.push_back(&t);
  for (auto& t : b) pb.push_back(&t);

  parallel::ring_allreduce<float, G0, G1> ring;
  reset_stats<G0>();
  reset_stats<G1>();
  // Each replica's thread runs its part; they meet at the ring's barrier.
  std::thread other([&] { ring.run<1>(pb, 0.75f); });
  ring.run<0>(pa, 0.25f);
  other.join();

  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const auto ha = to<C>(a[k]), hb = to<C>(b[k]);
    const auto ea = host_values(shapes[k], 1.0f + static_cast<float>(k), 0.5f);
    const auto eb = host_values(shapes[k], -3.0f, 0.25f * static_cast<float>(k + 1));
    for (std::size_t i = 0; i < ha.size(); ++i) {
      EXPECT_FLOAT_EQ(ha.data()[i], 0.25f * ea.data()[i] + 0.75f * eb.data()[i]) << k << "," << i;
      EXPECT_EQ(std::memcmp(&ha.data()[i], &hb.data()[i], sizeof(float)), 0) << k << "," << i;
    }
  }
  // Each device sent its two chunks once: the whole list, 2(N-1)/N of it for N = 2.
  EXPECT_EQ(stats<G0>().device_to_device_bytes, total * sizeof(float));
  EXPECT_EQ(stats<G1>().device_to_device_bytes, total * sizeof(float));
  EXPECT_LE(stats<G0>().device_to_device_bytes, (ring.bytes_per_replica(total)));
}

TEST(RingAllReduce, OneThreadRunsEveryReplicaAndTheHostTakesPart) {
  // Three replicas, the host among them: each sends 2(N-1)/N = 4/3 of its elements' worth.
  parallel::ring_allreduce<float, C, G0, G1> ring;
  std::vector<Tensor<float, C>> h{host_values({12}, 1, 1)};
  std::vector<Tensor<float, G0>> a{to<G0>(host_values({12}, 10, -1))};
  std::vector<Tensor<float, G1>> b{to<G1>(host_values({12}, 0, 2))};
  reset_stats<G0>();
  ring.run_all({{&h[0]}, {&a[0]}, {&b[0]}}, {1.0f, 1.0f, 1.0f});
  const auto ra = to<C>(a[0]), rb = to<C>(b[0]);
  for (std::size_t i = 0; i < 12; ++i) {
    const float expected = (1.0f + static_cast<float>(i)) + (10.0f - static_cast<float>(i)) +
                           2.0f * static_cast<float>(i);
    EXPECT_FLOAT_EQ(h[0].data()[i], expected);
    EXPECT_FLOAT_EQ(ra.data()[i], expected);
    EXPECT_FLOAT_EQ(rb.data()[i], expected);
  }
  EXPECT_EQ(stats<G0>().device_to_device_bytes, 2 * 2 * 4 * sizeof(float));
}

TEST(RingAllReduce, AnAbortedRingReleasesTheWaitingReplica) {
  parallel::ring_allreduce<float, G0, G1> ring;
  std::vector<Tensor<float, G0>> a{to<G0>(host_values({4}, 0, 1))};
  const auto t0 = std::chrono::steady_clock::now();
  std::thread failing([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ring.abort();  // replica 1 failed before its part
  });
  EXPECT_THROW(ring.run<0>({&a[0]}, 1.0f), parallel::replica_aborted);
  failing.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// ---- Mirrored -------------------------------------------------------------------------------

TEST(Mirrored, ReplicasStayBitwiseEqualAfterAnEpochWithBatchNormAndDropout) {
  const task t = synthetic(256);
  Mirrored<G0, G1> model(small_cnn<G0>(true));
  model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const History h = model.fit(t.x, t.y, {.epochs = 2, .batch_size = 32, .verbose = 0});
  EXPECT_TRUE(bitwise_equal(host_weights(model.replica<0>()), host_weights(model.replica<1>())));
  // It learned (the logs are the global batch's: one history, from replica 0).
  EXPECT_EQ(h.epochs, 2u);
  EXPECT_LT(h.last("loss"), h.history.at("loss").front());
  // The moving statistics were averaged, not left as replica 0's.
  const auto info = model.replica<0>().weight_info();
  bool any_state = false;
  for (const auto& w : info) any_state = any_state || !w.trainable;
  EXPECT_TRUE(any_state);
}

TEST(Mirrored, TwoReplicasOfHalfTheBatchEqualOneDeviceWithTheGlobalBatch) {
  // Issue 11's equivalence: no batch norm, no dropout; 2 replicas x 16 rows against one
  // device x 32 rows, one epoch, the same order of batches.
  const task t = synthetic(192);
  auto single = small_cnn<G0>(false);
  single.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{});
  Mirrored<G0, G1> model(single);  // the same initial weights, compiled alike
  single.fit(to<G0>(t.x), to<G0>(t.y),
             {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
  model.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
  const auto ref = host_weights(single);
  const double d0 = max_relative_difference(host_weights(model.replica<0>()), ref);
  EXPECT_LT(d0, 1e-5);
  EXPECT_TRUE(bitwise_equal(host_weights(model.replica<0>()), host_weights(model.replica<1>())));
  // And the training moved the weights (the comparison is not of initial weights).
  Mirrored<G0, G1> untrained(small_cnn<G0>(false));
  EXPECT_GT(max_relative_difference(host_weights(untrained.replica<0>()), ref), 1e-3);
}

// Conv -> batch norm (synchronized or not) -> pool -> dense.
template <AnyDevice Dev>
Sequential<Dev> normalized_cnn(bool synchronized) {
  BatchNormalization bn;
  bn.synchronized = synchronized;
  Sequential<Dev> m(Input({8, 8, 1}), Conv2D(4, {3, 3}), bn, ReLU(), MaxPooling2D({2, 2}),
                    Flatten(), Dense(10, Activation::softmax));
  m.build(7);
  return m;
}

TEST(Mirrored, SynchronizedBatchNormOnTwoReplicasEqualsOneDeviceAndPerReplicaDoesNot) {
  const task t = synthetic(128);
  const auto train = [&](bool synchronized) {
    auto single = normalized_cnn<G0>(synchronized);
    single.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{});
    auto model = std::make_unique<Mirrored<G0, G1>>(single);
    single.fit(to<G0>(t.x), to<G0>(t.y),
               {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
    model->fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
    EXPECT_TRUE(
        bitwise_equal(host_weights(model->replica<0>()), host_weights(model->replica<1>())));
    // Every weight, the moving statistics included.
    return max_relative_difference(host_weights(model->replica<0>()), host_weights(single));
  };
  // The global batch's statistics: what one device computes with 32 rows.
  const double synchronized = train(true);
  // Each replica's own 16 rows (Keras's default): another model.
  const double per_replica = train(false);
  // After 4 steps the rounding of the two ways of summing, amplified by the normalisation,
  // is ~2e-4; the per-replica statistics are another model by ~4e-2.
  EXPECT_LT(synchronized, 1e-3);
  EXPECT_GT(per_replica, 1e-2);

  // One step's gradients: the global batch's, to float rounding.
  auto single = normalized_cnn<G0>(true);
  single.compile(SGD{}, SparseCategoricalCrossentropy{});
  Mirrored<G0, G1> model(single);
  const auto xb = t.x.slice(0, 32);
  const auto yb = t.y.slice(0, 32);
  auto g = model.value_and_gradient(xb, yb, SparseCategoricalCrossentropy{});
  auto r = single.value_and_gradient(to<G0>(xb), to<G0>(yb), SparseCategoricalCrossentropy{});
  std::vector<Tensor<float, C>> mine, ref;
  for (const auto& x : std::get<1>(g.grads)) mine.push_back(to<C>(x));
  for (const auto& x : r.grads) ref.push_back(to<C>(x));
  // Relative to values of at least 0.05: the conv bias's gradient is zero in theory (the
  // normalisation removes any shift) and ~4e-7 of noise in practice.
  const double d = max_relative_difference(mine, ref, 0.05);
  std::printf("synchronized: epoch %.3g, one step's gradients %.3g; per replica: epoch %.3g\n",
              synchronized, d, per_replica);
  EXPECT_LT(d, 1e-4);
  EXPECT_NEAR(g.loss, to<C>(r.loss).item(), 1e-5);
}

TEST(Mirrored, EachStepSendsTheRingBoundOfTheGradientsAndNothingElseCrossesBetweenDevices) {
  const task t = synthetic(128);
  Mirrored<G0, G1> model(small_cnn<G0>(false));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  reset_stats<G0>();
  reset_stats<G1>();
  model.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .verbose = 0});
  const std::size_t steps = 128 / 32;
  const std::size_t grad_bytes = model.replica<0>().count_params() * sizeof(float);
  // For two replicas 2(N-1)/N = 1: each device sends exactly its gradients' bytes per step.
  EXPECT_EQ(stats<G0>().device_to_device_bytes, steps * grad_bytes);
  EXPECT_EQ(stats<G1>().device_to_device_bytes, steps * grad_bytes);
  EXPECT_EQ(model.allreduce_bytes_per_step(),
            grad_bytes + (grad_bytes / sizeof(float) % 2) * sizeof(float));
}

TEST(Mirrored, TheHeadlineCnnOnTwoDevicesMatchesOneDevice) {
  // examples/headline_cnn_model.hpp's architecture on 28x28 inputs, a few steps.
  auto build = [] {
    Sequential<G0> m(Input({28, 28, 1}), Conv2D(32, {3, 3}, Activation::relu), MaxPooling2D({2, 2}),
                     Flatten(), Dense(10, Activation::softmax));
    m.build(42);
    m.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
    return m;
  };
  Tensor<float, C> x(uninitialized, {128, 28, 28, 1});
  Tensor<std::int32_t, C> y(uninitialized, {128});
  for (std::size_t i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<float>((i * 37) % 101) / 101.0f;
  for (std::size_t i = 0; i < 128; ++i) y.data()[i] = static_cast<std::int32_t>(i % 10);
  auto single = build();
  Mirrored<G0, G1> model(single);
  single.fit(to<G0>(x), to<G0>(y), {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
  model.fit(x, y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
  EXPECT_LT(max_relative_difference(host_weights(model.replica<0>()), host_weights(single)), 1e-4);
  EXPECT_TRUE(bitwise_equal(host_weights(model.replica<0>()), host_weights(model.replica<1>())));
}

TEST(Mirrored, AReplicaThatFailsStopsTheOthersAndFitRethrowsItsError) {
  // A label out of range in rows 48..63: the second global batch's second half, replica 1's
  // share only. Replica 0 must not wait for it forever.
  task t = synthetic(128);
  t.y.data()[50] = 99;
  Mirrored<G0, G1> model(small_cnn<G0>(false));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(model.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0}),
               label_error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  // The replicas can train again afterwards.
  t.y.data()[50] = 1;
  EXPECT_NO_THROW(model.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .verbose = 0}));
  EXPECT_TRUE(bitwise_equal(host_weights(model.replica<0>()), host_weights(model.replica<1>())));
}

TEST(Mirrored, StoppingOnReplicaZeroStopsEveryReplica) {
  struct stop_after_first final : Callback {
    void on_epoch_end(TrainingContext& ctx, std::size_t, const Logs&) override {
      ctx.stop_training();
    }
  };
  const task t = synthetic(64);
  Mirrored<G0, G1> model(small_cnn<G0>(false));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  const History h = model.fit(t.x, t.y,
                              {.epochs = 5,
                               .batch_size = 32,
                               .verbose = 0,
                               .callbacks = {std::make_shared<stop_after_first>()}});
  EXPECT_EQ(h.epochs, 1u);
}

TEST(Mirrored, EvaluateAndPredictSplitTheRowsAndAgreeWithOneDevice) {
  const task t = synthetic(100);
  auto single = small_cnn<G0>(false);
  single.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  Mirrored<G0, G1> model(single);
  const Logs a = model.evaluate(t.x, t.y, 16);
  const Logs b = single.evaluate(to<G0>(t.x), to<G0>(t.y), 16);
  EXPECT_NEAR(a.at("loss"), b.at("loss"), 1e-5);
  EXPECT_NEAR(a.at("accuracy"), b.at("accuracy"), 1e-6);
  const auto p = model.predict(t.x, 16);
  const auto q = to<C>(single.predict(to<G0>(t.x), 16));
  ASSERT_EQ(p.shape(), q.shape());
  for (std::size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p.data()[i], q.data()[i], 1e-6);
}

TEST(Mirrored, ACustomLoopStepMatchesOneDeviceStep) {
  const task t = synthetic(32);
  auto single = small_cnn<G0>(false);
  single.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{});
  Mirrored<G0, G1> model(single);
  auto g = model.value_and_gradient(t.x, t.y, SparseCategoricalCrossentropy{});
  model.apply_gradients(g);
  auto r = single.value_and_gradient(to<G0>(t.x), to<G0>(t.y), SparseCategoricalCrossentropy{});
  single.optimizer().apply_gradients(r.grads, single);
  EXPECT_NEAR(g.loss, to<C>(r.loss).item(), 1e-5);
  EXPECT_LT(max_relative_difference(host_weights(model.replica<1>()), host_weights(single)), 1e-5);
  EXPECT_TRUE(bitwise_equal(host_weights(model.replica<0>()), host_weights(model.replica<1>())));
}

TEST(Mirrored, TheHostAndADeviceTrainTogetherFromADataset) {
  const task t = synthetic(128);
  auto single = small_cnn<C>(false);
  single.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{});
  Mirrored<C, G0> model(single);
  const auto ds = data::Dataset<C>::from_tensors(t.x, t.y).batch(32);
  model.fit(ds, {.epochs = 1, .verbose = 0});
  single.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
  // Two kinds of device: equal up to the kernels' rounding, not bitwise.
  EXPECT_LT(max_relative_difference(host_weights(model.replica<0>()), host_weights(single)), 1e-4);
  EXPECT_LT(max_relative_difference(host_weights(model.replica<1>()), host_weights(single)), 1e-4);
}

TEST(Mirrored, AGlobalBatchSmallerThanTheReplicaCountIsRefused) {
  const task t = synthetic(33);
  Mirrored<G0, G1> model(small_cnn<G0>(false));
  model.compile(SGD{}, SparseCategoricalCrossentropy{});
  // 33 rows in batches of 32: the last global batch has one row for two replicas.
  try {
    model.fit(t.x, t.y, {.epochs = 1, .batch_size = 32, .shuffle = false, .verbose = 0});
    ADD_FAILURE() << "no error";
  } catch (const record_error& e) {  // the pipeline names the record of the batch
    EXPECT_NE(std::string(e.what()).find("has 1 rows, fewer than the 2 replicas"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
