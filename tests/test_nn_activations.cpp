// Activations (functions and layers) against float64 references computed here from Keras
// 3's definitions, including TensorFlow's side of every kink for the derivatives and the
// tails at large |x| (no inf or NaN where Keras has none); finite-difference gradient
// checks through layers::Activation, Dense and Conv2D; CPU/GPU parity in float32; the
// parameterised activation layers (LeakyReLU, ELU, ReLU, Softmax): gradients, parity,
// configurations and their errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "gradient_check.hpp"
#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

using HostF = Tensor<float, CPUDev>;
using HostD = Tensor<double, CPUDev>;

// Every activation, old and new.
const std::vector<Activation> kAll = {
    Activation::linear,  Activation::relu,       Activation::sigmoid,  Activation::tanh,
    Activation::softmax, Activation::gelu,       Activation::silu,     Activation::elu,
    Activation::selu,    Activation::leaky_relu, Activation::softplus, Activation::hard_sigmoid};

// ---- float64 references from Keras 3's definitions -------------------------------------------

// keras/src/backend/numpy/nn.py (the same constants as TensorFlow's selu kernel).
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kLeakySlope = 0.2;  // keras.activations.leaky_relu(x, negative_slope=0.2)

double ref_sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double ref_softplus(double x) {
  return x > 30 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

/// act(x) for the element-wise activations.
double ref_value(Activation a, double x) {
  switch (a) {
    case Activation::linear:
      return x;
    case Activation::relu:
      return std::max(x, 0.0);
    case Activation::sigmoid:
      return ref_sigmoid(x);
    case Activation::tanh:
      return std::tanh(x);
    case Activation::gelu:  // 0.5 x (1 + erf(x / sqrt 2)), with 1 + erf(t) = erfc(-t)
      return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case Activation::silu:
      return x * ref_sigmoid(x);
    case Activation::elu:
      return x > 0 ? x : std::expm1(x);
    case Activation::selu:
      return kSeluScale * (x > 0 ? x : kSeluAlpha * std::expm1(x));
    case Activation::leaky_relu:
      return x > 0 ? x : kLeakySlope * x;
    case Activation::softplus:
      return ref_softplus(x);
    case Activation::hard_sigmoid:  // Keras 3: relu6(x + 3) / 6
      return std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0;
    case Activation::softmax:
      break;
  }
  ADD_FAILURE() << "no element-wise reference for " << to_string(a);
  return 0;
}

/// act'(x), on TensorFlow's side of each kink: ReluGrad (0 at 0), EluGrad (1 at 0),
/// SeluGrad (scale at 0), LeakyReluGrad (slope at 0), Relu6Grad (0 at the ends).
double ref_derivative(Activation a, double x) {
  const double pi = 3.14159265358979323846;
  switch (a) {
    case Activation::linear:
      return 1;
    case Activation::relu:
      return x > 0 ? 1 : 0;
    case Activation::sigmoid:
      return ref_sigmoid(x) * ref_sigmoid(-x);
    case Activation::tanh:
      return 1 - std::tanh(x) * std::tanh(x);
    case Activation::gelu:  // Phi(x) + x phi(x)
      return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * pi);
    case Activation::silu:
      return ref_sigmoid(x) * (1 + x * ref_sigmoid(-x));
    case Activation::elu:
      return x > 0 ? 1 : std::exp(x);
    case Activation::selu:
      return x >= 0 ? kSeluScale : kSeluScale * kSeluAlpha * std::exp(x);
    case Activation::leaky_relu:
      return x > 0 ? 1 : kLeakySlope;
    case Activation::softplus:
      return ref_sigmoid(x);
    case Activation::hard_sigmoid:
      return x > -3 && x < 3 ? 1.0 / 6.0 : 0;
    case Activation::softmax:
      break;
  }
  ADD_FAILURE() << "no element-wise derivative for " << to_string(a);
  return 0;
}

/// Softmax over the last axis of a [rows, cols] array, and its vector-Jacobian product.
Ref ref_softmax(const Ref& z) {
  Ref y = z;
  const std::size_t cols = z.shape()[1];
  for (std::size_t r = 0; r < z.shape()[0]; ++r) {
    double m = -INFINITY, s = 0;
    for (std::size_t c = 0; c < cols; ++c) m = std::max(m, z(r, c));
    for (std::size_t c = 0; c < cols; ++c) s += std::exp(z(r, c) - m);
    for (std::size_t c = 0; c < cols; ++c) y(r, c) = std::exp(z(r, c) - m) / s;
  }
  return y;
}
Ref ref_softmax_vjp(const Ref& y, const Ref& dy) {
  Ref dz = y;
  for (std::size_t r = 0; r < y.shape()[0]; ++r) {
    double dot = 0;
    for (std::size_t c = 0; c < y.shape()[1]; ++c) dot += dy(r, c) * y(r, c);
    for (std::size_t c = 0; c < y.shape()[1]; ++c) dz(r, c) = y(r, c) * (dy(r, c) - dot);
  }
  return dz;
}

/// The points every activation is evaluated at: a grid over [-20, 20] with step 0.25 (so
/// 0 and +-3, the kinks, are on it exactly) and magnitudes from 1e-30 to 1e30 of both
/// signs; 185 values, viewed as [37, 5] for softmax rows.
template <class T>
Tensor<T, CPUDev> probe_points() {
  std::vector<T> p;
  for (int i = -80; i <= 80; ++i) p.push_back(static_cast<T>(i * 0.25));
  for (double v : {1e-30, 1e-8, 1e-3, 0.1, 30.0, 50.0, 88.0, 100.0, 1e3, 1e4, 1e10, 1e30}) {
    p.push_back(static_cast<T>(v));
    p.push_back(static_cast<T>(-v));
  }
  Tensor<T, CPUDev> t(Shape{37, 5});
  EXPECT_EQ(p.size(), t.size());
  std::copy(p.begin(), p.end(), t.data());
  return t;
}

template <class T>
struct act_tol;
template <>
struct act_tol<float> {
  static constexpr double rtol = 2e-5, atol = 1e-6;
};
template <>
struct act_tol<double> {
  static constexpr double rtol = 1e-12, atol = 1e-14;
};

// ---- names -----------------------------------------------------------------------------------

TEST(NnActivationNames, RoundTripAndKerasSpellings) {
  for (Activation a : kAll) EXPECT_EQ(parse_activation(to_string(a)), a) << to_string(a);
  EXPECT_EQ(to_string(Activation::gelu), "gelu");
  EXPECT_EQ(to_string(Activation::silu), "silu");
  EXPECT_EQ(to_string(Activation::elu), "elu");
  EXPECT_EQ(to_string(Activation::selu), "selu");
  EXPECT_EQ(to_string(Activation::leaky_relu), "leaky_relu");
  EXPECT_EQ(to_string(Activation::softplus), "softplus");
  EXPECT_EQ(to_string(Activation::hard_sigmoid), "hard_sigmoid");
  // Keras's alias: read as silu, written as "silu" (as Keras serialises it).
  EXPECT_EQ(parse_activation("swish"), Activation::silu);
  EXPECT_EQ(to_string(parse_activation("swish")), "silu");
  EXPECT_EQ(Dense(3, "swish").config().at("activation").as_string(), "silu");
  EXPECT_EQ(layers::Activation("swish").config().at("activation").as_string(), "silu");
  EXPECT_EQ(parse_activation(""), Activation::linear);
  // Distinct names for distinct activations.
  for (Activation a : kAll) {
    for (Activation b : kAll) {
      if (a != b) {
        EXPECT_NE(to_string(a), to_string(b));
      }
    }
  }
  // Unknown names are configuration errors (argument errors too) listing the known ones.
  EXPECT_TRUE(throws_with<config_error>([] { parse_activation("gelu_tanh"); },
                                        "unknown activation 'gelu_tanh'", "gelu", "swish",
                                        "hard_sigmoid"));
  EXPECT_TRUE(throws_with<argument_error>([] { parse_activation("Relu"); }, "'Relu'"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        layers::Activation::from_config(nn::Config::make({{"activation", "mish"}}));
      },
      "'mish'"));
  // Configurations name every new activation the Keras way.
  for (Activation a : kAll) {
    const nn::Config c = layers::Activation(a).config();
    EXPECT_EQ(layers::Activation::from_config(c).activation, a);
    EXPECT_EQ(Dense::from_config(Dense(2, a).config()).activation, a);
    EXPECT_EQ(Conv2D::from_config(Conv2D(2, 3, a).config()).activation, a);
  }
}

// ---- values and derivatives on every device
// ------------------------------------------------------

template <class Dev>
class NnActivations : public ::testing::Test {};
TYPED_TEST_SUITE(NnActivations, TestDevices, DeviceNames);

/// activate and bias_activate against the float64 reference, at the probe points.
template <class Dev, class T>
void check_values() {
  const auto hz = probe_points<T>();
  const auto hb = random_host<T>({5}, 3, T(-1), T(1));
  // The input bias_activate sees, rounded to T as the device rounds it.
  const Tensor<T, CPUDev> hzb = hz + hb;
  const auto z = on<Dev>(hz), b = on<Dev>(hb);
  for (Activation a : kAll) {
    Ref want, want_b;
    if (a == Activation::softmax) {
      want = ref_softmax(ref(hz));
      want_b = ref_softmax(ref(hzb));
    } else {
      want = ref_unary(ref(hz), [a](double x) { return ref_value(a, x); });
      want_b = ref_unary(ref(hzb), [a](double x) { return ref_value(a, x); });
    }
    EXPECT_TRUE(near_ref(nn::activate(a, z), want, act_tol<T>::rtol, act_tol<T>::atol))
        << to_string(a);
    EXPECT_TRUE(near_ref(nn::bias_activate(a, z, b), want_b, act_tol<T>::rtol, act_tol<T>::atol))
        << to_string(a) << " with a bias";
  }
}

TYPED_TEST(NnActivations, ValuesMatchKerasDefinitionsIncludingTails) {
  check_values<TypeParam, float>();
  check_values<TypeParam, double>();
}

/// dL/dz through the route a layer takes (from y, or from z for gelu and silu) and through
/// activation_backward_from_input for every activation, against the float64 derivative.
template <class Dev, class T>
void check_derivatives() {
  const auto hz = probe_points<T>();
  const auto hdy = random_host<T>(hz.shape(), 4, T(-1), T(1));
  const auto z = on<Dev>(hz), dy = on<Dev>(hdy);
  for (Activation a : kAll) {
    Ref want;
    if (a == Activation::softmax) {
      want = ref_softmax_vjp(ref_softmax(ref(hz)), ref(hdy));
    } else {
      want = ref_binary(ref(hz), ref(hdy),
                        [a](double x, double g) { return g * ref_derivative(a, x); });
    }
    const Tensor<T, Dev> y = nn::activate(a, z);
    const Tensor<T, Dev> layer_route = nn::derivative_needs_input(a)
                                           ? nn::activation_backward_from_input(a, z, dy)
                                           : nn::activation_backward(a, y, dy);
    EXPECT_TRUE(near_ref(layer_route, want, act_tol<T>::rtol, act_tol<T>::atol)) << to_string(a);
    EXPECT_TRUE(near_ref(nn::activation_backward_from_input(a, z, dy), want, act_tol<T>::rtol,
                         act_tol<T>::atol))
        << to_string(a) << " from the input";
  }
}

TYPED_TEST(NnActivations, DerivativesMatchTensorFlowIncludingKinksAndTails) {
  check_derivatives<TypeParam, float>();
  check_derivatives<TypeParam, double>();
}

TYPED_TEST(NnActivations, OnlyGeluAndSiluNeedTheInput) {
  for (Activation a : kAll) {
    const bool needs = a == Activation::gelu || a == Activation::silu;
    EXPECT_EQ(nn::derivative_needs_input(a), needs) << to_string(a);
    EXPECT_EQ(nn::output_needed_for(a), !needs && a != Activation::linear) << to_string(a);
    const auto bn = layers::Activation(a).backward_needs();
    EXPECT_EQ(bn.inputs, needs) << to_string(a);
    EXPECT_EQ(bn.outputs, !needs && a != Activation::linear) << to_string(a);
  }
  // Their derivative cannot come from the output: asking for it is an error, not a guess.
  const auto y = on<TypeParam>(HostF{0.5f, -0.1f});
  for (Activation a : {Activation::gelu, Activation::silu}) {
    EXPECT_TRUE(throws_with<argument_error>([&] { (void)nn::activation_backward(a, y, y); },
                                            to_string(a), "activation_backward_from_input"));
  }
}

// ---- CPU/GPU parity of whole models in float32
// --------------------------------------------------------

constexpr double kDevRtol = 2e-5, kDevAtol = 2e-6;  // float32 device against float32 host
constexpr double kRefRtol = 2e-4, kRefAtol = 2e-5;  // float32 against the float64 model

/// The forward pass (inference) and a training vjp of `f` on Dev in float32 agree with the
/// same model on the other device (same seed: the same weights) and with a float64 copy.
template <class Dev>
void check_model_parity(const Functional& f, const Shape& in_shape, float lo, float hi,
                        const std::string& what) {
  using Other = OtherDev<Dev>;
  Model<Dev, float> m(f, 5);
  Model<Other, float> o(f, 5);
  Model<CPUDev, double> r(f, 5);
  {
    auto src = m.weights();
    auto dst = r.weights();
    ASSERT_EQ(src.size(), dst.size()) << what;
    for (std::size_t i = 0; i < src.size(); ++i)
      *dst[i].second = HostD(cast<double>(host(*src[i].second)));
  }
  const auto hx = HostF::uniform(in_shape, 11, lo, hi);
  const auto hw = HostF::uniform(nn::with_batch(in_shape[0], m.output_shape()), 12, -1.f, 1.f);
  const HostD rx = cast<double>(hx), rw = cast<double>(hw);

  const auto ym = m(on<Dev>(hx));
  EXPECT_TRUE(same_values(ym, o(on<Other>(hx)), kDevRtol, kDevAtol)) << what << ": inference";
  EXPECT_TRUE(near_ref(ym, ref(r(rx)), kRefRtol, kRefAtol)) << what << ": inference";

  const auto gm = m.vjp({on<Dev>(hx)}, {on<Dev>(hw)});
  const auto go = o.vjp({on<Other>(hx)}, {on<Other>(hw)});
  const auto gr = r.vjp({rx}, {rw});
  EXPECT_TRUE(same_values(gm.outputs[0], go.outputs[0], kDevRtol, kDevAtol))
      << what << ": training output";
  EXPECT_TRUE(near_ref(gm.outputs[0], ref(gr.outputs[0]), kRefRtol, kRefAtol))
      << what << ": training output";
  ASSERT_EQ(gm.input_grads.size(), 1u) << what;
  EXPECT_TRUE(same_values(gm.input_grads[0], go.input_grads[0], kDevRtol, kDevAtol))
      << what << ": dL/dx";
  EXPECT_TRUE(near_ref(gm.input_grads[0], ref(gr.input_grads[0]), kRefRtol, kRefAtol))
      << what << ": dL/dx";
  ASSERT_EQ(gm.param_grads.size(), gr.param_grads.size()) << what;
  for (std::size_t j = 0; j < gm.param_grads.size(); ++j) {
    EXPECT_TRUE(same_values(gm.param_grads[j], go.param_grads[j], kDevRtol, kDevAtol))
        << what << ": param " << j;
    EXPECT_TRUE(near_ref(gm.param_grads[j], ref(gr.param_grads[j]), kRefRtol, kRefAtol))
        << what << ": param " << j;
  }
}

TYPED_TEST(NnActivations, ModelsAgreeAcrossDevicesForEveryActivation) {
  for (Activation a : kAll) {
    // Conv2D and Dense end in the activation (fused with the bias), then an Activation layer.
    const auto x = Input({4, 4, 2});
    const auto h = Conv2D(3, 3, a, 1, Padding::same)(x);
    const auto y = layers::Activation(a)(Dense(5, a)(Flatten()(h)));
    check_model_parity<TypeParam>(Functional(x, y), {3, 4, 4, 2}, -3.f, 3.f, to_string(a));
  }
}

// ---- finite-difference gradients (float64, host) ------------------------------------------------

class NnActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(NnActivationGradient, ActivationLayer) {
  grad::check_layer(layers::Activation(GetParam()), {3, 7}, {7});
  grad::check_layer(layers::Activation(GetParam()), {2, 3, 4}, {3, 4}, 2);
}

TEST_P(NnActivationGradient, Dense) {
  grad::check_layer(Dense(4, GetParam()), {3, 5}, {4});
  grad::check_layer(Dense(3, GetParam(), /*bias=*/false), {2, 2, 4}, {2, 3}, 3);
}

TEST_P(NnActivationGradient, Conv2D) {
  grad::check_layer(Conv2D(2, 3, GetParam(), 1, Padding::same), {1, 4, 4, 2}, {4, 4, 2});
  grad::check_layer(Conv2D(2, {2, 3}, GetParam(), 2, Padding::valid), {2, 5, 5, 1}, {2, 2, 2}, 4);
}

INSTANTIATE_TEST_SUITE_P(EveryActivation, NnActivationGradient, ::testing::ValuesIn(kAll),
                         [](const auto& info) { return to_string(info.param); });

// ---- the parameterised activation layers
// --------------------------------------------------------------

/// keras.activations.relu(x, negative_slope, max_value, threshold), op by op.
double keras_relu(double x, std::optional<double> max, double slope, double threshold) {
  if (slope != 0 && !max && threshold == 0) return x > 0 ? x : slope * x;  // leaky_relu
  double y = x > threshold ? x : 0.0;
  if (max) y = std::min(std::max(y, 0.0), *max);
  if (slope != 0) y -= slope * std::max(threshold - x, 0.0);
  return y;
}
/// Its derivative as TensorFlow's gradients of those ops give it: LeakyReluGrad (slope at
/// 0), the where of the threshold or ReluGrad (0 at the threshold), Relu6Grad for
/// max_value 6 without threshold (0 at 0 and 6), clip_by_value (passes at the bounds),
/// ReluGrad of relu(threshold - x) (0 at the threshold).
double keras_relu_grad(double x, std::optional<double> max, double slope, double threshold) {
  if (slope != 0 && !max && threshold == 0) return x > 0 ? 1 : slope;
  const bool relu6 = threshold == 0 && max && *max == 6;
  double d;
  if (threshold != 0) {
    d = x > threshold ? 1 : 0;
  } else if (relu6) {
    d = x > 0 && x < 6 ? 1 : 0;
  } else {
    d = x > 0 ? 1 : 0;
  }
  if (max && !relu6) {
    const double x1 = x > threshold ? x : 0.0;
    if (x1 < 0 || x1 > *max) d = 0;
  }
  if (slope != 0 && threshold - x > 0) d += slope;
  return d;
}

struct ReluCase {
  std::optional<double> max;
  double slope, threshold;
};
const std::vector<ReluCase> kReluCases = {{std::nullopt, 0, 0},
                                          {6.0, 0, 0},
                                          {6.0, 0.125, 0},
                                          {0.5, 0, 0},
                                          {0.5, 0.25, 0.25},
                                          {std::nullopt, 0.25, 0},
                                          {std::nullopt, 0.25, 0.5},
                                          {std::nullopt, 0, 0.5},
                                          {6.0, 0, 0.5},
                                          {0.0, 0, 0},
                                          {2.0, 1.5, 0}};

std::string describe(const ReluCase& c) {
  return "ReLU(max_value=" + (c.max ? std::to_string(*c.max) : std::string("None")) +
         ", negative_slope=" + std::to_string(c.slope) +
         ", threshold=" + std::to_string(c.threshold) + ")";
}

/// Inputs on every kink of every case (0, thresholds, caps, 6) and around them.
HostF kink_points() {
  return HostF{-7.f, -3.f, -1.f, -0.5f, -0.25f, 0.f, 0.125f, 0.25f, 0.375f, 0.5f,   0.75f,
               1.f,  1.5f, 2.f,  3.f,   5.75f,  6.f, 6.25f,  7.f,   -0.f,   1e-30f, -1e30f};
}

/// One call of `layer` on Dev in float32: y and dL/dx at the given points (dL/dy random).
template <class Dev, class Spec>
std::pair<Tensor<float, Dev>, Tensor<float, Dev>> one_call(const Spec& layer, const HostF& points,
                                                           const HostF& dy) {
  const auto x = Input({points.size()});
  Model<Dev, float> m(Functional(x, layer(x)), 1);
  const Shape row{1, points.size()}, flat{points.size()};
  const auto r = m.vjp({on<Dev>(points.reshape(row))}, {on<Dev>(dy.reshape(row))});
  return {r.outputs[0].reshape(flat), r.input_grads[0].reshape(flat)};
}

TYPED_TEST(NnActivations, ReluLayerFollowsKerasAndTensorFlowAtEveryKink) {
  const HostF p = kink_points();
  const HostF dy = random_host<float>(p.shape(), 21, 0.5f, 1.5f);
  for (const ReluCase& c : kReluCases) {
    const auto [y, dx] = one_call<TypeParam>(ReLU(c.max, c.slope, c.threshold), p, dy);
    EXPECT_TRUE(near_ref(
        y, ref_unary(ref(p), [&](double x) { return keras_relu(x, c.max, c.slope, c.threshold); })))
        << describe(c);
    EXPECT_TRUE(near_ref(dx, ref_binary(ref(p), ref(dy),
                                        [&](double x, double g) {
                                          return g *
                                                 keras_relu_grad(x, c.max, c.slope, c.threshold);
                                        })))
        << describe(c);
  }
  // The rules above differ at the kinks: the test would notice a wrong side.
  EXPECT_EQ(keras_relu_grad(6, 6.0, 0, 0), 0);
  EXPECT_EQ(keras_relu_grad(0.5, 0.5, 0, 0), 1);
  EXPECT_EQ(keras_relu_grad(0, std::nullopt, 0.25, 0), 0.25);
  EXPECT_EQ(keras_relu_grad(0, 6.0, 0.25, 0), 0);
}

TYPED_TEST(NnActivations, LeakyReluAndEluLayersAtTheKinkAndInTheTails) {
  const HostF p = kink_points();
  const HostF dy = random_host<float>(p.shape(), 22, 0.5f, 1.5f);
  for (double s : {0.3, 0.0, 0.01, 2.0}) {
    const auto [y, dx] = one_call<TypeParam>(LeakyReLU(s), p, dy);
    EXPECT_TRUE(near_ref(y, ref_unary(ref(p), [&](double x) { return x > 0 ? x : s * x; })))
        << "LeakyReLU " << s;
    EXPECT_TRUE(near_ref(
        dx, ref_binary(ref(p), ref(dy), [&](double x, double g) { return g * (x > 0 ? 1 : s); })))
        << "LeakyReLU " << s;
  }
  for (double alpha : {1.0, 0.5, 0.0, 2.5, -0.5}) {
    const auto [y, dx] = one_call<TypeParam>(ELU(alpha), p, dy);
    EXPECT_TRUE(
        near_ref(y, ref_unary(ref(p), [&](double x) { return x > 0 ? x : alpha * std::expm1(x); })))
        << "ELU " << alpha;
    // TensorFlow: alpha e^x at and below 0.
    EXPECT_TRUE(near_ref(
        dx, ref_binary(ref(p), ref(dy),
                       [&](double x, double g) { return g * (x > 0 ? 1 : alpha * std::exp(x)); })))
        << "ELU " << alpha;
  }
  // Softmax of rows with huge entries: no NaN.
  const HostF rows{1e30f, 0.f, -1e30f, 3.f, 3.f, 3.f};
  const HostF rdy = random_host<float>({6}, 23);
  const auto x = Input({3});
  Model<TypeParam, float> m(Functional(x, Softmax()(x)), 1);
  const Shape two_rows{2, 3};
  const auto r =
      m.vjp({on<TypeParam>(rows.reshape(two_rows))}, {on<TypeParam>(rdy.reshape(two_rows))});
  const Ref want = ref_softmax(ref(rows.reshape(two_rows)));
  EXPECT_TRUE(near_ref(r.outputs[0], want));
  EXPECT_TRUE(near_ref(r.input_grads[0], ref_softmax_vjp(want, ref(rdy.reshape(two_rows)))));
}

TEST(NnActivationLayerGradient, LeakyReLU) {
  for (double s : {0.3, 0.0, 0.05, 1.5}) grad::check_layer(LeakyReLU(s), {3, 6}, {6});
  grad::check_layer(LeakyReLU(), {2, 2, 3, 2}, {2, 3, 2}, 5);
}

TEST(NnActivationLayerGradient, ELU) {
  for (double a : {1.0, 0.5, 0.0, 3.0, -0.7}) grad::check_layer(ELU(a), {3, 6}, {6});
  grad::check_layer(ELU(), {2, 2, 3, 2}, {2, 3, 2}, 5);
}

TEST(NnActivationLayerGradient, ReLU) {
  // Inputs are uniform in [-1, 1]: caps and thresholds inside that range.
  for (const ReluCase& c : std::vector<ReluCase>{{std::nullopt, 0, 0},
                                                 {6.0, 0, 0},
                                                 {6.0, 0.2, 0},
                                                 {0.5, 0, 0},
                                                 {0.5, 0.1, 0.25},
                                                 {std::nullopt, 0.1, 0},
                                                 {std::nullopt, 0.3, 0.25},
                                                 {std::nullopt, 0, 0.25},
                                                 {0.6, 0, 0.25}}) {
    SCOPED_TRACE(describe(c));
    grad::check_layer(ReLU(c.max, c.slope, c.threshold), {4, 6}, {6});
  }
}

TEST(NnActivationLayerGradient, Softmax) {
  grad::check_layer(Softmax(), {3, 5}, {5});
  grad::check_layer(Softmax(), {2, 3, 4}, {3, 4}, 2);
  grad::check_layer(Softmax(2), {2, 3, 4}, {3, 4}, 3);  // axis 2 of a rank-3 input is its last
}

TYPED_TEST(NnActivations, ActivationLayersAgreeAcrossDevices) {
  const auto x = Input({3, 6});
  const std::vector<std::pair<std::string, nn::SymbolicTensor>> cases = {
      {"LeakyReLU", LeakyReLU()(Dense(6)(x))},
      {"LeakyReLU(0.05)", LeakyReLU(0.05)(Dense(6)(x))},
      {"ELU", ELU()(Dense(6)(x))},
      {"ELU(-0.5)", ELU(-0.5)(Dense(6)(x))},
      {"ReLU", ReLU()(Dense(6)(x))},
      {"ReLU(6, 0.1)", ReLU(6.0, 0.1)(Dense(6)(x))},
      {"ReLU(1, 0.2, 0.5)", ReLU(1.0, 0.2, 0.5)(Dense(6)(x))},
      {"ReLU(None, 0.2)", ReLU(std::nullopt, 0.2)(Dense(6)(x))},
      {"Softmax", Softmax()(Dense(6)(x))},
  };
  for (const auto& [name, y] : cases)
    check_model_parity<TypeParam>(Functional(x, y), {4, 3, 6}, -3.f, 3.f, name);
}

template <class Spec>
void expect_round_trip(const Spec& s) {
  const nn::Config c = s.config();
  EXPECT_EQ(Spec::from_config(c).config(), c) << c.dump();
  // And through the registry, by Keras class name.
  const auto made = nn::layer_from_config(Spec::keras_class, c, "made");
  EXPECT_EQ(made->class_name(), Spec::keras_class);
  EXPECT_EQ(made->name(), "made");
  EXPECT_EQ(made->config(), c) << c.dump();
}

TEST(NnActivationLayers, ConfigRoundTripsAndKerasConfigs) {
  using nn::Config;
  expect_round_trip(LeakyReLU());
  expect_round_trip(LeakyReLU(0.01));
  expect_round_trip(ELU());
  expect_round_trip(ELU(-0.25));
  expect_round_trip(ReLU());
  expect_round_trip(ReLU(6.0));
  expect_round_trip(ReLU(1.5, 0.1, 0.5));
  expect_round_trip(ReLU(std::nullopt, 0.2));
  expect_round_trip(Softmax());
  expect_round_trip(Softmax(3));
  for (Activation a : kAll) expect_round_trip(layers::Activation(a));

  // Keras's keys and defaults.
  EXPECT_EQ(LeakyReLU().config(), Config::make({{"negative_slope", 0.3}}));
  EXPECT_EQ(ReLU().config(),
            Config::make({{"max_value", nullptr}, {"negative_slope", 0.0}, {"threshold", 0.0}}));
  EXPECT_EQ(Softmax().config(), Config::make({{"axis", -1}}));
  EXPECT_EQ(ELU().config(), Config::make({{"alpha", 1.0}}));
  // What Keras 3 writes (with the base layer's keys, which locus ignores).
  const auto keras3 = [](const char* name) {
    return Config::make({{"name", name}, {"trainable", true}, {"dtype", "float32"}});
  };
  Config lr = keras3("leaky"), relu = keras3("relu6"), elu = keras3("elu"),
         sm = keras3("probabilities");
  lr.set("negative_slope", 0.1);
  relu.set("max_value", 6).set("negative_slope", 0).set("threshold", 0);
  sm.set("axis", -1);
  EXPECT_EQ(LeakyReLU::from_config(lr).negative_slope, 0.1);
  const ReLU r6 = ReLU::from_config(relu);
  ASSERT_TRUE(r6.max_value.has_value());
  EXPECT_EQ(*r6.max_value, 6.0);
  EXPECT_EQ(r6.negative_slope, 0.0);
  EXPECT_EQ(ELU::from_config(elu).alpha, 1.0);  // Keras 3's ELU writes no alpha
  EXPECT_EQ(Softmax::from_config(sm).axis, -1);
  EXPECT_EQ(Softmax::from_config(Config::make({{"axis", Config::list({-1})}})).axis, -1);
  EXPECT_EQ(Softmax::from_config(Config::object{}).axis, -1);
  // Keras 2 spellings: LeakyReLU's alpha (default 0.3), ELU's alpha.
  EXPECT_EQ(LeakyReLU::from_config(Config::make({{"alpha", 0.2}})).negative_slope, 0.2);
  EXPECT_EQ(LeakyReLU::from_config(Config::object{}).negative_slope, 0.3);
  EXPECT_EQ(ELU::from_config(Config::make({{"alpha", 0.5}})).alpha, 0.5);

  // A Keras Sequential configuration with every one of them.
  const auto entry = [](const char* cls, Config cfg) {
    return Config::make({{"class_name", cls}, {"config", cfg}});
  };
  const Config model = Config::make(
      {{"class_name", "Sequential"},
       {"config",
        Config::make(
            {{"name", "acts"},
             {"layers",
              Config::list(
                  {entry("InputLayer", Config::make({{"batch_shape", Config::list({nullptr, 5})}})),
                   entry("Dense", Dense(5, Activation::gelu).config()), entry("LeakyReLU", lr),
                   entry("ELU", elu), entry("ReLU", relu),
                   entry("Activation", Config::make({{"activation", "swish"}})),
                   entry("Softmax", sm)})}})}});
  const Functional f = nn::model_from_config(model);
  Model<CPUDev, double> m(f, 3);
  const HostD x = HostD::uniform({2, 5}, 4, -2.0, 2.0);
  const HostD y = m(x);
  // Rows of a softmax.
  for (std::size_t r = 0; r < 2; ++r) {
    double s = 0;
    for (std::size_t c = 0; c < 5; ++c) s += y(r, c);
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
  // ... and its input gradient is right end to end (finite differences).
  const HostD w = HostD::uniform({2, 5}, 5, -1.0, 1.0);
  HostD xv = x;
  const auto r = m.vjp({xv}, {w});
  EXPECT_TRUE(grad::grad_close(grad::values(r.input_grads[0]),
                               grad::numeric_grad(xv, [&] { return grad::project(w, m(xv)); }),
                               "the model"));
}

TEST(NnActivationLayers, ConfigErrors) {
  using nn::Config;
  EXPECT_TRUE(
      throws_with<config_error>([] { LeakyReLU(-0.1); }, "LeakyReLU", "negative_slope", ">= 0"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        LeakyReLU::from_config(Config::make({{"negative_slope", -1}}));
      },
      "LeakyReLU", "negative_slope"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        LeakyReLU::from_config(Config::make({{"negative_slope", nullptr}}));
      },
      "LeakyReLU", "negative_slope must be a number"));
  EXPECT_TRUE(throws_with<config_error>([] { LeakyReLU(std::nan("")); }, "negative_slope"));
  EXPECT_TRUE(throws_with<config_error>([] { ReLU(-1.0); }, "ReLU", "max_value"));
  EXPECT_TRUE(
      throws_with<config_error>([] { ReLU(std::nullopt, -0.5); }, "ReLU", "negative_slope"));
  EXPECT_TRUE(
      throws_with<config_error>([] { ReLU(std::nullopt, 0.0, -1.0); }, "ReLU", "threshold"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        ReLU::from_config(Config::make({{"threshold", nullptr}}));
      },
      "ReLU", "threshold must be a number"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        ReLU::from_config(Config::make({{"max_value", "six"}}));
      },
      "ReLU", "max_value"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        ELU::from_config(Config::make({{"alpha", "one"}}));
      },
      "ELU", "alpha"));
  EXPECT_TRUE(throws_with<config_error>([] { (void)ELU(std::numeric_limits<double>::infinity()); },
                                        "ELU", "alpha"));
  EXPECT_TRUE(throws_with<config_error>([] { Softmax(-2); }, "Softmax", "axis -2", "last axis"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        Softmax::from_config(Config::make({{"axis", Config::list({1, 2})}}));
      },
      "Softmax", "[1, 2]"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        Softmax::from_config(Config::make({{"axis", "last"}}));
      },
      "Softmax"));
  // Through the registry, the layer's name is added.
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        nn::layer_from_config("ReLU", Config::make({{"negative_slope", -1}}), "act3");
      },
      "negative_slope", "'act3'"));
  // A non-negative axis is refused at the call unless it is the input's last axis.
  const auto x = Input({4, 5});
  EXPECT_NO_THROW(Softmax(2)(x));
  EXPECT_TRUE(throws_with<config_error>([&] { Softmax(1)(x); }, "Softmax", "axis 1", "last axis"));
  EXPECT_TRUE(throws_with<config_error>([&] { Softmax(0)(x); }, "axis 0"));
  // Softmax over the batch axis alone would mix samples.
  EXPECT_TRUE(
      throws_with<shape_error>([] { Softmax()(Input(Shape{})); }, "Softmax", "besides the batch"));
}

}  // namespace
