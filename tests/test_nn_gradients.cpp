// Finite-difference gradient checks of every layer and every loss, in float64 on the host.
//
// Single layers are checked inside one-layer models with a random projection
// L = sum(w * y) as the scalar loss (gradient_check.hpp): Model::vjp must return dL/dx and
// dL/dp. Losses are checked directly (value against gradient) and through whole models
// with value_and_gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <locus/locus.hpp>

#include "gradient_check.hpp"

namespace {

using namespace locus;
using namespace locus_test::grad;
using T = double;
using Labels = Tensor<std::int32_t, D>;

// ---- Dense ------------------------------------------------------------------------------

class DenseGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(DenseGradient, InputAndParameters) {
  check_layer(Dense(5, GetParam()), {3, 4}, {5});
}

TEST_P(DenseGradient, OverLastAxisOfRank3Input) {
  check_layer(Dense(3, GetParam()), {2, 2, 4}, {2, 3}, 2);
}

INSTANTIATE_TEST_SUITE_P(AllActivations, DenseGradient,
                         ::testing::Values(Activation::linear, Activation::relu,
                                           Activation::sigmoid, Activation::tanh,
                                           Activation::softmax),
                         [](const auto& info) { return to_string(info.param); });

TEST(LayerGradient, DenseWithoutBias) {
  EXPECT_EQ(
      one_layer_model(Dense(4, Activation::tanh, /*bias=*/false), {{2, 3}}).parameters().size(),
      1u);
  check_layer(Dense(4, Activation::tanh, false), {2, 3}, {4});
}

// ---- Conv2D ------------------------------------------------------------------------------

struct ConvCase {
  std::string name;
  Padding padding;
  std::size_t stride;
  Window kernel;
  Activation act;
  Shape in, out;
};

void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name;
}

class Conv2DGradient : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2DGradient, InputAndParameters) {
  const ConvCase& c = GetParam();
  Conv2D spec(2, c.kernel, c.act, {c.stride, c.stride}, c.padding);
  check_layer(spec, c.in, c.out);
}

// Input [2, 5, 6, 3]: odd and even extents, so 'same' padding is asymmetric on one axis.
INSTANTIATE_TEST_SUITE_P(
    PaddingsAndStrides, Conv2DGradient,
    ::testing::Values(
        ConvCase{
            "valid_s1", Padding::valid, 1, {3, 3}, Activation::linear, {2, 5, 6, 3}, {3, 4, 2}},
        ConvCase{"same_s1", Padding::same, 1, {3, 3}, Activation::tanh, {2, 5, 6, 3}, {5, 6, 2}},
        ConvCase{"valid_s2", Padding::valid, 2, {3, 3}, Activation::relu, {2, 5, 6, 3}, {2, 2, 2}},
        ConvCase{"same_s2", Padding::same, 2, {3, 3}, Activation::sigmoid, {2, 5, 6, 3}, {3, 3, 2}},
        ConvCase{"same_s2_kernel2x3",
                 Padding::same,
                 2,
                 {2, 3},
                 Activation::linear,
                 {2, 5, 6, 3},
                 {3, 3, 2}},
        ConvCase{"valid_s1_kernel1x2",
                 Padding::valid,
                 1,
                 {1, 2},
                 Activation::softmax,
                 {1, 3, 4, 2},
                 {3, 3, 2}}),
    [](const auto& info) { return info.param.name; });

// ---- pooling -----------------------------------------------------------------------------

struct PoolCase {
  std::string name;
  bool max;
  Window pool, strides;
  Padding padding;
  Shape in, out;
};

void PrintTo(const PoolCase& c, std::ostream* os) {
  *os << c.name;
}

class PoolingGradient : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolingGradient, Input) {
  const PoolCase& c = GetParam();
  // Random inputs: ties within a window (where max pooling is not differentiable) have
  // probability zero.
  if (c.max) {
    check_layer(MaxPooling2D(c.pool, c.strides, c.padding), c.in, c.out, 3);
  } else {
    check_layer(AveragePooling2D(c.pool, c.strides, c.padding), c.in, c.out, 3);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Windows, PoolingGradient,
    ::testing::Values(
        PoolCase{"max_valid", true, {2, 2}, {0, 0}, Padding::valid, {2, 4, 5, 2}, {2, 2, 2}},
        PoolCase{"max_same", true, {2, 2}, {0, 0}, Padding::same, {2, 5, 5, 2}, {3, 3, 2}},
        PoolCase{"max_overlapping", true, {3, 3}, {1, 1}, Padding::valid, {1, 5, 4, 2}, {3, 2, 2}},
        PoolCase{
            "max_same_overlapping", true, {3, 2}, {2, 1}, Padding::same, {1, 5, 4, 2}, {3, 4, 2}},
        PoolCase{"avg_valid", false, {2, 2}, {0, 0}, Padding::valid, {2, 4, 5, 2}, {2, 2, 2}},
        PoolCase{"avg_same", false, {2, 2}, {0, 0}, Padding::same, {2, 5, 5, 2}, {3, 3, 2}},
        PoolCase{"avg_overlapping", false, {3, 3}, {1, 1}, Padding::valid, {1, 5, 4, 2}, {3, 2, 2}},
        PoolCase{
            "avg_same_overlapping", false, {3, 2}, {2, 1}, Padding::same, {1, 5, 4, 2}, {3, 4, 2}}),
    [](const auto& info) { return info.param.name; });

// ---- layers without kernels ----------------------------------------------------------------

TEST(LayerGradient, Flatten) {
  check_layer(Flatten(), {2, 3, 2, 2}, {12});
}

class ActivationLayerGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationLayerGradient, Input) {
  check_layer(layers::Activation(GetParam()), {3, 5}, {5});
}

INSTANTIATE_TEST_SUITE_P(AllActivations, ActivationLayerGradient,
                         ::testing::Values(Activation::linear, Activation::relu,
                                           Activation::sigmoid, Activation::tanh,
                                           Activation::softmax),
                         [](const auto& info) { return to_string(info.param); });

TEST(LayerGradient, DropoutBackwardIsMaskTimesDy) {
  const double rate = 0.4;
  auto m = one_layer_model(Dropout(rate), {{4, 50}});
  const Tn x = Tn::uniform({4, 50}, 9, 0.5, 1.5);  // never zero: the mask is y / x
  const Tn dy = Tn::uniform({4, 50}, 10, -1.0, 1.0);
  const auto r = m.vjp({x}, {dy});
  const Tn& y = r.outputs[0];
  const Tn& dx = r.input_grads[0];
  std::size_t dropped = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double mask = y.data()[i] / x.data()[i];
    if (mask == 0.0) {
      ++dropped;
    } else {
      EXPECT_NEAR(mask, 1.0 / (1.0 - rate), 1e-12) << i;
    }
    EXPECT_NEAR(dx.data()[i], mask * dy.data()[i], 1e-12) << i;
  }
  // 200 Bernoulli(0.4) draws: 80 expected, standard deviation ~7.
  EXPECT_GT(dropped, 40u);
  EXPECT_LT(dropped, 120u);
  // Inference: the identity.
  const Tn yi = m(x);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(yi.data()[i], x.data()[i]);
}

TEST(LayerGradient, DropoutFixedMask) {
  // Every evaluation replays training step 0: the same mask.
  check_layer(Dropout(0.3), {3, 8}, {8});
}

TEST(LayerGradient, DropoutMaskChangesBetweenSteps) {
  auto m = one_layer_model(Dropout(0.5), {{1, 64}});
  const Tn x = Tn::ones({1, 64});
  const Tn a = m(x, true), b = m(x, true);
  EXPECT_NE(values(a), values(b));
  // Replaying a step replays its mask.
  m.set_training_step(0);
  EXPECT_EQ(values(m(x, true)), values(a));
}

TEST(LayerGradient, BatchNormalizationTraining2D) {
  check_layer(BatchNormalization(), {5, 3}, {3});
}

TEST(LayerGradient, BatchNormalizationTraining4D) {
  // Statistics over N, H and W per channel (the last axis).
  check_layer(BatchNormalization(0.9, 1e-2), {2, 3, 2, 2}, {3, 2, 2}, 4);
}

TEST(LayerGradient, BatchNormalizationWithNonTrivialGammaBeta) {
  // gamma = 1 and beta = 0 at initialisation hide terms scaled by gamma; perturb them.
  auto m = one_layer_model(BatchNormalization(), {{4, 3}});
  auto ps = m.parameters();
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0]->name, "batch_normalization/gamma");
  EXPECT_EQ(ps[1]->name, "batch_normalization/beta");
  ps[0]->value = Tn{0.5, -1.5, 2.0};
  ps[1]->value = Tn{0.1, 0.2, -0.3};
  Tn x = Tn::uniform({4, 3}, 21, -2.0, 2.0);
  const Tn w = Tn::uniform({4, 3}, 22, -1.0, 1.0);
  const auto r = m.vjp({x}, {w});
  const auto loss = [&]() { return project(w, m(x, true)); };
  EXPECT_TRUE(
      grad_close(values(r.input_grads[0]), numeric_grad(x, loss), "BatchNormalization dL/dx"));
  EXPECT_TRUE(grad_close(values(r.param_grads[0]), numeric_grad(ps[0]->value, loss),
                         "BatchNormalization dL/dgamma"));
  EXPECT_TRUE(grad_close(values(r.param_grads[1]), numeric_grad(ps[1]->value, loss),
                         "BatchNormalization dL/dbeta"));
}

TEST(LayerGradient, BatchNormalizationWithoutCenterOrScale) {
  BatchNormalization b;
  b.center = false;
  check_layer(b, {5, 3}, {3});
  BatchNormalization c;
  c.scale = false;
  check_layer(c, {5, 3}, {3});
}

// ---- losses, directly ------------------------------------------------------------------------

template <class Loss, class Y>
void check_loss(const Loss& loss, Tn out, const Y& y, const std::string& what) {
  const auto lv = nn::compute_loss(loss, out, y);
  ASSERT_EQ(lv.value.rank(), 0u) << what;
  ASSERT_EQ(to_string(lv.grad.shape()), to_string(out.shape())) << what;
  const auto f = [&]() { return nn::compute_loss(loss, out, y).value.item(); };
  EXPECT_TRUE(std::isfinite(f())) << what;
  EXPECT_TRUE(grad_close(values(lv.grad), numeric_grad(out, f), what));
}

/// Rows of positive values summing to one.
Tn probabilities(const Shape& s, std::uint64_t seed) {
  Tn p = Tn::uniform(s, seed, 0.1, 1.0);
  const std::size_t c = s[s.rank() - 1];
  for (std::size_t r = 0; r < p.size() / c; ++r) {
    double t = 0;
    for (std::size_t j = 0; j < c; ++j) t += p.data()[r * c + j];
    for (std::size_t j = 0; j < c; ++j) p.data()[r * c + j] /= t;
  }
  return p;
}

TEST(LossGradient, SparseCategoricalCrossentropy) {
  const Labels y{2, 0, 1, 2};
  check_loss(SparseCategoricalCrossentropy{}, probabilities({4, 3}, 1), y, "scce probabilities");
  check_loss(SparseCategoricalCrossentropy{.from_logits = true}, Tn::uniform({4, 3}, 2, -3.0, 3.0),
             y, "scce logits");
}

TEST(LossGradient, CategoricalCrossentropy) {
  const Tn onehot{{0, 0, 1}, {1, 0, 0}, {0, 1, 0}};
  const Tn soft = probabilities({3, 3}, 3);
  check_loss(CategoricalCrossentropy{}, probabilities({3, 3}, 4), onehot,
             "cce probabilities one-hot");
  check_loss(CategoricalCrossentropy{}, probabilities({3, 3}, 5), soft, "cce probabilities soft");
  check_loss(CategoricalCrossentropy{.from_logits = true}, Tn::uniform({3, 3}, 6, -3.0, 3.0),
             onehot, "cce logits one-hot");
  check_loss(CategoricalCrossentropy{.from_logits = true}, Tn::uniform({3, 3}, 7, -3.0, 3.0), soft,
             "cce logits soft");
}

TEST(LossGradient, BinaryCrossentropy) {
  const Tn hard{{0, 1}, {1, 1}, {0, 0}};
  const Tn soft = Tn::uniform({3, 2}, 8, 0.0, 1.0);
  check_loss(BinaryCrossentropy{}, Tn::uniform({3, 2}, 9, 0.05, 0.95), hard,
             "bce probabilities hard");
  check_loss(BinaryCrossentropy{}, Tn::uniform({3, 2}, 10, 0.05, 0.95), soft,
             "bce probabilities soft");
  check_loss(BinaryCrossentropy{.from_logits = true}, Tn::uniform({3, 2}, 11, -4.0, 4.0), hard,
             "bce logits hard");
  check_loss(BinaryCrossentropy{.from_logits = true}, Tn::uniform({3, 2}, 12, -4.0, 4.0), soft,
             "bce logits soft");
}

TEST(LossGradient, MeanSquaredError) {
  check_loss(MeanSquaredError{}, Tn::uniform({4, 3}, 13, -2.0, 2.0),
             Tn::uniform({4, 3}, 14, -2.0, 2.0), "mse");
}

TEST(LossGradient, MeanAbsoluteError) {
  // Away from the kink at out == y (probability zero for random values).
  check_loss(MeanAbsoluteError{}, Tn::uniform({4, 3}, 15, -2.0, 2.0),
             Tn::uniform({4, 3}, 16, -2.0, 2.0), "mae");
  EXPECT_NEAR(nn::compute_loss(MeanAbsoluteError{}, Tn{{1.0, 2.0}}, Tn{{0.0, 4.0}}).value.item(),
              1.5, 1e-12);
}

TEST(LossValue, MatchesKerasFormulas) {
  // Hand-computed values (Keras's sum_over_batch_size reduction).
  const Tn p{{0.7, 0.2, 0.1}, {0.1, 0.6, 0.3}};
  const Labels y{0, 2};
  EXPECT_NEAR(nn::compute_loss(SparseCategoricalCrossentropy{}, p, y).value.item(),
              -(std::log(0.7) + std::log(0.3)) / 2, 1e-12);
  EXPECT_NEAR(nn::compute_loss(CategoricalCrossentropy{}, p, Tn{{1, 0, 0}, {0, 0, 1}}).value.item(),
              -(std::log(0.7) + std::log(0.3)) / 2, 1e-12);
  const Tn z{{1.0, -2.0, 0.5}};
  const double lse = std::log(std::exp(1.0) + std::exp(-2.0) + std::exp(0.5));
  EXPECT_NEAR(nn::compute_loss(SparseCategoricalCrossentropy{.from_logits = true}, z, Labels{1})
                  .value.item(),
              lse + 2.0, 1e-12);
  const Tn b{{0.8, 0.3}};
  EXPECT_NEAR(nn::compute_loss(BinaryCrossentropy{}, b, Tn{{1, 0}}).value.item(),
              -(std::log(0.8) + std::log(0.7)) / 2, 1e-12);
  const Tn bz{{2.0, -1.0}};
  const auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  EXPECT_NEAR(
      nn::compute_loss(BinaryCrossentropy{.from_logits = true}, bz, Tn{{1, 0}}).value.item(),
      -(std::log(sig(2.0)) + std::log(1 - sig(-1.0))) / 2, 1e-12);
  EXPECT_NEAR(nn::compute_loss(MeanSquaredError{}, Tn{{1.0, 2.0}}, Tn{{0.0, 4.0}}).value.item(),
              2.5, 1e-12);
}

TEST(LossValue, ProbabilitiesAreClippedAsKerasDoes) {
  // p = 0 for the true class: -log(1e-7), and the clipped region has zero gradient.
  const Tn p{{0.0, 1.0}};
  const auto lv = nn::compute_loss(CategoricalCrossentropy{}, p, Tn{{1.0, 0.0}});
  EXPECT_NEAR(lv.value.item(), -std::log(1e-7), 1e-6);
  EXPECT_EQ(lv.grad.data()[0], 0.0);
  EXPECT_EQ(lv.grad.data()[1], 0.0);
  const auto lb = nn::compute_loss(BinaryCrossentropy{}, Tn{{0.0, 1.0}}, Tn{{1.0, 0.0}});
  EXPECT_NEAR(lb.value.item(), -std::log(1e-7), 1e-6);
  EXPECT_EQ(lb.grad.data()[0], 0.0);
  EXPECT_EQ(lb.grad.data()[1], 0.0);
}

// ---- numerical stability of the from-logits forms ---------------------------------------------

template <class V>
void expect_stable_logits() {
  using TV = Tensor<V, D>;
  const TV z{{V(1e4), V(-1e4), V(0)}, {V(-1e4), V(1e4), V(1e4)}};
  const Tensor<std::int32_t, D> y{1, 0};
  // Row 0: lse = 1e4, loss = 1e4 - (-1e4) = 2e4; row 1: lse = 1e4 + log 2, loss = 2e4 + log 2.
  const auto s = nn::compute_loss(SparseCategoricalCrossentropy{.from_logits = true}, z, y);
  const double want = (2e4 + 2e4 + std::log(2.0)) / 2;
  EXPECT_TRUE(std::isfinite(static_cast<double>(s.value.item())));
  EXPECT_NEAR(static_cast<double>(s.value.item()), want, want * 1e-6);
  // Gradient (softmax - onehot) / N: [1, -1, 0] / 2 and [-1, 0.5, 0.5] / 2.
  const double g[] = {0.5, -0.5, 0, -0.5, 0.25, 0.25};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(std::isfinite(static_cast<double>(s.grad.data()[i])));
    EXPECT_NEAR(static_cast<double>(s.grad.data()[i]), g[i], 1e-6) << i;
  }
  const TV onehot{{V(0), V(1), V(0)}, {V(1), V(0), V(0)}};
  const auto c = nn::compute_loss(CategoricalCrossentropy{.from_logits = true}, z, onehot);
  EXPECT_NEAR(static_cast<double>(c.value.item()), want, want * 1e-6);
  for (std::size_t i = 0; i < 6; ++i)
    EXPECT_NEAR(static_cast<double>(c.grad.data()[i]), g[i], 1e-6) << i;

  // Binary: z = 1e4 with target 0 and z = -1e4 with target 1 each cost 1e4; the correct
  // sides cost 0 (e^-1e4 underflows, log1p of it is 0).
  const TV bz{{V(1e4), V(-1e4)}, {V(1e4), V(-1e4)}};
  const TV bt{{V(0), V(1)}, {V(1), V(0)}};
  const auto b = nn::compute_loss(BinaryCrossentropy{.from_logits = true}, bz, bt);
  EXPECT_TRUE(std::isfinite(static_cast<double>(b.value.item())));
  EXPECT_NEAR(static_cast<double>(b.value.item()), 2e4 / 4, 1e-2);
  const double bg[] = {0.25, -0.25, 0, 0};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::isfinite(static_cast<double>(b.grad.data()[i])));
    EXPECT_NEAR(static_cast<double>(b.grad.data()[i]), bg[i], 1e-6) << i;
  }
}

TEST(LossStability, HugeLogitsDouble) {
  expect_stable_logits<double>();
}
TEST(LossStability, HugeLogitsFloat) {
  expect_stable_logits<float>();
}

TEST(LossStability, HugeLogitsThroughAModel) {
  // A Dense layer whose outputs are about +-1e4: loss and gradients stay finite.
  Sequential<D, float> model(Input({2}), Dense(3));
  model.build(1);
  auto& kernel = model.parameters()[0]->value;
  kernel = Tensor<float, D>{{1e4f, -1e4f, 0.f}, {-1e4f, 1e4f, 5e3f}};
  const Tensor<float, D> x{{1.f, 0.f}, {0.f, 1.f}};
  const Tensor<std::int32_t, D> y{1, 0};
  const auto r = model.value_and_gradient(x, y, SparseCategoricalCrossentropy{.from_logits = true});
  EXPECT_TRUE(std::isfinite(r.loss.item()));
  EXPECT_NEAR(r.loss.item(), 2e4, 1.0);
  for (const auto& g : r.grads)
    for (float v : g) EXPECT_TRUE(std::isfinite(v));
}

// ---- whole models through value_and_gradient ----------------------------------------------------

/// Checks the gradients value_and_gradient returns against central differences of its loss.
template <class Y>
void check_model(Model<D, T>& model, const Tn& x, const Y& y, const LossConfig& loss,
                 const std::string& what) {
  const auto r = model.value_and_gradient(x, y, loss);
  ASSERT_EQ(r.loss.rank(), 0u);
  const auto params = model.parameters();
  ASSERT_EQ(r.grads.size(), params.size()) << what;
  // value_and_gradient leaves the weights alone: a second call gives the same loss.
  EXPECT_EQ(model.value_and_gradient(x, y, loss).loss.item(), r.loss.item()) << what;
  for (std::size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(to_string(r.grads[i].shape()), to_string(params[i]->value.shape())) << what;
    const auto f = [&]() { return model.value_and_gradient(x, y, loss).loss.item(); };
    EXPECT_TRUE(
        grad_close(values(r.grads[i]), numeric_grad(params[i]->value, f),
                   what + " parameter " + std::to_string(i) + " (" + params[i]->name + ")"));
  }
}

Tn one_hot_rows(const std::vector<int>& classes, std::size_t c) {
  Tn t = Tn::zeros({classes.size(), c});
  for (std::size_t r = 0; r < classes.size(); ++r)
    t.data()[r * c + static_cast<std::size_t>(classes[r])] = 1;
  return t;
}

TEST(ModelGradient, EveryLossOnAnMlp) {
  const Tn x = Tn::uniform({5, 4}, 1, -1.0, 1.0);
  const Labels cls{0, 2, 1, 1, 2};
  const Tn onehot = one_hot_rows({0, 2, 1, 1, 2}, 3);
  {
    Sequential<D, T> m(Input({4}), Dense(6, Activation::tanh), Dense(3, Activation::softmax));
    m.build(1);
    check_model(m, x, cls, SparseCategoricalCrossentropy{}, "scce probabilities");
    check_model(m, x, onehot, CategoricalCrossentropy{}, "cce probabilities");
  }
  {
    Sequential<D, T> m(Input({4}), Dense(6, Activation::sigmoid), Dense(3));
    m.build(2);
    check_model(m, x, cls, SparseCategoricalCrossentropy{.from_logits = true}, "scce logits");
    check_model(m, x, onehot, CategoricalCrossentropy{.from_logits = true}, "cce logits");
  }
  const Tn bin = Tn{{1, 0}, {0, 0}, {1, 1}, {0, 1}, {1, 0}};
  {
    Sequential<D, T> m(Input({4}), Dense(5, Activation::relu), Dense(2, Activation::sigmoid));
    m.build(3);
    check_model(m, x, bin, BinaryCrossentropy{}, "bce probabilities");
  }
  {
    Sequential<D, T> m(Input({4}), Dense(5, Activation::tanh), Dense(2));
    m.build(4);
    check_model(m, x, bin, BinaryCrossentropy{.from_logits = true}, "bce logits");
    check_model(m, x, Tn::uniform({5, 2}, 5, -1.0, 1.0), MeanSquaredError{}, "mse");
  }
}

TEST(ModelGradient, SmallCnnWithBatchNormalization) {
  Sequential<D, T> m(Input({6, 6, 2}), Conv2D(3, {3, 3}, Activation::relu, {1, 1}, Padding::same),
                     BatchNormalization(), MaxPooling2D({2, 2}),
                     Conv2D(2, {2, 2}, Activation::tanh), AveragePooling2D({2, 2}), Flatten(),
                     Dense(3, Activation::softmax));
  m.build(5);
  const Tn x = Tn::uniform({3, 6, 6, 2}, 6, -1.0, 1.0);
  check_model(m, x, Labels{2, 0, 1}, SparseCategoricalCrossentropy{}, "cnn");
}

TEST(ModelGradient, ActivationLayersAndStridedConv) {
  Sequential<D, T> m(Input({5, 5, 1}), Conv2D(2, {3, 3}, Activation::linear, {2, 2}, Padding::same),
                     layers::Activation("tanh"), Flatten(), Dense(4), layers::Activation("relu"),
                     Dense(2), layers::Activation(Activation::softmax));
  m.build(7);
  const Tn x = Tn::uniform({2, 5, 5, 1}, 8, -1.0, 1.0);
  check_model(m, x, one_hot_rows({1, 0}, 2), CategoricalCrossentropy{}, "strided cnn");
}

TEST(ModelGradient, DetectsAWrongGradient) {
  // The checker itself must be able to fail: a gradient off by 1e-4 is caught.
  std::vector<double> a{1.0, -2.0, 0.5}, n = a;
  n[1] += 1e-4;
  EXPECT_FALSE(grad_close(a, n, "perturbed"));
  EXPECT_FALSE(grad_close({0.0, 0.0}, {0.0, 0.0}, "all zero"));
  EXPECT_TRUE(grad_close(a, a, "same"));
}

}  // namespace
