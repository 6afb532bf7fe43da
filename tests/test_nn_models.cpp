// Sequential models, typed over the devices: the same model gives the same results on
// Device<GPU> as on Device<CPU> (and as a float64 reference), optimizers follow Keras 3's
// update rules, fit/evaluate/predict behave as in Keras, errors are typed, and a GPU
// training step makes no transfer that the design does not document.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

using HostF = Tensor<float, CPUDev>;
using HostD = Tensor<double, CPUDev>;
using HostI = Tensor<std::int32_t, CPUDev>;

template <class Dev>
class NnModel : public ::testing::Test {};
TYPED_TEST_SUITE(NnModel, TestDevices, DeviceNames);

// ---- the models ------------------------------------------------------------------------------

/// The small CNN: Conv2D(4, 3x3, relu) -> MaxPooling2D -> Flatten -> Dense(3, softmax).
template <class Dev, class T = float>
Sequential<Dev, T> small_cnn() {
  return Sequential<Dev, T>(Input({8, 8, 1}), Conv2D(4, {3, 3}, Activation::relu),
                            MaxPooling2D({2, 2}), Flatten(), Dense(3, Activation::softmax));
}

/// An MLP with every other kind of layer (batch norm, an activation layer, dropout).
template <class Dev, class T = float>
Sequential<Dev, T> small_mlp() {
  return Sequential<Dev, T>(Input({6}), Dense(8, Activation::tanh), BatchNormalization(),
                            layers::Activation("relu"), Dropout(0.25),
                            Dense(3, Activation::softmax));
}

/// A plain MLP for training tests.
template <class Dev, class T = float>
Sequential<Dev, T> plain_mlp() {
  return Sequential<Dev, T>(Input({4}), Dense(8, Activation::relu), Dense(2, Activation::softmax));
}

/// Every weight of a model, copied to the host.
template <class Dev, class T>
std::vector<Tensor<T, CPUDev>> host_weights(Sequential<Dev, T>& m) {
  std::vector<Tensor<T, CPUDev>> w;
  for (auto& [name, t] : m.weights()) w.push_back(host(*t));
  return w;
}

/// Copies the weights of a float model (any device) into a float64 host model.
template <class Dev>
void copy_weights(Sequential<Dev, float>& from, Sequential<CPUDev, double>& to_model) {
  auto src = from.weights();
  auto dst = to_model.weights();
  ASSERT_EQ(src.size(), dst.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(src[i].first, dst[i].first);
    *dst[i].second = HostD(cast<double>(host(*src[i].second)));
  }
}

/// A learnable two-class problem: class = [x0 + x1 - x2 > 0].
struct Problem {
  HostF x;
  HostI y;
};
Problem separable(std::size_t n, std::uint64_t seed) {
  Problem p{HostF::uniform({n, 4}, seed, -1.f, 1.f), HostI(Shape{n})};
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = p.x.data() + i * 4;
    p.y.data()[i] = r[0] + r[1] - r[2] > 0 ? 1 : 0;
  }
  return p;
}

// Tolerances: device against host in float32, and float32 against the float64 reference.
constexpr double kDevRtol = 2e-5, kDevAtol = 2e-6;
constexpr double kRefRtol = 2e-4, kRefAtol = 2e-5;

// ---- the same model on every device ------------------------------------------------------------

/// Forward, value_and_gradient and one SGD-with-momentum step of the model made by `make`
/// agree between Dev, the host in float32 and the host in float64.
template <class Dev, class L>
void check_agreement(std::function<Sequential<Dev, float>()> make_dev,
                     std::function<Sequential<CPUDev, float>()> make_cpu,
                     std::function<Sequential<CPUDev, double>()> make_ref, const HostF& x,
                     const Tensor<L, CPUDev>& y, const LossConfig& loss) {
  auto m = make_dev();
  auto c = make_cpu();
  auto r = make_ref();
  m.build(42);
  c.build(42);
  r.build(42);
  // Philox-uniform initialisation: element i depends only on (seed, i) on every device.
  const auto wm = host_weights(m), wc = host_weights(c);
  ASSERT_EQ(wm.size(), wc.size());
  for (std::size_t i = 0; i < wm.size(); ++i)
    EXPECT_TRUE(bitwise_equal(wm[i], wc[i])) << "weight " << i;
  // A different seed gives different weights.
  {
    auto other = make_dev();
    other.build(43);
    EXPECT_FALSE(bitwise_equal(host_weights(other)[0], wm[0]));
  }
  copy_weights(m, r);
  const HostD xr = cast<double>(x);
  const auto xd = to<Dev>(x);
  const auto yd = to<Dev>(y);
  const auto yr = [&] {
    if constexpr (std::is_same_v<L, std::int32_t>) {
      return y;
    } else {
      return HostD(cast<double>(y));
    }
  }();

  // Inference.
  const auto out_m = m(xd);
  const auto out_c = c(x);
  const auto out_r = r(xr);
  EXPECT_TRUE(same_values(out_m, out_c, kDevRtol, kDevAtol));
  EXPECT_TRUE(near_ref(out_m, ref(out_r), kRefRtol, kRefAtol));

  // Loss and gradients (training mode: batch statistics, dropout masks).
  auto gm = m.value_and_gradient(xd, yd, loss);
  auto gc = c.value_and_gradient(x, y, loss);
  auto gr = r.value_and_gradient(xr, yr, loss);
  EXPECT_TRUE(same_values(gm.loss, gc.loss, kDevRtol, kDevAtol));
  EXPECT_TRUE(near_ref(gm.loss, ref(gr.loss), kRefRtol, kRefAtol));
  ASSERT_EQ(gm.grads.size(), m.parameters().size());
  ASSERT_EQ(gm.grads.size(), gr.grads.size());
  for (std::size_t i = 0; i < gm.grads.size(); ++i) {
    EXPECT_TRUE(same_values(gm.grads[i], gc.grads[i], kDevRtol, kDevAtol)) << "gradient " << i;
    EXPECT_TRUE(near_ref(gm.grads[i], ref(gr.grads[i]), kRefRtol, kRefAtol)) << "gradient " << i;
  }

  // One optimizer step (SGD with Nesterov momentum: linear in the gradient, so float
  // rounding of tiny gradients cannot flip a step as Adam's sign-like first step could).
  const SGD sgd{.learning_rate = 0.1, .momentum = 0.9, .nesterov = true};
  m.compile(sgd, loss);
  c.compile(sgd, loss);
  r.compile(sgd, loss);
  m.optimizer().apply_gradients(gm.grads, m);
  c.optimizer().apply_gradients(gc.grads, c);
  r.optimizer().apply_gradients(gr.grads, r);
  const auto am = host_weights(m), ac = host_weights(c);
  const auto ar = host_weights(r);
  for (std::size_t i = 0; i < am.size(); ++i) {
    // Includes batch normalisation's moving statistics, updated by the training pass.
    EXPECT_TRUE(same_values(am[i], ac[i], kDevRtol, kDevAtol)) << "weight " << i << " after a step";
    EXPECT_TRUE(near_ref(am[i], ref(ar[i]), kRefRtol, kRefAtol))
        << "weight " << i << " after a step";
  }
  // The step changed the trainable weights.
  EXPECT_FALSE(bitwise_equal(am[0], wm[0]));
}

TYPED_TEST(NnModel, SmallCnnAgreesAcrossDevicesAndWithFloat64) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({5, 8, 8, 1}, 3);
  const HostI y{0, 2, 1, 1, 0};
  check_agreement<Dev>(small_cnn<Dev>, small_cnn<CPUDev>, small_cnn<CPUDev, double>, x, y,
                       SparseCategoricalCrossentropy{});
}

TYPED_TEST(NnModel, MlpAgreesAcrossDevicesAndWithFloat64) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({6, 6}, 4);
  const HostF y{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 0}, {1, 0, 0}, {0, 0, 1}};
  check_agreement<Dev>(small_mlp<Dev>, small_mlp<CPUDev>, small_mlp<CPUDev, double>, x, y,
                       CategoricalCrossentropy{});
}

TYPED_TEST(NnModel, MlpWithLogitsAndBinaryLossAgrees) {
  using Dev = TypeParam;
  const auto make = []<class D, class T>(std::type_identity<D>, std::type_identity<T>) {
    return Sequential<D, T>(Input({3}), Dense(5, Activation::sigmoid), Dense(2));
  };
  const HostF x = random_host<float>({4, 3}, 5);
  const HostF y{{1, 0}, {0, 0}, {1, 1}, {0, 1}};
  check_agreement<Dev>(
      [&] { return make(std::type_identity<Dev>{}, std::type_identity<float>{}); },
      [&] { return make(std::type_identity<CPUDev>{}, std::type_identity<float>{}); },
      [&] { return make(std::type_identity<CPUDev>{}, std::type_identity<double>{}); }, x, y,
      BinaryCrossentropy{.from_logits = true});
}

// ---- optimizers against hand-computed Keras 3 updates -------------------------------------------

const std::vector<double> kP0 = {0.5, -1.0, 2.0, 0.0};
const std::vector<std::vector<double>> kGrads = {
    {0.1, -0.2, 0.3, 0.0}, {0.2, 0.1, -0.4, 0.05}, {-0.3, 0.0, 0.5, 0.1}};

/// The parameter after each step, computed in float64 from Keras 3's update rules.
std::vector<std::vector<double>> reference_steps(const OptimizerConfig& cfg) {
  std::vector<double> p = kP0, a(4, 0.0), b(4, 0.0), c(4, 0.0);
  std::vector<std::vector<double>> out;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    const auto& g = kGrads[t - 1];
    for (std::size_t i = 0; i < 4; ++i) {
      if (const auto* s = std::get_if<SGD>(&cfg)) {
        // m = momentum * m - lr * g; p += m (nesterov: p += momentum * m - lr * g).
        if (s->momentum == 0) {
          p[i] -= s->learning_rate * g[i];
        } else {
          a[i] = s->momentum * a[i] - s->learning_rate * g[i];
          p[i] += s->nesterov ? s->momentum * a[i] - s->learning_rate * g[i] : a[i];
        }
      } else if (const auto* s = std::get_if<Adam>(&cfg)) {
        // m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
        // p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps).
        a[i] += (g[i] - a[i]) * (1 - s->beta_1);
        b[i] += (g[i] * g[i] - b[i]) * (1 - s->beta_2);
        const double alpha = s->learning_rate * std::sqrt(1 - std::pow(s->beta_2, double(t))) /
                             (1 - std::pow(s->beta_1, double(t)));
        p[i] -= alpha * a[i] / (std::sqrt(b[i]) + s->epsilon);
      } else if (const auto* s = std::get_if<RMSprop>(&cfg)) {
        // v = rho v + (1 - rho) g^2; centred: mg = rho mg + (1 - rho) g, v - mg^2;
        // increment = lr g / sqrt(denominator + eps); momentum accumulates increments.
        b[i] = s->rho * b[i] + (1 - s->rho) * g[i] * g[i];
        double denom = b[i];
        if (s->centered) {
          c[i] = s->rho * c[i] + (1 - s->rho) * g[i];
          denom -= c[i] * c[i];
        }
        const double inc = s->learning_rate * g[i] / std::sqrt(denom + s->epsilon);
        if (s->momentum > 0) {
          a[i] = s->momentum * a[i] + inc;
          p[i] -= a[i];
        } else {
          p[i] -= inc;
        }
      }
    }
    out.push_back(p);
  }
  return out;
}

struct OptimizerCase {
  const char* name;
  OptimizerConfig cfg;
};

const std::vector<OptimizerCase>& optimizer_cases() {
  static const std::vector<OptimizerCase> cases = {
      {"SGD", SGD{.learning_rate = 0.1}},
      {"SGD_momentum", SGD{.learning_rate = 0.1, .momentum = 0.9}},
      {"SGD_nesterov", SGD{.learning_rate = 0.1, .momentum = 0.9, .nesterov = true}},
      {"Adam_defaults", Adam{}},
      // A large epsilon tells "sqrt(v) + eps" from "sqrt(v + eps)", and exposes the
      // bias-correction placement.
      {"Adam_large_epsilon",
       Adam{.learning_rate = 0.1, .beta_1 = 0.8, .beta_2 = 0.9, .epsilon = 0.05}},
      {"RMSprop", RMSprop{.learning_rate = 0.01}},
      {"RMSprop_large_epsilon", RMSprop{.learning_rate = 0.1, .rho = 0.8, .epsilon = 0.01}},
      {"RMSprop_momentum", RMSprop{.learning_rate = 0.01, .momentum = 0.5}},
      {"RMSprop_centered",
       RMSprop{.learning_rate = 0.01, .rho = 0.7, .epsilon = 1e-3, .centered = true}},
      {"RMSprop_centered_momentum",
       RMSprop{
           .learning_rate = 0.01, .rho = 0.7, .momentum = 0.3, .epsilon = 1e-3, .centered = true}},
  };
  return cases;
}

TYPED_TEST(NnModel, OptimizersFollowKeras3UpdateRules) {
  using Dev = TypeParam;
  for (const auto& oc : optimizer_cases()) {
    SCOPED_TRACE(oc.name);
    std::vector<float> p0(kP0.begin(), kP0.end());
    nn::Parameter<Dev, float> p{"w", to<Dev>(HostF::from_data({4}, p0.data())), {}};
    Optimizer<Dev, float> opt(oc.cfg);
    const auto want = reference_steps(oc.cfg);
    for (std::size_t t = 0; t < kGrads.size(); ++t) {
      std::vector<float> gv(kGrads[t].begin(), kGrads[t].end());
      const auto g = to<Dev>(HostF::from_data({4}, gv.data()));
      opt.apply({&p}, {&g});
      EXPECT_EQ(opt.iterations(), t + 1);
      Ref r = Ref::from_shape({4});
      for (std::size_t i = 0; i < 4; ++i) r(i) = want[t][i];
      EXPECT_TRUE(near_ref(p.value, r, 1e-5, 1e-6)) << "after step " << t + 1;
    }
  }
}

TYPED_TEST(NnModel, OptimizerStoredGradientsAndErrors) {
  using Dev = TypeParam;
  // apply(params) uses each parameter's own gradient.
  nn::Parameter<Dev, float> p{"w", to<Dev>(HostF{1.f, 2.f}), to<Dev>(HostF{0.5f, -1.f})};
  Optimizer<Dev, float> opt(SGD{.learning_rate = 0.1});
  opt.apply({&p});
  EXPECT_TRUE(near_ref(p.value, Ref{0.95, 2.1}));
  const auto g3 = to<Dev>(HostF{1.f, 2.f, 3.f});
  EXPECT_TRUE(throws_with<shape_error>([&] { opt.apply({&p}, {&g3}); }, "'w'", "[3]", "[2]"));
  EXPECT_TRUE(
      throws_with<argument_error>([&] { opt.apply({&p}, {}); }, "0 gradients for 1 parameters"));
  EXPECT_TRUE(throws_with<argument_error>(
      [] { Optimizer<Dev, float> bad(Adam{.learning_rate = 0}); }, "learning_rate"));
}

// ---- fit --------------------------------------------------------------------------------------

TEST(NnModelCpu, SameSeedSameWeightsAfterAnEpochDifferentSeedsDiffer) {
  const Problem d = separable(40, 7);
  const auto run = [&](std::uint64_t build_seed, std::uint64_t shuffle_seed) {
    auto m = plain_mlp<CPUDev>();
    m.build(build_seed);
    m.compile(Adam{.learning_rate = 0.01}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
    m.fit(d.x, d.y, {.epochs = 1, .batch_size = 8, .verbose = 0, .seed = shuffle_seed});
    return host_weights(m);
  };
  const auto a = run(1, 0), b = run(1, 0), c = run(2, 0), e = run(1, 5);
  ASSERT_EQ(a.size(), 4u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bitwise_equal(a[i], b[i])) << i;
  EXPECT_FALSE(bitwise_equal(a[0], c[0])) << "another build seed";
  EXPECT_FALSE(bitwise_equal(a[0], e[0])) << "another shuffle seed";
}

TYPED_TEST(NnModel, FitReturnsOneHistoryEntryPerEpoch) {
  using Dev = TypeParam;
  const Problem d = separable(24, 8), v = separable(10, 9);
  const auto x = to<Dev>(d.x), vx = to<Dev>(v.x);
  const auto y = to<Dev>(d.y), vy = to<Dev>(v.y);
  auto m = plain_mlp<Dev>();
  m.build(1);
  m.compile(SGD{.learning_rate = 0.05}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  std::ostringstream log;
  const History h = m.fit(
      x, y, {.epochs = 3, .batch_size = 5, .validation_data = {vx, vy}, .verbose = 2, .out = &log});
  EXPECT_EQ(h.epochs, 3u);
  ASSERT_EQ(h.history.size(), 4u);
  for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy"}) {
    ASSERT_TRUE(h.history.count(k)) << k;
    EXPECT_EQ(h.history.at(k).size(), 3u) << k;
    for (double val : h.history.at(k)) EXPECT_TRUE(std::isfinite(val)) << k;
    EXPECT_EQ(h.last(k), h.history.at(k).back());
  }
  for (double a : h.history.at("accuracy")) {
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, 1.0);
  }
  EXPECT_THROW(h.last("mse"), argument_error);
  // The last epoch's validation numbers are evaluate()'s.
  const Logs e = m.evaluate(vx, vy, 5);
  EXPECT_NEAR(e.at("loss"), h.last("val_loss"), 1e-6);
  EXPECT_NEAR(e.at("accuracy"), h.last("val_accuracy"), 1e-6);
  // verbose = 2: one line per epoch, Keras style.
  const std::string s = log.str();
  EXPECT_NE(s.find("Epoch 1/3"), std::string::npos) << s;
  EXPECT_NE(s.find("Epoch 3/3"), std::string::npos) << s;
  EXPECT_NE(s.find("val_loss: "), std::string::npos) << s;
  EXPECT_NE(s.find("5/5"), std::string::npos) << s;  // 24 samples in batches of 5
}

// ---- several metrics ---------------------------------------------------------------------------

TEST(NnMetrics, KerasNamesAndDistinctKeysForRepeatedMetrics) {
  EXPECT_EQ(metric_name(Metric::accuracy), "accuracy");
  EXPECT_EQ(metric_name(Metric::sparse_categorical_accuracy), "sparse_categorical_accuracy");
  EXPECT_EQ(metric_name(Metric::categorical_accuracy), "categorical_accuracy");
  EXPECT_EQ(metric_name(Metric::binary_accuracy), "binary_accuracy");
  // Keras 3 (CompileMetrics.result) suffixes a repeated name with _1, _2, ...
  EXPECT_EQ(metric_keys({Metric::accuracy, Metric::accuracy, Metric::binary_accuracy,
                         Metric::accuracy, Metric::binary_accuracy}),
            (std::vector<std::string>{"accuracy", "accuracy_1", "binary_accuracy", "accuracy_2",
                                      "binary_accuracy_1"}));
  EXPECT_TRUE(metric_keys({}).empty());
}

/// fit (2 epochs, with validation) and evaluate of plain_mlp with the given metrics; the
/// same seeds every time, so runs differ only in what they measure.
template <class Dev, class L>
struct MetricRun {
  History h;
  Logs eval;
  std::string log;
};
template <class Dev, class L>
MetricRun<Dev, L> run_with_metrics(const LossConfig& loss, std::vector<Metric> metrics,
                                   const Tensor<L, CPUDev>& y, const Tensor<L, CPUDev>& vy) {
  const Problem d = separable(24, 30), v = separable(10, 31);
  const auto x = to<Dev>(d.x), vx = to<Dev>(v.x);
  const auto yd = to<Dev>(y), vyd = to<Dev>(vy);
  auto m = plain_mlp<Dev>();
  m.build(4);
  m.compile(SGD{.learning_rate = 0.1}, loss, std::move(metrics));
  std::ostringstream log;
  MetricRun<Dev, L> r;
  r.h = m.fit(
      x, yd,
      {.epochs = 2, .batch_size = 5, .validation_data = {vx, vyd}, .verbose = 2, .out = &log});
  r.eval = m.evaluate(vx, vyd, 4);
  r.log = log.str();
  return r;
}

TYPED_TEST(NnModel, SeveralMetricsEachHaveTheirOwnKeyAndValue) {
  using Dev = TypeParam;
  const Problem d = separable(24, 30), v = separable(10, 31);
  const auto one =
      run_with_metrics<Dev>(SparseCategoricalCrossentropy{}, {Metric::accuracy}, d.y, v.y);
  const auto two = run_with_metrics<Dev>(SparseCategoricalCrossentropy{},
                                         {Metric::accuracy, Metric::accuracy}, d.y, v.y);
  const auto mixed =
      run_with_metrics<Dev>(SparseCategoricalCrossentropy{},
                            {Metric::sparse_categorical_accuracy, Metric::accuracy}, d.y, v.y);
  const std::vector<double>& want = one.h.history.at("accuracy");
  const std::vector<double>& want_val = one.h.history.at("val_accuracy");
  for (double a : want) {
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, 1.0);
  }
  // The same metric twice: "accuracy" and "accuracy_1", each the single-metric value.
  ASSERT_EQ(two.h.history.size(), 6u);
  for (const char* k : {"accuracy", "accuracy_1"}) {
    ASSERT_TRUE(two.h.history.count(k)) << k;
    EXPECT_EQ(two.h.history.at(k), want) << k;
    EXPECT_EQ(two.h.history.at(std::string("val_") + k), want_val) << k;
    EXPECT_EQ(two.eval.at(k), one.eval.at("accuracy")) << k;
  }
  EXPECT_EQ(two.h.history.at("loss"), one.h.history.at("loss"));
  EXPECT_EQ(two.eval.size(), 3u);
  // Two names for the same quantity: both keys, equal values.
  for (const char* k : {"accuracy", "sparse_categorical_accuracy"}) {
    ASSERT_TRUE(mixed.h.history.count(k)) << k;
    EXPECT_EQ(mixed.h.history.at(k), want) << k;
    EXPECT_EQ(mixed.h.history.at(std::string("val_") + k), want_val) << k;
    EXPECT_EQ(mixed.eval.at(k), one.eval.at("accuracy")) << k;
  }
  // The epoch line shows every metric, training and validation.
  for (const char* part : {"- accuracy: ", "- accuracy_1: ", "- val_accuracy: ",
                           "- val_accuracy_1: ", "- loss: ", "- val_loss: "}) {
    EXPECT_NE(two.log.find(part), std::string::npos) << part << " in\n" << two.log;
  }
  EXPECT_NE(mixed.log.find("- sparse_categorical_accuracy: "), std::string::npos) << mixed.log;

  // Float one-hot targets: categorical_accuracy and the "accuracy" it resolves to agree;
  // binary_accuracy (per element) has its own key and accumulator.
  const auto onehot = [](const HostI& labels) {
    HostF t = HostF::zeros({labels.size(), 2});
    for (std::size_t i = 0; i < labels.size(); ++i) {
      t.data()[i * 2 + static_cast<std::size_t>(labels.data()[i])] = 1;
    }
    return t;
  };
  const auto cat = run_with_metrics<Dev>(
      CategoricalCrossentropy{},
      {Metric::categorical_accuracy, Metric::accuracy, Metric::binary_accuracy}, onehot(d.y),
      onehot(v.y));
  ASSERT_EQ(cat.h.history.size(), 8u);
  EXPECT_EQ(cat.h.history.at("categorical_accuracy"), cat.h.history.at("accuracy"));
  EXPECT_EQ(cat.eval.at("categorical_accuracy"), cat.eval.at("accuracy"));
  for (const char* k : {"categorical_accuracy", "accuracy", "binary_accuracy"}) {
    for (double a : cat.h.history.at(k)) {
      EXPECT_GE(a, 0.0) << k;
      EXPECT_LE(a, 1.0) << k;
    }
    EXPECT_NE(cat.log.find(std::string("- ") + k + ": "), std::string::npos) << k << cat.log;
  }
  // With softmax over two classes, the arg-max and the 0.5 threshold agree except at ties.
  EXPECT_NEAR(cat.eval.at("binary_accuracy"), cat.eval.at("accuracy"), 1e-6);
}

TYPED_TEST(NnModel, LossDecreasesOnALearnableProblem) {
  using Dev = TypeParam;
  const Problem d = separable(64, 10);
  auto m = plain_mlp<Dev>();
  m.build(3);
  m.compile(Adam{.learning_rate = 0.05}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = to<Dev>(d.x);
  const auto y = to<Dev>(d.y);
  const History h = m.fit(x, y, {.epochs = 15, .batch_size = 16, .verbose = 0});
  const auto& loss = h.history.at("loss");
  EXPECT_LT(loss.back(), 0.5 * loss.front());
  EXPECT_GT(h.last("accuracy"), 0.9);
  EXPECT_GT(m.evaluate(x, y).at("accuracy"), 0.9);
}

TYPED_TEST(NnModel, MseRegressionTrains) {
  using Dev = TypeParam;
  // y = x . [1, -2, 0.5, 0] + 0.3, learnable exactly by a linear layer.
  HostF x = random_host<float>({32, 4}, 11), y(Shape{32, 1});
  for (std::size_t i = 0; i < 32; ++i) {
    const float* r = x.data() + i * 4;
    y.data()[i] = r[0] - 2 * r[1] + 0.5f * r[2] + 0.3f;
  }
  Sequential<Dev> m(Input({4}), Dense(1));
  m.build(0);
  m.compile(SGD{.learning_rate = 0.1, .momentum = 0.5}, MeanSquaredError{});
  const History h = m.fit(to<Dev>(x), to<Dev>(y), {.epochs = 20, .batch_size = 8, .verbose = 0});
  EXPECT_EQ(h.history.count("accuracy"), 0u);  // no metric asked for
  EXPECT_LT(h.last("loss"), 0.01 * h.history.at("loss").front());
}

// ---- evaluate and predict -----------------------------------------------------------------------

TYPED_TEST(NnModel, EvaluateIsTheFullBatchMean) {
  using Dev = TypeParam;
  const HostF xh = random_host<float>({20, 8, 8, 1}, 12);
  const HostI yh{0, 1, 2, 0, 1, 2, 2, 2, 1, 0, 0, 1, 2, 1, 1, 0, 2, 2, 0, 1};
  auto m = small_cnn<Dev>();
  m.build(5);
  m.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = to<Dev>(xh);
  const auto y = to<Dev>(yh);
  // The whole batch at once, on the host.
  const auto out = host(m(x));
  double want_loss = 0, want_acc = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    const float* r = out.data() + i * 3;
    want_loss -= std::log(static_cast<double>(r[yh.data()[i]]));
    const std::size_t best = static_cast<std::size_t>(std::max_element(r, r + 3) - r);
    want_acc += best == static_cast<std::size_t>(yh.data()[i]) ? 1 : 0;
  }
  want_loss /= 20;
  want_acc /= 20;
  for (std::size_t bs : {1u, 3u, 7u, 20u, 1000u}) {
    const Logs l = m.evaluate(x, y, bs);
    EXPECT_NEAR(l.at("loss"), want_loss, 1e-5 * want_loss) << "batch size " << bs;
    EXPECT_NEAR(l.at("accuracy"), want_acc, 1e-6) << "batch size " << bs;
  }
  // With batches of 7 (7, 7, 6), the mean of per-batch losses weighted by batch size.
  double weighted = 0;
  for (std::size_t s = 0; s < 20; s += 7) {
    const std::size_t e = std::min<std::size_t>(20, s + 7);
    const auto lb =
        m.value_and_gradient(x.slice(s, e), y.slice(s, e), SparseCategoricalCrossentropy{});
    weighted += static_cast<double>(host(lb.loss).item()) * static_cast<double>(e - s);
  }
  EXPECT_NEAR(m.evaluate(x, y, 7).at("loss"), weighted / 20, 1e-5 * want_loss);
}

TYPED_TEST(NnModel, PredictIsBatchSizeIndependent) {
  using Dev = TypeParam;
  auto m = small_cnn<Dev>();
  m.build(6);
  const auto x = to<Dev>(random_host<float>({23, 8, 8, 1}, 13));
  const auto whole = m(x);
  ASSERT_EQ(to_string(whole.shape()), "[23, 3]");
  for (std::size_t bs : {1u, 7u, 1000u}) {
    const auto p = m.predict(x, bs);
    EXPECT_TRUE(bitwise_equal(p, whole)) << "batch size " << bs;
  }
  EXPECT_THROW(m.predict(x, 0), argument_error);
}

// ---- callbacks ----------------------------------------------------------------------------------

TEST(NnEarlyStopping, PatienceAsInKeras) {
  // Keras: stop when `patience` epochs in a row have not improved (wait >= patience).
  const auto stop_epoch = [](std::size_t patience, const std::vector<double>& values,
                             double min_delta = 0) {
    EarlyStopping es({.monitor = "loss", .min_delta = min_delta, .patience = patience});
    es.reset();
    for (std::size_t e = 0; e < values.size(); ++e) {
      if (es.observe(e, {{"loss", values[e]}})) {
        EXPECT_EQ(es.stopped_epoch(), static_cast<long>(e));
        return static_cast<long>(e);
      }
    }
    EXPECT_EQ(es.stopped_epoch(), -1);
    return -1L;
  };
  const std::vector<double> worse = {1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99};
  EXPECT_EQ(stop_epoch(0, worse), 2);
  EXPECT_EQ(stop_epoch(1, worse), 2);
  EXPECT_EQ(stop_epoch(2, worse), 3);
  EXPECT_EQ(stop_epoch(3, worse), 4);
  EXPECT_EQ(stop_epoch(10, worse), -1);
  // An improvement resets the count.
  EXPECT_EQ(stop_epoch(2, {1.0, 1.1, 0.8, 0.9, 0.95}), 4);
  // min_delta: improvements smaller than it do not count.
  EXPECT_EQ(stop_epoch(1, {1.0, 0.95, 0.9}, 0.1), 1);
  // Constant loss with patience 3: Keras's own docstring says "Only 4 epochs are run".
  EXPECT_EQ(stop_epoch(3, {5, 5, 5, 5, 5, 5, 5, 5, 5, 5}) + 1, 4);
}

TEST(NnEarlyStopping, AccuracyIsMaximisedAndMissingMonitorThrows) {
  EarlyStopping es({.monitor = "val_accuracy", .patience = 0});
  es.reset();
  EXPECT_FALSE(es.observe(0, {{"val_accuracy", 0.5}}));
  EXPECT_FALSE(es.observe(1, {{"val_accuracy", 0.6}}));
  EXPECT_TRUE(es.improved());
  EXPECT_TRUE(es.observe(2, {{"val_accuracy", 0.55}}));
  EXPECT_EQ(es.best_epoch(), 1u);
  EXPECT_DOUBLE_EQ(es.best(), 0.6);
  EarlyStopping missing;  // monitors val_loss
  missing.reset();
  EXPECT_THROW(missing.observe(0, {{"loss", 1.0}}), argument_error);
}

/// Stops after a given epoch and records what it saw.
struct StopAfter final : Callback {
  explicit StopAfter(std::size_t e) : at(e) {}
  void on_train_begin(TrainingContext&) override { ++begun; }
  void on_epoch_end(TrainingContext& ctx, std::size_t epoch, const Logs& logs) override {
    seen.push_back(epoch);
    EXPECT_TRUE(logs.count("loss"));
    if (epoch == at) ctx.stop_training();
  }
  std::size_t at, begun = 0;
  std::vector<std::size_t> seen;
};

TYPED_TEST(NnModel, CallbackStopsTraining) {
  using Dev = TypeParam;
  const Problem d = separable(16, 14);
  auto m = plain_mlp<Dev>();
  m.build(1);
  m.compile(SGD{}, SparseCategoricalCrossentropy{});
  auto cb = std::make_shared<StopAfter>(1);
  const History h =
      m.fit(to<Dev>(d.x), to<Dev>(d.y), {.epochs = 10, .verbose = 0, .callbacks = {cb}});
  EXPECT_EQ(h.epochs, 2u);
  EXPECT_EQ(h.history.at("loss").size(), 2u);
  EXPECT_EQ(cb->begun, 1u);
  EXPECT_EQ(cb->seen, (std::vector<std::size_t>{0, 1}));
}

TYPED_TEST(NnModel, EarlyStoppingRestoresBestWeights) {
  using Dev = TypeParam;
  // Training labels are all class 0 and validation labels all class 1: every epoch of
  // training makes the validation loss worse, so the first epoch is the best.
  const HostF xh = random_host<float>({16, 4}, 15);
  const auto x = to<Dev>(xh);
  const auto y = to<Dev>(HostI(Shape{16}));  // zeros
  const auto vy = to<Dev>(HostI::full({16}, 1));
  const auto train = [&](std::size_t epochs, std::vector<std::shared_ptr<Callback>> cbs) {
    auto m = plain_mlp<Dev>();
    m.build(2);
    m.compile(SGD{.learning_rate = 0.05}, SparseCategoricalCrossentropy{});
    const History h = m.fit(x, y,
                            {.epochs = epochs,
                             .batch_size = 4,
                             .validation_data = {x, vy},
                             .verbose = 0,
                             .callbacks = std::move(cbs)});
    return std::make_pair(h, host_weights(m));
  };
  const auto [h1, after_first] = train(1, {});
  auto es = std::make_shared<EarlyStopping>(
      EarlyStoppingOptions{.patience = 2, .restore_best_weights = true});
  const auto [h, restored] = train(10, {es});
  const auto& vl = h.history.at("val_loss");
  for (std::size_t e = 1; e < vl.size(); ++e)
    ASSERT_GT(vl[e], vl[e - 1]) << "the set-up must worsen";
  EXPECT_EQ(h.epochs, 3u);  // epochs 1 and 2 did not improve: patience 2 is used up
  EXPECT_EQ(es->stopped_epoch(), 2);
  EXPECT_EQ(es->best_epoch(), 0u);
  for (std::size_t i = 0; i < restored.size(); ++i)
    EXPECT_TRUE(bitwise_equal(restored[i], after_first[i])) << i;
  // Without restore_best_weights the last weights stay.
  auto keep = std::make_shared<EarlyStopping>(EarlyStoppingOptions{.patience = 2});
  const auto [hk, last] = train(10, {keep});
  EXPECT_EQ(hk.epochs, 3u);
  EXPECT_FALSE(bitwise_equal(last[0], after_first[0]));
}

// ---- summary
// -------------------------------------------------------------------------------------

TYPED_TEST(NnModel, SummaryOfTheReadmeCnn) {
  using Dev = TypeParam;
  Sequential<Dev> model(Input({28, 28, 1}), Conv2D(32, {3, 3}, Activation::relu),
                        MaxPooling2D({2, 2}), Flatten(), Dense(10, Activation::softmax));
  EXPECT_THROW(model.summary(), argument_error);
  model.build(42);
  const std::string s = model.summary();
  for (const char* part :
       {"conv2d (Conv2D)", "(None, 26, 26, 32)", "320", "max_pooling2d (MaxPooling2D)",
        "(None, 13, 13, 32)", "flatten (Flatten)", "(None, 5408)", "dense (Dense)", "(None, 10)",
        "54,090", "Total params: 54,410", "Trainable params: 54,410", "Non-trainable params: 0"}) {
    EXPECT_NE(s.find(part), std::string::npos) << "missing \"" << part << "\" in\n" << s;
  }
  EXPECT_NE(s.find(device_name<Dev>()), std::string::npos) << s;
  EXPECT_EQ(model.count_params(), 54410u);
  EXPECT_EQ(to_string(model.output_shape()), "[10]");
}

TYPED_TEST(NnModel, LayerNamesAreUniqueAndBatchNormStateIsCounted) {
  using Dev = TypeParam;
  Sequential<Dev> m(Input({4}), Dense(3), BatchNormalization(), Dense(2), Dense(2));
  m.build(0);
  EXPECT_EQ(m.layer(0).name, "dense");
  EXPECT_EQ(m.layer(1).name, "batch_normalization");
  EXPECT_EQ(m.layer(2).name, "dense_1");
  EXPECT_EQ(m.layer(3).name, "dense_2");
  const std::string s = m.summary();
  // 15 + 6 + 8 + 6 trainable, 6 moving statistics.
  EXPECT_NE(s.find("Total params: 41"), std::string::npos) << s;
  EXPECT_NE(s.find("Trainable params: 35"), std::string::npos) << s;
  EXPECT_NE(s.find("Non-trainable params: 6"), std::string::npos) << s;
  std::vector<std::string> names;
  for (auto& [n, t] : m.weights()) names.push_back(n);
  EXPECT_EQ(names,
            (std::vector<std::string>{"dense/kernel", "dense/bias", "batch_normalization/gamma",
                                      "batch_normalization/beta", "batch_normalization/moving_mean",
                                      "batch_normalization/moving_variance", "dense_1/kernel",
                                      "dense_1/bias", "dense_2/kernel", "dense_2/bias"}));
}

// ---- errors
// ---------------------------------------------------------------------------------------

TYPED_TEST(NnModel, TypedErrors) {
  using Dev = TypeParam;
  const Problem d = separable(10, 16);
  const auto x = to<Dev>(d.x);
  const auto y = to<Dev>(d.y);
  {
    auto m = plain_mlp<Dev>();
    EXPECT_TRUE(throws_with<argument_error>([&] { m.fit(x, y, {.verbose = 0}); }, "compile()"));
    EXPECT_TRUE(throws_with<argument_error>([&] { m.evaluate(x, y); }, "compile()"));
  }
  auto m = plain_mlp<Dev>();
  m.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  // Input shape: the message names both shapes.
  const auto wrong = to<Dev>(random_host<float>({10, 5}, 1));
  EXPECT_TRUE(
      throws_with<shape_error>([&] { m.fit(wrong, y, {.verbose = 0}); }, "[10, 5]", "[N, 4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { m(wrong); }, "[10, 5]", "[N, 4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { m.predict(wrong); }, "[10, 5]", "[N, 4]"));
  const auto rank3 = to<Dev>(random_host<float>({10, 4, 1}, 1));
  EXPECT_TRUE(throws_with<shape_error>([&] { m.evaluate(rank3, y); }, "[10, 4, 1]", "[N, 4]"));
  // Label count.
  const auto y9 = y.slice(0, 9);
  EXPECT_TRUE(throws_with<shape_error>([&] { m.fit(x, y9, {.verbose = 0}); }, "10 samples", "[9]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { m.evaluate(x, y9); }, "10 samples", "[9]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] { m.value_and_gradient(x, y9, SparseCategoricalCrossentropy{}); }, "9 labels",
      "[10, 2]"));
  // Label type against the loss. With a loss type, value_and_gradient does not compile
  // (tests/compile_fail/model_value_and_gradient_*_labels_*.cpp); the loss of compile() and
  // a LossConfig are run-time values, checked at run time, before any step.
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { m.value_and_gradient(x, y, LossConfig{MeanSquaredError{}}); }, "value_and_gradient",
      "mean_squared_error", "float targets", "int32 class indices"));
  const auto yf = to<Dev>(HostF::zeros({10, 2}));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { m.value_and_gradient(x, yf, LossConfig{SparseCategoricalCrossentropy{}}); },
      "sparse_categorical_crossentropy", "int32 class labels"));
  {
    const auto before = host_weights(m);
    EXPECT_TRUE(throws_with<argument_error>([&] { m.fit(x, yf, {.verbose = 0}); }, "fit",
                                            "sparse_categorical_crossentropy", "int32"));
    const auto after = host_weights(m);
    for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(bitwise_equal(before[i], after[i]));
  }
  EXPECT_TRUE(throws_with<argument_error>([&] { m.evaluate(x, yf); }, "evaluate",
                                          "sparse_categorical_crossentropy"));
  // Metrics against the labels, before any step too.
  {
    auto mc = plain_mlp<Dev>();
    mc.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::categorical_accuracy});
    mc.build(1);
    const auto before = host_weights(mc);
    EXPECT_TRUE(throws_with<argument_error>([&] { mc.fit(x, y, {.verbose = 0}); },
                                            "categorical_accuracy", "float targets"));
    const auto after = host_weights(mc);
    for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(bitwise_equal(before[i], after[i]));
  }
  // Target shape for the dense losses.
  const auto yf3 = to<Dev>(HostF::zeros({10, 3}));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] { m.value_and_gradient(x, yf3, CategoricalCrossentropy{}); }, "[10, 3]", "[10, 2]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { m.value_and_gradient(x, yf3, MeanSquaredError{}); },
                                       "[10, 3]"));
  // Batch size.
  EXPECT_TRUE(throws_with<argument_error>([&] { m.fit(x, y, {.batch_size = 0, .verbose = 0}); },
                                          "batch_size"));
  // Model structure.
  EXPECT_TRUE(throws_with<argument_error>([&] { m.add(Dense(3)); }, "after build"));
  Sequential<Dev> empty;
  EXPECT_THROW(empty.build(Shape{3}), argument_error);
  EXPECT_THROW(empty.build(), argument_error);
  EXPECT_TRUE(throws_with<argument_error>([] { Sequential<Dev> late(Dense(2), Input({3})); },
                                          "Input must come first"));
  EXPECT_TRUE(throws_with<argument_error>([] { Sequential<Dev> bad(Dense(2, "mish")); },
                                          "unknown activation 'mish'"));
  EXPECT_TRUE(throws_with<argument_error>([] { Sequential<Dev> bad(Dropout(1.0)); }, "rate"));
  Sequential<Dev> conv(Input({2, 2, 1}), Conv2D(1, {3, 3}));
  EXPECT_TRUE(throws_with<shape_error>([&] { conv.build(); }, "does not fit"));
  Sequential<Dev> flat_conv(Input({4}), Conv2D(1, {1, 1}));
  EXPECT_TRUE(throws_with<shape_error>([&] { flat_conv.build(); }, "[height, width, channels]"));
}

// Sparse labels outside [0, classes) raise label_error, as Keras does on the CPU, on every
// device; on a device the check costs no read per step (see the transfer tests below).
TYPED_TEST(NnModel, OutOfRangeSparseLabelsRaiseLabelError) {
  using Dev = TypeParam;
  const Problem d = separable(12, 40), v = separable(6, 41);
  const auto x = to<Dev>(d.x), vx = to<Dev>(v.x);
  const auto y = to<Dev>(d.y), vy = to<Dev>(v.y);
  HostI bad_h = d.y, neg_h = d.y, both_h = d.y;
  bad_h.data()[7] = 2;  // two classes: 2 is one too many
  neg_h.data()[3] = -1;
  both_h.data()[0] = 5;
  both_h.data()[9] = -3;
  both_h.data()[10] = 4;
  const auto bad = to<Dev>(bad_h), neg = to<Dev>(neg_h), both = to<Dev>(both_h);
  auto m = plain_mlp<Dev>();
  m.build(1);
  m.compile(SGD{.learning_rate = 0.1}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto w0 = host_weights(m);
  const auto unchanged = [&] {
    const auto w = host_weights(m);
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (!bitwise_equal(w[i], w0[i])) return ::testing::AssertionFailure() << "weight " << i;
    }
    return ::testing::AssertionSuccess();
  };

  // fit: training or validation labels, checked before the first step.
  EXPECT_TRUE(throws_with<label_error>([&] { m.fit(x, bad, {.epochs = 2, .verbose = 0}); },
                                       "locus::Model::fit", "label 2 is outside", "[0, 2)",
                                       "2 classes"));
  EXPECT_TRUE(unchanged());
  EXPECT_TRUE(throws_with<label_error>([&] { m.fit(x, neg, {.verbose = 0}); }, "label -1"));
  EXPECT_TRUE(throws_with<label_error>(
      [&] {
        m.fit(x, y, {.validation_data = {vx, to<Dev>(HostI{0, 1, 1, 7, 0, 1})}, .verbose = 0});
      },
      "validation labels", "label 7"));
  EXPECT_TRUE(unchanged());
  try {
    m.fit(x, both, {.verbose = 0});
    ADD_FAILURE() << "no label_error";
  } catch (const label_error& e) {
    // The smallest negative and the largest too-large label, the same on every device.
    EXPECT_NE(std::string(e.what()).find("labels -3 and 5 are outside the valid range [0, 2)"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(e.label(), -3);
    EXPECT_EQ(e.classes(), 2u);
    const argument_error& base = e;  // a label_error is an argument_error
    EXPECT_NE(std::string(base.what()).find("[0, 2)"), std::string::npos);
  }
  EXPECT_TRUE(unchanged());

  // evaluate.
  EXPECT_TRUE(throws_with<label_error>([&] { m.evaluate(x, bad, 5); }, "locus::Model::evaluate",
                                       "label 2", "[0, 2)"));
  EXPECT_TRUE(throws_with<label_error>(
      [&] {
        m.evaluate(vx, to<Dev>(HostI{0, 1, -4, 0, 1, 1}));
      },
      "label -4"));

  // value_and_gradient: at once on the host; on a device at the next synchronisation point
  // (check_labels, fit or evaluate), because raising in the call would cost a read per step.
  if constexpr (HostDevice<Dev>) {
    EXPECT_TRUE(throws_with<label_error>(
        [&] { m.value_and_gradient(x, bad, SparseCategoricalCrossentropy{}); },
        "locus::Model::value_and_gradient", "label 2", "[0, 2)"));
    EXPECT_TRUE(throws_with<label_error>(
        [&] { m.value_and_gradient(x, neg, LossConfig{SparseCategoricalCrossentropy{}}); },
        "label -1"));
  } else {
    auto r = m.value_and_gradient(x, bad, SparseCategoricalCrossentropy{});
    EXPECT_EQ(r.grads.size(), 4u);
    EXPECT_TRUE(throws_with<label_error>([&] { m.check_labels(); },
                                         "locus::Model::value_and_gradient", "label 2", "[0, 2)"));
    EXPECT_NO_THROW(m.check_labels());  // the record was cleared
    r = m.value_and_gradient(x, neg, SparseCategoricalCrossentropy{});
    // A later fit reports it before its first step, and names where it came from.
    EXPECT_TRUE(throws_with<label_error>([&] { m.fit(x, y, {.verbose = 0}); },
                                         "value_and_gradient (an earlier call", "label -1"));
    EXPECT_NO_THROW(m.check_labels());
    r = m.value_and_gradient(x, bad, SparseCategoricalCrossentropy{});
    EXPECT_TRUE(throws_with<label_error>([&] { m.evaluate(x, y); },
                                         "value_and_gradient (an earlier call, found by "
                                         "locus::Model::evaluate)",
                                         "label 2"));
    // Both at once: evaluate's own labels first, the earlier call's at the next check.
    r = m.value_and_gradient(x, neg, SparseCategoricalCrossentropy{});
    EXPECT_TRUE(
        throws_with<label_error>([&] { m.evaluate(x, bad); }, "locus::Model::evaluate: label 2"));
    EXPECT_TRUE(throws_with<label_error>([&] { m.check_labels(); }, "label -1"));
  }
  EXPECT_NO_THROW(m.check_labels());
  EXPECT_TRUE(unchanged());

  // The model is still usable: good labels train and evaluate as before.
  const History h = m.fit(x, y, {.epochs = 1, .validation_data = {vx, vy}, .verbose = 0});
  EXPECT_TRUE(std::isfinite(h.last("loss")));
  EXPECT_TRUE(std::isfinite(m.evaluate(x, y).at("loss")));
  EXPECT_FALSE(unchanged());
}

// nn::compute_loss on its own raises too (on a device it reads the record back at once);
// given a status it only records, on the device.
TYPED_TEST(NnModel, SparseLossOnItsOwnRaisesLabelError) {
  using Dev = TypeParam;
  const auto out = to<Dev>(HostF{{0.2f, 0.8f}, {0.6f, 0.4f}, {0.5f, 0.5f}});
  const auto good = to<Dev>(HostI{1, 0, 1});
  const auto bad = to<Dev>(HostI{1, 2, 1});
  EXPECT_NO_THROW(nn::compute_loss(SparseCategoricalCrossentropy{}, out, good));
  EXPECT_TRUE(
      throws_with<label_error>([&] { nn::compute_loss(SparseCategoricalCrossentropy{}, out, bad); },
                               "sparse_categorical_crossentropy", "label 2", "[0, 2)"));
  if constexpr (!HostDevice<Dev>) {
    auto status = nn::new_label_status<Dev>();
    reset_stats<Dev>();
    const auto lv = nn::compute_loss(SparseCategoricalCrossentropy{}, out, bad, &status);
    EXPECT_EQ(stats<Dev>().transfer_calls(), 0u);
    EXPECT_TRUE(same_values(status, HostI{0, 2}, 0, 0));
    // The bad row adds nothing: the loss is that of the good rows over all three.
    EXPECT_NEAR(host(lv.value).item(), -(std::log(0.8) + std::log(0.5)) / 3, 1e-6);
    EXPECT_TRUE(throws_with<label_error>([&] { nn::raise_label_status(status, 2, "here"); },
                                         "here: label 2"));
    EXPECT_TRUE(same_values(status, HostI{0, 0}, 0, 0));  // cleared
  }
}

TYPED_TEST(NnModel, BuildsAtFirstCallWithoutInput) {
  using Dev = TypeParam;
  Sequential<Dev> m(Dense(3, Activation::relu), Dense(2));
  EXPECT_FALSE(m.built());
  const auto out = m(to<Dev>(random_host<float>({5, 7}, 2)));
  EXPECT_TRUE(m.built());
  EXPECT_EQ(to_string(out.shape()), "[5, 2]");
  EXPECT_EQ(to_string(m.input_shape()), "[7]");
  EXPECT_EQ(m.count_params(), 7u * 3 + 3 + 3 * 2 + 2);
}

TYPED_TEST(NnModel, AcceptsModelsBoundToItsDevice) {
  using Dev = TypeParam;
  // A model bound to this device nests, with its weights (tests/compile_fail/
  // model_add_cpu_model.cpp: one of another device does not compile).
  Sequential<Dev> inner(Input({3}), Dense(4, Activation::relu), Dense(2));
  inner.build(5);
  Sequential<Dev> m(Input({3}));
  m.add(inner);
  m.add(Dense(1));
  m.build(1);
  EXPECT_EQ(m.layer(0).name, "sequential");
  EXPECT_EQ(m.layer(1).name, "dense");
  EXPECT_EQ(m.count_params(), 3u * 4 + 4 + 4 * 2 + 2 + 2 + 1);
  const auto x = to<Dev>(random_host<float>({2, 3}, 1));
  EXPECT_EQ(to_string(m(x).shape()), "[2, 1]");
  const auto wi = inner.weights();
  const auto wm = m.weights();
  ASSERT_EQ(wm.size(), wi.size() + 2);
  for (std::size_t i = 0; i < wi.size(); ++i) {
    EXPECT_EQ(wm[i].first, "sequential/" + wi[i].first);
    EXPECT_TRUE(bitwise_equal(*wm[i].second, *wi[i].second)) << wm[i].first;
  }
}

// ---- transfers
// ------------------------------------------------------------------------------------

TYPED_TEST(NnModel, TrainingStepMakesNoTransfers) {
  using Dev = TypeParam;
  const Problem d = separable(16, 17);
  const auto x = to<Dev>(d.x);
  const auto y = to<Dev>(d.y);
  Sequential<Dev> m(Input({4}), Dense(8, Activation::relu), BatchNormalization(), Dropout(0.2),
                    Dense(2, Activation::softmax));
  m.build(1);
  m.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  auto r = m.value_and_gradient(x, y, SparseCategoricalCrossentropy{});  // warm-up
  m.optimizer().apply_gradients(r.grads, m);
  reset_stats<Dev>();
  for (int i = 0; i < 3; ++i) {
    r = m.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
    m.optimizer().apply_gradients(r.grads, m);
  }
  EXPECT_EQ(m.predict(x, 5).size(), 32u);  // inference too
  const transfer_stats s = stats<Dev>();
  EXPECT_EQ(s.host_to_device_calls, 0u);
  EXPECT_EQ(s.device_to_host_calls, 0u);
  EXPECT_EQ(s.device_to_device_calls, 0u);
  if constexpr (!HostDevice<Dev>) {
    EXPECT_GT(s.kernel_launches, 0u);
  }
}

// sequential.hpp: fit checks the range of sparse labels (training and validation) with one
// read of 6 int32 before its first step; a training epoch uploads the shuffle permutation
// once and reads the sums (loss and every metric, packed into one small vector) once per
// evaluation of the logs: once for the training epoch and once for the validation pass.
// evaluate reads its sums and the label records of the one-hot kernel in one read.
TYPED_TEST(NnModel, FitAndEvaluateMakeOnlyTheDocumentedTransfers) {
  using Dev = TypeParam;
  constexpr bool gpu = !HostDevice<Dev>;
  const Problem d = separable(20, 18), v = separable(6, 19);
  const auto x = to<Dev>(d.x), vx = to<Dev>(v.x);
  const auto y = to<Dev>(d.y), vy = to<Dev>(v.y);
  auto m = plain_mlp<Dev>();
  m.build(1);
  m.compile(SGD{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  std::ostringstream log;

  reset_stats<Dev>();
  m.fit(x, y,
        {.epochs = 2, .batch_size = 8, .validation_data = {vx, vy}, .verbose = 1, .out = &log});
  transfer_stats s = stats<Dev>();
  EXPECT_EQ(s.host_to_device_calls, gpu ? 2u : 0u);           // one permutation per epoch
  EXPECT_EQ(s.host_to_device_bytes, gpu ? 2u * 20 * 4 : 0u);  // 20 int32 indices
  // The label check, then per epoch the training sums and the validation sums.
  EXPECT_EQ(s.device_to_host_calls, gpu ? 1u + 2u * (1 + 1) : 0u);
  EXPECT_EQ(s.device_to_host_bytes, gpu ? 6u * 4 + 2u * (2 + 2) * 4 : 0u);  // loss + accuracy
  EXPECT_EQ(s.device_to_device_calls, 0u);

  reset_stats<Dev>();
  m.fit(x, y, {.epochs = 3, .batch_size = 8, .shuffle = false, .verbose = 0});
  s = stats<Dev>();
  EXPECT_EQ(s.host_to_device_calls, 0u);
  EXPECT_EQ(s.device_to_host_calls, gpu ? 1u + 3u : 0u);

  reset_stats<Dev>();
  m.evaluate(x, y, 3);
  s = stats<Dev>();
  EXPECT_EQ(s.host_to_device_calls, 0u);
  EXPECT_EQ(s.device_to_host_calls, gpu ? 1u : 0u);
  // The loss, accuracy, and two label records (evaluate's own and the custom loop's).
  EXPECT_EQ(s.device_to_host_bytes, gpu ? (2u + 2u + 2u) * 4 : 0u);

  // Three metrics cost no more reads than one: the sums travel together.
  m.compile(SGD{}, SparseCategoricalCrossentropy{},
            {Metric::accuracy, Metric::accuracy, Metric::sparse_categorical_accuracy});
  reset_stats<Dev>();
  m.fit(x, y, {.epochs = 2, .batch_size = 8, .validation_data = {vx, vy}, .verbose = 0});
  s = stats<Dev>();
  EXPECT_EQ(s.device_to_host_calls, gpu ? 1u + 2u * (1 + 1) : 0u);
  EXPECT_EQ(s.device_to_host_bytes, gpu ? 6u * 4 + 2u * (4 + 4) * 4 : 0u);
  reset_stats<Dev>();
  m.evaluate(x, y, 3);
  EXPECT_EQ(stats<Dev>().device_to_host_calls, gpu ? 1u : 0u);

  // Without a metric only the loss sum is read (and the label check).
  m.compile(SGD{}, SparseCategoricalCrossentropy{});
  reset_stats<Dev>();
  m.fit(x, y, {.epochs = 1, .batch_size = 8, .verbose = 0});
  s = stats<Dev>();
  EXPECT_EQ(s.host_to_device_calls, gpu ? 1u : 0u);
  EXPECT_EQ(s.device_to_host_calls, gpu ? 1u + 1u : 0u);

  // Float targets need no label check.
  Sequential<Dev> reg(Input({4}), Dense(1));
  reg.build(0);
  reg.compile(SGD{}, MeanSquaredError{});
  const auto t = to<Dev>(random_host<float>({20, 1}, 20));
  reset_stats<Dev>();
  reg.fit(x, t, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
  EXPECT_EQ(stats<Dev>().device_to_host_calls, gpu ? 2u : 0u);
}

// Out-of-range labels in a custom loop cost no transfer on a device either: the record
// stays there until check_labels() (one read) or the next fit/evaluate.
TYPED_TEST(NnModel, LabelCheckOfACustomLoopMakesNoTransfers) {
  using Dev = TypeParam;
  constexpr bool gpu = !HostDevice<Dev>;
  const Problem d = separable(16, 21);
  HostI bad_h = d.y;
  bad_h.data()[5] = 9;
  const auto x = to<Dev>(d.x);
  const auto y = to<Dev>(d.y);
  const auto bad = to<Dev>(bad_h);
  auto m = plain_mlp<Dev>();
  m.build(1);
  Optimizer<Dev> opt(SGD{});
  auto r = m.value_and_gradient(x, y, SparseCategoricalCrossentropy{});  // warm-up
  reset_stats<Dev>();
  for (int i = 0; i < 3; ++i) {
    r = m.value_and_gradient(x, y, SparseCategoricalCrossentropy{});
    opt.apply_gradients(r.grads, m);
  }
  EXPECT_EQ(stats<Dev>().transfer_calls(), 0u);
  EXPECT_NO_THROW(m.check_labels());
  EXPECT_EQ(stats<Dev>().device_to_host_calls, gpu ? 1u : 0u);
  if constexpr (gpu) {
    reset_stats<Dev>();
    r = m.value_and_gradient(x, bad, SparseCategoricalCrossentropy{});
    opt.apply_gradients(r.grads, m);
    EXPECT_EQ(stats<Dev>().transfer_calls(), 0u);
    EXPECT_TRUE(throws_with<label_error>([&] { m.check_labels(); }, "label 9", "[0, 2)"));
    EXPECT_EQ(stats<Dev>().device_to_host_calls, 1u);
  }
}

}  // namespace
