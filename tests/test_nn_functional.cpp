// The functional API and the bound model: device-neutral descriptions (names, Keras
// configurations and their round trip), several inputs and outputs, shared layers with
// accumulated gradients, nested models, locus::to<Dev>(model), const thread-safe
// inference and the memory an inference-only model uses.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gradient_check.hpp"
#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;
using nn::SymbolicTensor;

using HostF = Tensor<float, CPUDev>;
using HostD = Tensor<double, CPUDev>;
using HostI = Tensor<std::int32_t, CPUDev>;

template <class Dev>
class NnFunctional : public ::testing::Test {};
TYPED_TEST_SUITE(NnFunctional, TestDevices, DeviceNames);

/// Two inputs, two outputs, a shared layer and a merge: out1 = softmax(Dense(d(a) + d(b))),
/// out2 = d(b) (the shared Dense d applied to both inputs).
Functional two_tower() {
  const Input a({5}, "left"), b({5}, "right");
  Dense d(4, Activation::tanh);
  const SymbolicTensor da = d(a), db = d(b);
  // Sum through a Dense of two inputs is not a Keras layer; concatenate by Flatten of a
  // stacked tensor is not either: use the average of the two through Activation layers.
  const SymbolicTensor s = layers::Activation("linear")(da);
  const SymbolicTensor out1 = Dense(3, Activation::softmax).named("head")(s);
  return Functional({a, b}, {out1, db}, "two_tower");
}

// ---- the description ----------------------------------------------------------------------------

TEST(NnFunctionalGraph, NamesOrderAndSharedLayers) {
  const Functional f = two_tower();
  std::vector<std::string> names;
  for (const auto& l : f.layers()) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"left", "right", "dense", "activation", "head"}));
  EXPECT_EQ(f.layers()[2].calls, 2u);  // the shared Dense
  EXPECT_EQ(f.inputs().size(), 2u);
  EXPECT_EQ(f.outputs().size(), 2u);
  EXPECT_EQ(to_string(f.output_shapes()[0]), "[3]");
  EXPECT_EQ(to_string(f.output_shapes()[1]), "[4]");
  EXPECT_EQ(f.model_name(), "two_tower");
}

TEST(NnFunctionalGraph, AutomaticNamesFollowKeras) {
  EXPECT_EQ(nn::snake_case("Conv2D"), "conv2d");
  EXPECT_EQ(nn::snake_case("MaxPooling2D"), "max_pooling2d");
  EXPECT_EQ(nn::snake_case("BatchNormalization"), "batch_normalization");
  EXPECT_EQ(nn::snake_case("GlobalAveragePooling2D"), "global_average_pooling2d");
  EXPECT_EQ(nn::snake_case("DepthwiseConv2D"), "depthwise_conv2d");
  EXPECT_EQ(nn::snake_case("ReLU"), "re_lu");
  const Input x({3});
  // A user's name is kept and skipped by the automatic names.
  const auto y = Dense(2)(Dense(2).named("dense_1")(Dense(2)(x)));
  const Functional f(x, y);
  EXPECT_EQ(f.layers()[1].name, "dense");
  EXPECT_EQ(f.layers()[2].name, "dense_1");
  EXPECT_EQ(f.layers()[3].name, "dense_2");
}

TEST(NnFunctionalGraph, TypedErrors) {
  const Input x({3}), other({3});
  const auto y = Dense(2)(x);
  EXPECT_TRUE(
      throws_with<config_error>([&] { Functional(other, y); }, "not among the model's inputs"));
  EXPECT_TRUE(throws_with<config_error>([&] { Functional(y, y); }, "must be a locus::Input"));
  EXPECT_TRUE(
      throws_with<config_error>([&] { Functional(x, Dense(2).named("a")(Dense(2).named("a")(x))); },
                                "two layers are named 'a'"));
  // A shared layer must be called on inputs that fit its weights.
  Dense d(2);
  d(x);
  EXPECT_TRUE(throws_with<shape_error>([&] { d(Input({4})); }, "shares its weights", "[3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { Conv2D(2, 3)(x); }, "Conv2D",
                                       "[height, width, channels]", "[3]"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        Dense(2)(std::vector<SymbolicTensor>{x, x});
      },
      "2 inputs", "takes 1"));
}

TEST(NnFunctionalGraph, ConfigRoundTripRebuildsTheSameModel) {
  for (const Functional& f :
       {two_tower(), [] {
          const Input x({6, 6, 2});
          auto h = Conv2D(3, {3, 3}, Activation::relu, {1, 1}, Padding::same)(x);
          h = BatchNormalization(0.9, 1e-2)(h);
          h = MaxPooling2D({2, 2})(h);
          h = Dropout(0.25)(Flatten()(h));
          return Functional(x, Dense(3, "softmax")(h), "cnn");
        }()}) {
    const nn::Config cfg = f.config();
    const Functional g =
        nn::model_from_config(nn::Config::make({{"class_name", "Functional"}, {"config", cfg}}));
    EXPECT_EQ(g.config().dump(), cfg.dump());
    // Same description, same seed: the same weights and outputs.
    Model<CPUDev> a(f, 3), b(g, 3);
    std::vector<HostF> xs;
    for (const auto& s : f.input_shapes())
      xs.push_back(random_host<float>(nn::with_batch(2, s), 4));
    const auto ya = a(xs), yb = b(xs);
    ASSERT_EQ(ya.size(), yb.size());
    for (std::size_t i = 0; i < ya.size(); ++i) EXPECT_TRUE(bitwise_equal(ya[i], yb[i]));
  }
}

TEST(NnFunctionalGraph, SequentialConfigRoundTrip) {
  Sequential<CPUDev> m(Input({8, 8, 1}), Conv2D(4, 3, "relu"), MaxPooling2D(), Flatten(),
                       Dense(3, "softmax"));
  m.build(1);
  const nn::Config cfg = m.get_config();
  EXPECT_EQ(m.description().class_name(), "Sequential");
  const Functional g =
      nn::model_from_config(nn::Config::make({{"class_name", "Sequential"}, {"config", cfg}}));
  EXPECT_EQ(g.class_name(), "Sequential");
  EXPECT_EQ(g.config().dump(), cfg.dump());
  Model<CPUDev> r(g, 1);
  const HostF x = random_host<float>({3, 8, 8, 1}, 2);
  EXPECT_TRUE(bitwise_equal(m(x), r(x)));
}

TEST(NnFunctionalGraph, UnknownLayersAndBadConfigsAreTypedErrors) {
  using nn::Config;
  const Config lstm = Config::make(
      {{"class_name", "Sequential"},
       {"config",
        Config::make(
            {{"name", "s"},
             {"layers",
              Config::list(
                  {Config::make({{"class_name", "InputLayer"},
                                 {"config",
                                  Config::make({{"batch_shape", Config::list({nullptr, 3, 4})}})}}),
                   Config::make(
                       {{"class_name", "LSTM"},
                        {"config", Config::make({{"name", "lstm"}, {"units", 8}})}})})}})}});
  EXPECT_TRUE(throws_with<config_error>([&] { nn::model_from_config(lstm); }, "LSTM", "'lstm'",
                                        "not supported"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv2D::from_config(Config::make({{"filters", 2},
                                          {"kernel_size", 3},
                                          {"activation", "relu"},
                                          {"data_format", "channels_first"}}));
      },
      "channels_first"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Dense::from_config(Config::make({{"units", 0}, {"activation", "relu"}}));
      },
      "units must be positive"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        Dense::from_config(Config::make({{"units", 2}, {"activation", "nope"}}));
      },
      "unknown activation 'nope'"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        nn::model_from_config(
            Config::make({{"class_name", "Dense"}, {"config", Config::object{}}}));
      },
      "not a model class"));
}

// ---- several inputs and outputs, shared layers -------------------------------------------------

TYPED_TEST(NnFunctional, SeveralInputsAndOutputsAgreeWithFloat64) {
  using Dev = TypeParam;
  const Functional f = two_tower();
  Model<Dev> m(f, 11);
  Model<CPUDev, double> r(f, 11);
  auto rw = r.weights();
  auto mw = m.weights();
  ASSERT_EQ(rw.size(), mw.size());
  for (std::size_t i = 0; i < rw.size(); ++i)
    *rw[i].second = HostD(cast<double>(host(*mw[i].second)));
  const HostF a = random_host<float>({4, 5}, 1), b = random_host<float>({4, 5}, 2);
  const auto y = m(std::vector<Tensor<float, Dev>>{to<Dev>(a), to<Dev>(b)});
  const auto yr = r(std::vector<HostD>{cast<double>(a), cast<double>(b)});
  ASSERT_EQ(y.size(), 2u);
  EXPECT_TRUE(near_ref(y[0], ref(yr[0]), 2e-5, 2e-6));
  EXPECT_TRUE(near_ref(y[1], ref(yr[1]), 2e-5, 2e-6));
  // predict in batches gives the same.
  const auto p = m.predict(std::vector<Tensor<float, Dev>>{to<Dev>(a), to<Dev>(b)}, 3);
  EXPECT_TRUE(same_values(p[0], y[0]));
  EXPECT_TRUE(same_values(p[1], y[1]));
  // A shared layer has one set of weights.
  EXPECT_EQ(m.count_params(), 5u * 4 + 4 + 4 * 3 + 3);
}

TEST(NnFunctionalGradient, SharedLayerAccumulatesTheGradientsOfEveryCall) {
  using namespace locus_test::grad;
  const Functional f = two_tower();
  Model<D, double> m(f, 5);
  std::vector<Tn> xs{Tn::uniform({3, 5}, 1, -1.0, 1.0), Tn::uniform({3, 5}, 2, -1.0, 1.0)};
  const Tn w0 = Tn::uniform({3, 3}, 3, -1.0, 1.0), w1 = Tn::uniform({3, 4}, 4, -1.0, 1.0);
  const auto r = m.vjp(xs, {w0, w1});
  const auto loss = [&] {
    const auto y = m(xs);
    return project(w0, y[0]) + project(w1, y[1]);
  };
  auto params = m.parameters();
  ASSERT_EQ(params.size(), 4u);
  for (std::size_t j = 0; j < params.size(); ++j)
    EXPECT_TRUE(grad_close(values(r.param_grads[j]), numeric_grad(params[j]->value, loss),
                           params[j]->name));
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_TRUE(grad_close(values(r.input_grads[i]), numeric_grad(xs[i], loss),
                           "input " + std::to_string(i)));
}

TEST(NnFunctionalGradient, NestedModelsAndATensorReadTwice) {
  using namespace locus_test::grad;
  // inner: x -> Dense(3, tanh) -> Dense(3); outer: y = inner(x) feeds two heads, and the
  // inner model is applied twice (to x and to its own output): shared weights again.
  const Input ix({3});
  const Functional inner(ix, Dense(3)(Dense(3, Activation::tanh)(ix)), "inner");
  const Input x({3});
  const auto h = inner(x);
  const auto h2 = inner(h);
  const auto a = Dense(2, Activation::sigmoid)(h2);
  const auto b = Dense(2)(h2);
  const Functional outer({x}, {a, b, h});
  Model<D, double> m(outer, 9);
  std::vector<std::string> names;
  for (const auto& [n, t] : m.weights()) names.push_back(n);
  EXPECT_EQ(names,
            (std::vector<std::string>{"inner/dense/kernel", "inner/dense/bias",
                                      "inner/dense_1/kernel", "inner/dense_1/bias", "dense/kernel",
                                      "dense/bias", "dense_1/kernel", "dense_1/bias"}));
  std::vector<Tn> xs{Tn::uniform({4, 3}, 1, -1.0, 1.0)};
  const Tn w0 = Tn::uniform({4, 2}, 2, -1.0, 1.0), w1 = Tn::uniform({4, 2}, 3, -1.0, 1.0),
           w2 = Tn::uniform({4, 3}, 4, -1.0, 1.0);
  const auto r = m.vjp(xs, {w0, w1, w2});
  const auto loss = [&] {
    const auto y = m(xs);
    return project(w0, y[0]) + project(w1, y[1]) + project(w2, y[2]);
  };
  auto params = m.parameters();
  for (std::size_t j = 0; j < params.size(); ++j)
    EXPECT_TRUE(grad_close(values(r.param_grads[j]), numeric_grad(params[j]->value, loss),
                           params[j]->name));
  EXPECT_TRUE(grad_close(values(r.input_grads[0]), numeric_grad(xs[0], loss), "input"));
}

TYPED_TEST(NnFunctional, FunctionalModelsTrainWithFit) {
  using Dev = TypeParam;
  // A residual MLP: y = softmax(Dense(x + Dense(relu)(x)))... written with a shared layer
  // instead of Add (x -> d -> d): two calls of one Dense.
  const Input x({4});
  Dense d(4, Activation::tanh);
  const Functional f(x, Dense(2, "softmax")(d(d(x))));
  Model<Dev> m(f, 2);
  m.compile(Adam{.learning_rate = 0.05}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  HostF xh = random_host<float>({64, 4}, 3);
  HostI yh(Shape{64});
  for (std::size_t i = 0; i < 64; ++i)
    yh.data()[i] = xh.data()[i * 4] + xh.data()[i * 4 + 1] > 0 ? 1 : 0;
  const auto h = m.fit(to<Dev>(xh), to<Dev>(yh), {.epochs = 30, .batch_size = 16, .verbose = 0});
  EXPECT_LT(h.history.at("loss").back(), h.history.at("loss").front());
  EXPECT_GT(h.last("accuracy"), 0.85);
}

// ---- to<Dev>(model)
// -------------------------------------------------------------------------------

TYPED_TEST(NnFunctional, ToAnotherDeviceCopiesEveryWeightOnceAndCountsIt) {
  using Dev = TypeParam;
  using Other = OtherDev<Dev>;
  Sequential<Dev> m(Input({6}), Dense(8, Activation::tanh), BatchNormalization(),
                    Dense(3, Activation::softmax));
  m.build(3);
  std::size_t bytes = 0;
  for (const auto& [n, t] : m.weights()) bytes += t->size() * sizeof(float);
  const auto src_before = stats<Dev>(), dst_before = stats<Other>();
  Sequential<Other> c = to<Other>(m);
  const auto src_after = stats<Dev>(), dst_after = stats<Other>();
  const std::size_t n = m.weights().size();
  if constexpr (HostDevice<Dev>) {
    EXPECT_EQ(dst_after.host_to_device_calls - dst_before.host_to_device_calls, n);
    EXPECT_EQ(dst_after.host_to_device_bytes - dst_before.host_to_device_bytes, bytes);
  } else {
    EXPECT_EQ(src_after.device_to_host_calls - src_before.device_to_host_calls, n);
    EXPECT_EQ(src_after.device_to_host_bytes - src_before.device_to_host_bytes, bytes);
  }
  const auto wm = m.weights(), wc = c.weights();
  ASSERT_EQ(wm.size(), wc.size());
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(wm[i].first, wc[i].first);
    EXPECT_TRUE(bitwise_equal(*wm[i].second, *wc[i].second)) << wm[i].first;
  }
  const HostF x = random_host<float>({5, 6}, 4);
  EXPECT_TRUE(same_values(m(to<Dev>(x)), c(to<Other>(x)), 2e-5, 2e-6));
  EXPECT_EQ(c.get_config().dump(), m.get_config().dump());
  // The copy is a model of its own: training it leaves the original alone.
  c.compile(SGD{}, SparseCategoricalCrossentropy{});
  c.fit(to<Other>(x), to<Other>(HostI{0, 1, 2, 0, 1}), {.verbose = 0});
  EXPECT_FALSE(bitwise_equal(*m.weights()[0].second, *c.weights()[0].second));
}

TYPED_TEST(NnFunctional, ToAnotherDeviceWithTheOptimizerResumesTraining) {
  using Dev = TypeParam;
  using Other = OtherDev<Dev>;
  const HostF xh = random_host<float>({16, 4}, 8);
  const HostI yh{0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0};
  Sequential<Dev> m(Input({4}), Dense(6, Activation::relu), Dense(2, Activation::softmax));
  m.build(4);
  m.compile(Adam{.learning_rate = 0.01}, SparseCategoricalCrossentropy{});
  m.fit(to<Dev>(xh), to<Dev>(yh), {.epochs = 3, .batch_size = 4, .shuffle = false, .verbose = 0});
  Sequential<Other> c = to<Other>(m, {.optimizer = true});
  ASSERT_TRUE(c.compiled());
  EXPECT_EQ(c.optimizer().iterations(), m.optimizer().iterations());
  EXPECT_EQ(c.optimizer().slotted_parameters(), m.optimizer().slotted_parameters());
  m.fit(to<Dev>(xh), to<Dev>(yh), {.epochs = 1, .batch_size = 4, .shuffle = false, .verbose = 0});
  c.fit(to<Other>(xh), to<Other>(yh),
        {.epochs = 1, .batch_size = 4, .shuffle = false, .verbose = 0});
  const auto wm = m.weights(), wc = c.weights();
  for (std::size_t i = 0; i < wm.size(); ++i)
    EXPECT_TRUE(same_values(*wm[i].second, *wc[i].second, 1e-4, 1e-5));
  // Without the optimizer the copy is not compiled.
  EXPECT_FALSE(to<Other>(m).compiled());
}

// ---- what an inference-only model holds ----------------------------------------------------

TEST(NnFunctionalMemory, AnInferenceOnlyModelHoldsOnlyItsWeights) {
  using G = Device<GPU>;
  release_cached_memory<G>();
  const auto base = memory_info<G>();
  {
    Sequential<G> m(Input({16}), Dense(64, Activation::relu), BatchNormalization(),
                    Dense(10, Activation::softmax));
    m.build(1);
    std::size_t weights = 0;
    for (const auto& [n, t] : m.weights())
      weights += backend::opencl::memory_pool::size_class(t->size() * sizeof(float));
    EXPECT_EQ(memory_info<G>().in_use - base.in_use, weights);
    const auto x = to<G>(random_host<float>({32, 16}, 1));
    const auto y = m.predict(x, 8);
    synchronize<G>();
    const std::size_t io = backend::opencl::memory_pool::size_class(x.size() * sizeof(float)) +
                           backend::opencl::memory_pool::size_class(y.size() * sizeof(float));
    // After predict: the weights, the input and the output; no gradient, no optimizer slot,
    // no activation left behind.
    EXPECT_EQ(memory_info<G>().in_use - base.in_use, weights + io);
    for (const auto* p : std::as_const(m).parameters()) EXPECT_EQ(p->grad.size(), 0u) << p->name;
    // Training allocates gradients and (after a step) slots: the difference is visible.
    m.compile(Adam{}, SparseCategoricalCrossentropy{});
    m.fit(x, to<G>(HostI::zeros({32})), {.verbose = 0});
    EXPECT_GT(memory_info<G>().in_use - base.in_use, weights + io);
  }
  EXPECT_EQ(memory_info<G>().in_use, base.in_use);
}

}  // namespace
