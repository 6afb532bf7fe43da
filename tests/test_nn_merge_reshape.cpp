// The merging, reshaping and global pooling layers (Add, Subtract, Multiply, Concatenate,
// Reshape, ZeroPadding2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
// GlobalAveragePooling1D) and the backend primitive behind Concatenate and ZeroPadding2D
// (nn_backend copy_block):
//  * finite-difference gradient checks in float64 (gradient_check.hpp), several
//    configurations per layer;
//  * every layer, forward (inference and training) and vjp, in float32 on each device
//    against the other device and against a float64 host run;
//  * a functional model that uses every layer, on both devices, and a layer shared by two
//    calls, whose parameter gradient must be the sum of both calls' (finite differences);
//  * config round trips in Keras's keys and forms, and every typed error;
//  * copy_block against a host reference, its argument checks, one launch per call.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <locus/backend/cpu/nn.hpp>
#include <locus/backend/opencl/nn.hpp>
#include <locus/locus.hpp>

#include "gradient_check.hpp"
#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;
namespace g = locus_test::grad;
using Shapes = std::vector<Shape>;

// Tolerances: float32 on one device against the other, and float32 against float64.
constexpr double kDevRtol = 2e-5, kDevAtol = 2e-6;
constexpr double kRefRtol = 1e-4, kRefAtol = 1e-5;

// ---- gradient checks (float64, host) -----------------------------------------------------------

TEST(MergeGradient, AddTwoAndThreeInputs) {
  g::check_layer(Add(), Shapes{{2, 3, 4}, {2, 3, 4}}, {3, 4});
  g::check_layer(Add(), Shapes{{3, 5}, {3, 5}, {3, 5}}, {5}, 2);
}

TEST(MergeGradient, Subtract) {
  g::check_layer(Subtract(), Shapes{{2, 3, 4}, {2, 3, 4}}, {3, 4});
  g::check_layer(Subtract(), Shapes{{4, 2}, {4, 2}}, {2}, 5);
}

TEST(MergeGradient, MultiplyTwoAndThreeInputs) {
  g::check_layer(Multiply(), Shapes{{2, 3, 4}, {2, 3, 4}}, {3, 4});
  g::check_layer(Multiply(), Shapes{{3, 5}, {3, 5}, {3, 5}}, {5}, 3);
  g::check_layer(Multiply(), Shapes{{2, 2, 2, 3}, {2, 2, 2, 3}, {2, 2, 2, 3}, {2, 2, 2, 3}},
                 {2, 2, 3}, 4);
}

TEST(MergeGradient, ConcatenateThreeInputsAlongEachAxisOf4DInputs) {
  g::check_layer(Concatenate(-1), Shapes{{2, 3, 4, 1}, {2, 3, 4, 2}, {2, 3, 4, 3}}, {3, 4, 6});
  g::check_layer(Concatenate(3), Shapes{{2, 3, 4, 1}, {2, 3, 4, 2}, {2, 3, 4, 3}}, {3, 4, 6}, 2);
  g::check_layer(Concatenate(1), Shapes{{2, 1, 3, 2}, {2, 2, 3, 2}, {2, 3, 3, 2}}, {6, 3, 2}, 3);
  g::check_layer(Concatenate(2), Shapes{{2, 3, 1, 2}, {2, 3, 2, 2}, {2, 3, 4, 2}}, {3, 7, 2}, 4);
  g::check_layer(Concatenate(-3), Shapes{{2, 1, 3, 2}, {2, 2, 3, 2}, {2, 3, 3, 2}}, {6, 3, 2}, 5);
}

TEST(MergeGradient, ConcatenateTwoAndOneInputs) {
  g::check_layer(Concatenate(), Shapes{{3, 2}, {3, 5}}, {7});
  g::check_layer(Concatenate(1), Shapes{{2, 4, 3}, {2, 1, 3}}, {5, 3}, 2);
  g::check_layer(Concatenate(), Shapes{{2, 3, 2}}, {3, 2}, 3);
}

TEST(ReshapeGradient, ExplicitAndInferredTargets) {
  g::check_layer(Reshape({4, 3}), Shape{2, 3, 4}, {4, 3});
  g::check_layer(Reshape({-1, 2}), Shape{2, 3, 4}, {6, 2}, 2);
  g::check_layer(Reshape({2, -1, 3}), Shape{3, 12}, {2, 2, 3}, 3);
  g::check_layer(Reshape({24}), Shape{2, 2, 3, 4}, {24}, 4);
}

TEST(ZeroPadding2DGradient, AllThreePaddingForms) {
  g::check_layer(ZeroPadding2D(1), Shape{2, 3, 4, 2}, {5, 6, 2});
  g::check_layer(ZeroPadding2D(2, 1), Shape{2, 3, 4, 2}, {7, 6, 2}, 2);
  g::check_layer(ZeroPadding2D({1, 0}, {0, 2}), Shape{2, 3, 4, 2}, {4, 6, 2}, 3);
  g::check_layer(ZeroPadding2D({0, 3}, {2, 1}), Shape{1, 2, 2, 3}, {5, 5, 3}, 4);
  g::check_layer(ZeroPadding2D(0), Shape{2, 2, 3, 2}, {2, 3, 2}, 5);
}

TEST(GlobalPoolingGradient, Average2DWithAndWithoutKeepdims) {
  g::check_layer(GlobalAveragePooling2D(), Shape{2, 3, 4, 5}, {5});
  g::check_layer(GlobalAveragePooling2D(true), Shape{2, 3, 4, 5}, {1, 1, 5}, 2);
  g::check_layer(GlobalAveragePooling2D(), Shape{3, 1, 1, 2}, {2}, 3);
}

TEST(GlobalPoolingGradient, Max2DWithAndWithoutKeepdims) {
  // Random inputs: ties (where the maximum is not differentiable) have probability zero.
  g::check_layer(GlobalMaxPooling2D(), Shape{2, 3, 4, 5}, {5});
  g::check_layer(GlobalMaxPooling2D(true), Shape{2, 3, 4, 5}, {1, 1, 5}, 2);
  g::check_layer(GlobalMaxPooling2D(), Shape{3, 5, 1, 2}, {2}, 3);
}

TEST(GlobalPoolingGradient, Average1DWithAndWithoutKeepdims) {
  g::check_layer(GlobalAveragePooling1D(), Shape{2, 6, 3}, {3});
  g::check_layer(GlobalAveragePooling1D(true), Shape{2, 6, 3}, {1, 3}, 2);
}

// ---- one layer on each device ------------------------------------------------------------------

/// A model of one call of a layer like `spec` (rebuilt from its config) on Dev.
template <class Dev, class T, class Spec>
Model<Dev, T> layer_model(const Spec& spec, const Shapes& shapes, std::uint64_t seed = 7) {
  std::vector<nn::SymbolicTensor> ins;
  for (const auto& s : shapes) ins.push_back(Input(nn::per_sample(s)));
  const Spec fresh = Spec::from_config(spec.config());
  const nn::SymbolicTensor y = ins.size() == 1 ? fresh(ins[0]) : fresh(ins);
  return Model<Dev, T>(Functional(ins, {y}), seed);
}

/// A host tensor of element type T holding the float values uniform(seed) (so float and
/// float64 runs see exactly the same inputs).
template <class T>
Tensor<T, CPUDev> inputs_like(const Shape& s, std::uint64_t seed) {
  return Tensor<T, CPUDev>(cast<T>(random_host<float>(s, seed)));
}

/// What one layer computes on Dev, copied to the host: the inference output, then a
/// training call's output and dL/dx of every input for a random dL/dy.
template <class T>
struct LayerRun {
  Tensor<T, CPUDev> infer, out;
  std::vector<Tensor<T, CPUDev>> dx;
};

template <class Dev, class T, class Spec>
LayerRun<T> run_layer(const Spec& spec, const Shapes& shapes, std::uint64_t seed) {
  auto m = layer_model<Dev, T>(spec, shapes);
  std::vector<Tensor<T, Dev>> xs;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    xs.push_back(on<Dev>(inputs_like<T>(shapes[i], seed + i)));
  const auto w =
      on<Dev>(inputs_like<T>(nn::with_batch(shapes[0][0], m.output_shape()), seed + 100));
  LayerRun<T> r;
  r.infer = host(m(xs)[0]);
  auto v = m.vjp(xs, {w});
  r.out = host(v.outputs[0]);
  for (const auto& d : v.input_grads) r.dx.push_back(host(d));
  return r;
}

template <class Dev, class Spec>
void expect_parity(const Spec& spec, const Shapes& shapes, const std::string& what,
                   std::uint64_t seed = 11) {
  SCOPED_TRACE(what);
  const auto a = run_layer<Dev, float>(spec, shapes, seed);
  const auto b = run_layer<OtherDev<Dev>, float>(spec, shapes, seed);
  const auto r = run_layer<CPUDev, double>(spec, shapes, seed);
  EXPECT_TRUE(same_values(a.infer, b.infer, kDevRtol, kDevAtol)) << "inference";
  EXPECT_TRUE(same_values(a.out, b.out, kDevRtol, kDevAtol)) << "training output";
  EXPECT_TRUE(near_ref(a.infer, ref(r.infer), kRefRtol, kRefAtol)) << "inference against float64";
  EXPECT_TRUE(near_ref(a.out, ref(r.out), kRefRtol, kRefAtol)) << "training output against float64";
  ASSERT_EQ(a.dx.size(), shapes.size());
  ASSERT_EQ(b.dx.size(), shapes.size());
  ASSERT_EQ(r.dx.size(), shapes.size());
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_TRUE(same_values(a.dx[i], b.dx[i], kDevRtol, kDevAtol)) << "dL/dx" << i;
    EXPECT_TRUE(near_ref(a.dx[i], ref(r.dx[i]), kRefRtol, kRefAtol))
        << "dL/dx" << i << " against float64";
  }
}

template <class Dev>
class MergeReshapeDevices : public ::testing::Test {};
TYPED_TEST_SUITE(MergeReshapeDevices, TestDevices, DeviceNames);

TYPED_TEST(MergeReshapeDevices, MergeLayersAgreeAcrossDevicesAndWithFloat64) {
  using Dev = TypeParam;
  const Shape s{3, 7, 5, 4};
  expect_parity<Dev>(Add(), {s, s}, "Add of 2");
  expect_parity<Dev>(Add(), {s, s, s}, "Add of 3");
  expect_parity<Dev>(Subtract(), {s, s}, "Subtract");
  expect_parity<Dev>(Multiply(), {s, s}, "Multiply of 2");
  expect_parity<Dev>(Multiply(), {s, s, s}, "Multiply of 3");
  expect_parity<Dev>(Concatenate(), Shapes{{3, 7, 5, 1}, {3, 7, 5, 4}, {3, 7, 5, 2}},
                     "Concatenate axis -1");
  expect_parity<Dev>(Concatenate(1), Shapes{{3, 2, 5, 4}, {3, 7, 5, 4}, {3, 1, 5, 4}},
                     "Concatenate axis 1");
  expect_parity<Dev>(Concatenate(2), Shapes{{3, 7, 5, 4}, {3, 7, 1, 4}, {3, 7, 3, 4}},
                     "Concatenate axis 2");
}

TYPED_TEST(MergeReshapeDevices, ReshapingAndGlobalPoolingLayersAgreeAcrossDevicesAndWithFloat64) {
  using Dev = TypeParam;
  const Shape s{3, 7, 5, 4};
  expect_parity<Dev>(Reshape({-1, 10}), {s}, "Reshape");
  expect_parity<Dev>(ZeroPadding2D(2), {s}, "ZeroPadding2D int");
  expect_parity<Dev>(ZeroPadding2D(1, 3), {s}, "ZeroPadding2D symmetric pair");
  expect_parity<Dev>(ZeroPadding2D({0, 2}, {3, 1}), {s}, "ZeroPadding2D pair of pairs");
  expect_parity<Dev>(GlobalAveragePooling2D(), {s}, "GlobalAveragePooling2D");
  expect_parity<Dev>(GlobalAveragePooling2D(true), {s}, "GlobalAveragePooling2D keepdims");
  expect_parity<Dev>(GlobalMaxPooling2D(), {s}, "GlobalMaxPooling2D");
  expect_parity<Dev>(GlobalMaxPooling2D(true), {s}, "GlobalMaxPooling2D keepdims");
  expect_parity<Dev>(GlobalAveragePooling1D(), Shapes{{3, 9, 6}}, "GlobalAveragePooling1D");
  expect_parity<Dev>(GlobalAveragePooling1D(true), Shapes{{3, 9, 6}},
                     "GlobalAveragePooling1D keepdims");
}

// GlobalMaxPooling2D sends each channel's gradient to its first maximum in scan order
// (row by row), the tie rule of MaxPooling2D, on every device.
TYPED_TEST(MergeReshapeDevices, GlobalMaxPoolingRoutesTiesToTheFirstMaximum) {
  using Dev = TypeParam;
  const std::size_t n = 2, h = 3, w = 4, c = 3;
  Tensor<float, CPUDev> x(Shape{n, h, w, c});
  // Small integers: every channel's maximum occurs several times.
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 7 + i / 5) % 4);
  Tensor<float, CPUDev> dy(Shape{n, c});
  for (std::size_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(i + 1);
  Tensor<float, CPUDev> want_y(Shape{n, c}), want_dx(Shape{n, h, w, c});
  for (std::size_t b = 0; b < n; ++b) {
    for (std::size_t k = 0; k < c; ++k) {
      std::size_t best = 0, ties = 0;
      for (std::size_t p = 0; p < h * w; ++p) {
        const float v = x.data()[(b * h * w + p) * c + k];
        const float m = x.data()[(b * h * w + best) * c + k];
        if (v > m) best = p;
      }
      const float m = x.data()[(b * h * w + best) * c + k];
      for (std::size_t p = 0; p < h * w; ++p) ties += x.data()[(b * h * w + p) * c + k] == m;
      ASSERT_GT(ties, 1u) << "the input must have ties to test the tie rule";
      want_y.data()[b * c + k] = m;
      want_dx.data()[(b * h * w + best) * c + k] = dy.data()[b * c + k];
    }
  }
  auto m = layer_model<Dev, float>(GlobalMaxPooling2D(), Shapes{x.shape()});
  const auto r = m.vjp({on<Dev>(x)}, {on<Dev>(dy)});
  EXPECT_TRUE(bitwise_equal(r.outputs[0], want_y));
  EXPECT_TRUE(bitwise_equal(r.input_grads[0], want_dx));
  EXPECT_TRUE(bitwise_equal(m(on<Dev>(x)), want_y));
}

// ---- a functional model with every layer, on each device -------------------------------------

Functional every_layer_model() {
  auto x = Input({4, 4, 3});
  auto d = Conv2D(3, 3, Activation::tanh, {1, 1}, Padding::same)(x);
  auto r = Add()({x, d});  // a residual block
  auto s = Subtract()({r, Dense(3)(x)});
  auto m = Multiply()({s, r});
  auto c = Concatenate()({m, x});             // [4, 4, 6]
  auto gmp = GlobalMaxPooling2D()(c);         // [6]
  auto p = ZeroPadding2D({1, 0}, {0, 2})(c);  // [5, 6, 6]
  auto gap = GlobalAveragePooling2D()(p);     // [6]
  auto hid = Dense(6, Activation::tanh)(gap);
  auto a3 = Add()({gmp, gap, hid});
  auto seq = Reshape({3, 2})(a3);
  auto g1 = GlobalAveragePooling1D()(seq);  // [2]
  auto y = Dense(2)(Concatenate(1)({a3, g1}));
  return Functional(x, y);
}

template <class Dev, class T>
struct ModelRun {
  std::vector<Tensor<T, CPUDev>> weights;
  Tensor<T, CPUDev> infer, out, dx;
  std::vector<Tensor<T, CPUDev>> dparams;
};

/// Runs the model on Dev; the weights are its own (seeded) unless `weights` is given.
template <class Dev, class T>
ModelRun<Dev, T> run_model(const std::vector<Tensor<double, CPUDev>>* weights) {
  Model<Dev, T> m(every_layer_model(), 5);
  if (weights) {
    auto w = m.weights();
    EXPECT_EQ(w.size(), weights->size());
    for (std::size_t i = 0; i < w.size(); ++i)
      *w[i].second = on<Dev>(Tensor<T, CPUDev>(cast<T>((*weights)[i])));
  }
  const auto x = on<Dev>(inputs_like<T>({3, 4, 4, 3}, 21));
  const auto dy = on<Dev>(inputs_like<T>({3, 2}, 22));
  ModelRun<Dev, T> r;
  for (auto& [name, t] : m.weights()) r.weights.push_back(host(*t));
  r.infer = host(m(x));
  auto v = m.vjp({x}, {dy});
  r.out = host(v.outputs[0]);
  r.dx = host(v.input_grads[0]);
  for (const auto& p : v.param_grads) r.dparams.push_back(host(p));
  return r;
}

TYPED_TEST(MergeReshapeDevices, FunctionalModelWithEveryLayerAgreesAcrossDevicesAndWithFloat64) {
  using Dev = TypeParam;
  const auto a = run_model<Dev, float>(nullptr);
  const auto b = run_model<OtherDev<Dev>, float>(nullptr);
  std::vector<Tensor<double, CPUDev>> w64;
  for (const auto& w : a.weights) w64.emplace_back(cast<double>(w));
  const auto r = run_model<CPUDev, double>(&w64);
  ASSERT_EQ(a.weights.size(), b.weights.size());
  for (std::size_t i = 0; i < a.weights.size(); ++i)
    EXPECT_TRUE(bitwise_equal(a.weights[i], b.weights[i]));
  EXPECT_TRUE(same_values(a.infer, b.infer, kDevRtol, kDevAtol));
  EXPECT_TRUE(same_values(a.out, a.infer, kDevRtol, kDevAtol))
      << "training and inference agree (no dropout)";
  EXPECT_TRUE(same_values(a.out, b.out, kDevRtol, kDevAtol));
  EXPECT_TRUE(same_values(a.dx, b.dx, kDevRtol, kDevAtol));
  EXPECT_TRUE(near_ref(a.out, ref(r.out), kRefRtol, kRefAtol));
  EXPECT_TRUE(near_ref(a.dx, ref(r.dx), kRefRtol, kRefAtol));
  ASSERT_EQ(a.dparams.size(), b.dparams.size());
  ASSERT_EQ(a.dparams.size(), r.dparams.size());
  ASSERT_EQ(a.dparams.size(), 8u);  // conv, dense, dense, dense: kernel and bias each
  for (std::size_t i = 0; i < a.dparams.size(); ++i) {
    EXPECT_TRUE(same_values(a.dparams[i], b.dparams[i], kDevRtol, kDevAtol)) << "parameter " << i;
    EXPECT_TRUE(near_ref(a.dparams[i], ref(r.dparams[i]), kRefRtol, kRefAtol)) << "parameter " << i;
  }
}

TEST(MergeFunctional, EveryLayerModelGradientMatchesFiniteDifferences) {
  Model<g::D, double> m(every_layer_model(), 5);
  g::Tn x = g::Tn::uniform({2, 4, 4, 3}, 31, -1.0, 1.0);
  const g::Tn w = g::Tn::uniform({2, 2}, 32, -1.0, 1.0);
  const auto r = m.vjp({x}, {w});
  const auto loss = [&] { return g::project(w, m(x)); };
  EXPECT_TRUE(g::grad_close(g::values(r.input_grads[0]), g::numeric_grad(x, loss), "dL/dx"));
  auto params = m.parameters();
  ASSERT_EQ(params.size(), r.param_grads.size());
  for (std::size_t j = 0; j < params.size(); ++j) {
    EXPECT_TRUE(g::grad_close(g::values(r.param_grads[j]), g::numeric_grad(params[j]->value, loss),
                              "dL/d" + params[j]->name));
  }
}

// ---- a layer called twice in one model
// -------------------------------------------------------------

/// Dense d shared by two inputs, merged by `merge`; vjp's parameter gradients against
/// finite differences of the whole model.
template <class Merge>
void check_shared_dense(const Merge& merge) {
  SCOPED_TRACE(merge.class_name());
  const Dense d(4, Activation::tanh);
  auto a = Input({3});
  auto b = Input({3});
  auto y = merge({d(a), d(b)});
  Model<g::D, double> m(Functional({a, b}, {y}), 3);
  std::size_t dense_layers = 0;
  for (std::size_t i = 0; i < m.size(); ++i) dense_layers += m.layer(i).class_name() == "Dense";
  ASSERT_EQ(dense_layers, 1u) << "one Dense layer, called twice";
  auto params = m.parameters();
  ASSERT_EQ(params.size(), 2u) << "the calls share one kernel and one bias";
  const std::vector<g::Tn> xs{g::Tn::uniform({5, 3}, 1, -1.0, 1.0),
                              g::Tn::uniform({5, 3}, 2, -1.0, 1.0)};
  const g::Tn w = g::Tn::uniform(nn::with_batch(5, m.output_shape()), 3, -1.0, 1.0);
  const auto r = m.vjp(xs, {w});
  const auto loss = [&] { return g::project(w, m(xs)[0]); };
  for (std::size_t j = 0; j < params.size(); ++j) {
    EXPECT_TRUE(g::grad_close(g::values(r.param_grads[j]), g::numeric_grad(params[j]->value, loss),
                              "dL/d" + params[j]->name));
  }
}

TEST(MergeSharedLayer, ParameterGradientsSumOverBothCalls) {
  check_shared_dense(Add());
  check_shared_dense(Subtract());
  check_shared_dense(Multiply());
  check_shared_dense(Concatenate());
}

// For Add the sum is explicit: the shared layer's gradient is the sum of the gradients
// of two models that each make one of the calls, with the same weights.
TEST(MergeSharedLayer, AddGradientIsTheSumOfTheSeparateCalls) {
  const Dense d(4, Activation::tanh);
  auto a = Input({3});
  auto b = Input({3});
  Model<g::D, double> both(Functional({a, b}, {Add()({d(a), d(b)})}), 3);
  const std::vector<g::Tn> xs{g::Tn::uniform({5, 3}, 1, -1.0, 1.0),
                              g::Tn::uniform({5, 3}, 2, -1.0, 1.0)};
  const g::Tn w = g::Tn::uniform({5, 4}, 3, -1.0, 1.0);
  const auto r = both.vjp(xs, {w});
  std::vector<std::vector<g::Tn>> single;
  for (std::size_t i = 0; i < 2; ++i) {
    auto x = Input({3});
    Model<g::D, double> one(Functional(x, Dense(4, Activation::tanh)(x)), 9);
    auto ws = one.weights();
    auto wb = both.weights();
    ASSERT_EQ(ws.size(), wb.size());
    for (std::size_t k = 0; k < ws.size(); ++k) *ws[k].second = *wb[k].second;
    single.push_back(one.vjp({xs[i]}, {w}).param_grads);
  }
  for (std::size_t j = 0; j < r.param_grads.size(); ++j) {
    const g::Tn sum = single[0][j] + single[1][j];
    EXPECT_TRUE(g::grad_close(g::values(r.param_grads[j]), g::values(sum),
                              "sum of calls, parameter " + std::to_string(j)));
    EXPECT_FALSE(
        g::grad_close(g::values(r.param_grads[j]), g::values(single[0][j]), "first call alone"));
  }
}

// ---- configurations
// ----------------------------------------------------------------------------------

template <class Spec>
void expect_round_trip(const Spec& spec) {
  SCOPED_TRACE(spec.class_name() + " " + spec.config().dump());
  const nn::Config c = spec.config();
  EXPECT_TRUE(Spec::from_config(c).config() == c);
  const auto made = nn::layer_from_config(spec.class_name(), c, "x");
  EXPECT_EQ(made->class_name(), spec.class_name());
  EXPECT_EQ(made->name(), "x");
  EXPECT_TRUE(made->config() == c);
}

TEST(MergeReshapeConfig, RoundTrips) {
  expect_round_trip(Add());
  expect_round_trip(Subtract());
  expect_round_trip(Multiply());
  expect_round_trip(Concatenate());
  expect_round_trip(Concatenate(2));
  expect_round_trip(Concatenate(-3));
  expect_round_trip(Reshape({3, -1, 2}));
  expect_round_trip(Reshape({12}));
  expect_round_trip(ZeroPadding2D());
  expect_round_trip(ZeroPadding2D(2, 3));
  expect_round_trip(ZeroPadding2D({0, 1}, {2, 3}));
  expect_round_trip(GlobalAveragePooling2D());
  expect_round_trip(GlobalAveragePooling2D(true));
  expect_round_trip(GlobalMaxPooling2D());
  expect_round_trip(GlobalMaxPooling2D(true));
  expect_round_trip(GlobalAveragePooling1D());
  expect_round_trip(GlobalAveragePooling1D(true));
}

TEST(MergeReshapeConfig, KerasKeysAndForms) {
  using nn::Config;
  EXPECT_EQ(Add().class_name(), "Add");
  EXPECT_EQ(GlobalAveragePooling2D().class_name(), "GlobalAveragePooling2D");
  EXPECT_EQ(GlobalMaxPooling2D().class_name(), "GlobalMaxPooling2D");
  EXPECT_EQ(GlobalAveragePooling1D().class_name(), "GlobalAveragePooling1D");
  EXPECT_EQ(ZeroPadding2D().class_name(), "ZeroPadding2D");
  EXPECT_EQ(Concatenate(2).config().dump(), Config::make({{"axis", 2}}).dump());
  EXPECT_EQ(Concatenate::from_config(Config::make({{"name", "c"}, {"trainable", true}})).axis, -1);
  EXPECT_EQ(Reshape({3, -1}).config().dump(),
            Config::make({{"target_shape", Config::list({3, -1})}}).dump());
  EXPECT_EQ(GlobalMaxPooling2D(true).config().dump(),
            Config::make({{"data_format", "channels_last"}, {"keepdims", true}}).dump());
  EXPECT_FALSE(
      GlobalAveragePooling1D::from_config(Config::make({{"data_format", nullptr}})).keepdims);
  // Keras's three padding forms (and a pair mixing an int and a pair) read as
  // ((top, bottom), (left, right)), which is how Keras writes it back.
  const auto padding_of = [](const Config& p) {
    return ZeroPadding2D::from_config(
               Config::make({{"padding", p}, {"data_format", "channels_last"}}))
        .config()
        .dump();
  };
  const auto keras = [](int t, int b, int l, int r) {
    return Config::make({{"padding", Config::list({Config::list({t, b}), Config::list({l, r})})},
                         {"data_format", "channels_last"}})
        .dump();
  };
  EXPECT_EQ(padding_of(2), keras(2, 2, 2, 2));
  EXPECT_EQ(padding_of(Config::list({1, 3})), keras(1, 1, 3, 3));
  EXPECT_EQ(padding_of(Config::list({Config::list({0, 1}), Config::list({2, 3})})),
            keras(0, 1, 2, 3));
  EXPECT_EQ(padding_of(Config::list({4, Config::list({2, 3})})), keras(4, 4, 2, 3));
  EXPECT_EQ(ZeroPadding2D::from_config(Config(Config::object{})).config().dump(),
            keras(1, 1, 1, 1));
}

TEST(MergeReshapeConfig, FunctionalModelRoundTripsThroughItsConfig) {
  const Functional f = every_layer_model();
  const nn::Config c = f.config();
  const Functional back =
      nn::model_from_config(nn::Config::make({{"class_name", "Functional"}, {"config", c}}));
  EXPECT_TRUE(back.config() == c) << c.dump() << "\n" << back.config().dump();
  // Keras's automatic names.
  const std::string dump = c.dump();
  for (const char* name :
       {"\"add\"", "\"add_1\"", "\"subtract\"", "\"multiply\"", "\"concatenate\"",
        "\"concatenate_1\"", "\"zero_padding2d\"", "\"global_max_pooling2d\"",
        "\"global_average_pooling2d\"", "\"global_average_pooling1d\"", "\"reshape\""}) {
    EXPECT_NE(dump.find(name), std::string::npos) << name;
  }
  // The rebuilt description computes the same function.
  Model<g::D, double> m1(f, 4), m2(back, 4);
  const g::Tn x = g::Tn::uniform({2, 4, 4, 3}, 5, -1.0, 1.0);
  EXPECT_TRUE(bitwise_equal(m1(x), m2(x)));
}

// ---- typed errors
// --------------------------------------------------------------------------------------

TEST(MergeReshapeErrors, WrongNumberOfInputs) {
  auto x = Input({3});
  EXPECT_TRUE(throws_with<argument_error>([&] { Add()({x}); }, "locus::Add", "called on 1 inputs",
                                          "2 to any number"));
  EXPECT_TRUE(throws_with<argument_error>([&] { Multiply()({x}); }, "locus::Multiply",
                                          "called on 1 inputs"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        Subtract()({x, x, x});
      },
      "locus::Subtract", "called on 3 inputs", "takes 2"));
  EXPECT_TRUE(throws_with<argument_error>([&] { Subtract()({x}); }, "locus::Subtract",
                                          "called on 1 inputs"));
  EXPECT_TRUE(throws_with<argument_error>([&] { Concatenate()(std::vector<nn::SymbolicTensor>{}); },
                                          "locus::Concatenate", "called on 0 inputs"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        Reshape({3})({x, x});
      },
      "locus::Reshape", "called on 2 inputs"));
}

TEST(MergeReshapeErrors, MismatchedShapesNameTheLayerAndEveryShape) {
  auto a = Input({2, 3});
  auto b = Input({3, 2});
  auto c = Input({2, 3});
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Add().named("sum")({a, c, b});
      },
      "locus::Add 'sum'", "[2, 3], [2, 3], [3, 2]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Subtract()({a, b});
      },
      "locus::Subtract", "[2, 3], [3, 2]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Multiply()({a, Input({2, 1})});
      },
      "locus::Multiply", "[2, 3], [2, 1]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Concatenate()({a, b});
      },
      "locus::Concatenate", "[2, 3], [3, 2]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Concatenate(1)({a, Input({2, 3, 1})});
      },
      "locus::Concatenate", "[2, 3], [2, 3, 1]"));
  // Shapes that agree but for the concatenation axis are fine, the others are not.
  EXPECT_EQ(Concatenate(2)({a, Input({2, 5})}).shape(), Shape({2, 8}));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Concatenate(1)({a, Input({2, 5})});
      },
      "locus::Concatenate"));
}

TEST(MergeReshapeErrors, ConcatenateAxes) {
  auto a = Input({2, 3});
  EXPECT_TRUE(
      throws_with<argument_error>([] { Concatenate(0); }, "locus::Concatenate", "batch axis"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        Concatenate::from_config(nn::Config::make({{"axis", 0}}));
      },
      "locus::Concatenate", "batch axis"));
  EXPECT_TRUE(throws_with<axis_error>(
      [&] {
        Concatenate(3)({a, a});
      },
      "locus::Concatenate", "axis 3", "out of range"));
  EXPECT_TRUE(throws_with<axis_error>(
      [&] {
        Concatenate(-3)({a, a});
      },
      "locus::Concatenate", "axis -3", "batch axis"));
  EXPECT_TRUE(throws_with<axis_error>(
      [&] {
        Concatenate(-4)({a, a});
      },
      "locus::Concatenate", "out of range"));
}

TEST(MergeReshapeErrors, BadTargetShapes) {
  EXPECT_TRUE(throws_with<argument_error>(
      [] {
        Reshape({-1, 2, -1});
      },
      "locus::Reshape", "more than one -1"));
  EXPECT_TRUE(throws_with<argument_error>([] { Reshape({3, 0}); }, "locus::Reshape", "(3, 0)"));
  EXPECT_TRUE(throws_with<argument_error>(
      [] {
        Reshape({-2, 3});
      },
      "locus::Reshape", "neither positive nor -1"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        Reshape::from_config(nn::Config::make({{"target_shape", nn::Config::list({-1, -1})}}));
      },
      "locus::Reshape", "more than one -1"));
  EXPECT_TRUE(throws_with<config_error>(
      [] {
        Reshape::from_config(nn::Config::make({{"target_shape", 4}}));
      },
      "locus::Reshape", "list of integers"));
  auto x = Input({3, 4});
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Reshape({5, 2}).named("r")(x);
      },
      "locus::Reshape 'r'", "[3, 4]", "12 elements", "(5, 2)"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        Reshape({5, -1})(x);
      },
      "locus::Reshape", "[3, 4]", "(5, -1)"));
  EXPECT_EQ(Reshape({-1})(x).shape(), Shape({12}));
}

TEST(MergeReshapeErrors, ChannelsFirstAndBadPaddingAreRefused) {
  using nn::Config;
  const Config cf = Config::make({{"data_format", "channels_first"}});
  EXPECT_TRUE(throws_with<config_error>([&] { ZeroPadding2D::from_config(cf); }, "ZeroPadding2D",
                                        "channels_first"));
  EXPECT_TRUE(throws_with<config_error>([&] { GlobalAveragePooling2D::from_config(cf); },
                                        "GlobalAveragePooling2D", "channels_first"));
  EXPECT_TRUE(throws_with<config_error>([&] { GlobalMaxPooling2D::from_config(cf); },
                                        "GlobalMaxPooling2D", "channels_first"));
  EXPECT_TRUE(throws_with<config_error>([&] { GlobalAveragePooling1D::from_config(cf); },
                                        "GlobalAveragePooling1D", "channels_first"));
  for (const Config& p :
       {Config(-1), Config::list({1, 2, 3}), Config::list({Config::list({1, -2}), Config(1)}),
        Config::list({Config::list({1, 2, 3}), Config(1)}), Config("same")}) {
    EXPECT_TRUE(throws_with<config_error>(
        [&] {
          ZeroPadding2D::from_config(Config::make({{"padding", p}}));
        },
        "locus::ZeroPadding2D", "padding"))
        << p.dump();
  }
}

TEST(MergeReshapeErrors, WrongInputRanks) {
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        ZeroPadding2D()(Input({4, 4}));
      },
      "locus::ZeroPadding2D", "[4, 4]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        GlobalMaxPooling2D()(Input({4, 3}));
      },
      "locus::GlobalMaxPooling2D", "[height, width, channels]", "[4, 3]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        GlobalAveragePooling2D()(Input({4, 4, 4, 3}));
      },
      "locus::GlobalAveragePooling2D", "[4, 4, 4, 3]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        GlobalAveragePooling1D()(Input({4, 4, 3}));
      },
      "locus::GlobalAveragePooling1D", "[steps, features]", "[4, 4, 3]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        GlobalAveragePooling1D()(Input({0, 3}));
      },
      "locus::GlobalAveragePooling1D", "empty axis"));
}

// The merge layers' own guard, for callers other than a model (which refuses inputs of
// different batch sizes before any layer runs).
TEST(MergeReshapeErrors, ForwardRefusesInputsOfDifferentShapes) {
  using D = CPUDev;
  const Tensor<float, D> a(Shape{2, 3}), b(Shape{3, 3});
  const nn::Arg<D, float> args[] = {{a, nullptr}, {b, nullptr}};
  nn::Forward<D, float> f;
  f.in = args;
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)Add().forward<D, float>(f); }, "locus::Add",
                                       "[2, 3], [3, 3]"));
  EXPECT_TRUE(
      throws_with<shape_error>([&] { (void)Multiply().forward<D, float>(f); }, "locus::Multiply"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)Concatenate().forward<D, float>(f); },
                                       "locus::Concatenate", "batch sizes"));
}

// ---- the backend primitive: copy_block
// -----------------------------------------------------------------

template <class Dev>
using NB = nn_backend_for<Dev>;

struct block_case {
  const char* name;
  block_layout from, to;
  block_extent d;
  std::size_t src_size, dst_size;
};

// Host reference: dst with the block written over it.
template <class T>
std::vector<T> copied(const std::vector<T>& src, std::vector<T> dst, const block_case& k) {
  for (std::size_t i = 0; i < k.d[0]; ++i)
    for (std::size_t j = 0; j < k.d[1]; ++j)
      for (std::size_t l = 0; l < k.d[2]; ++l) dst[k.to.at(i, j, l)] = src[k.from.at(i, j, l)];
  return dst;
}

template <class T, class Dev>
void expect_block_copy(const block_case& k) {
  SCOPED_TRACE(k.name);
  Tensor<T, CPUDev> src(Shape{k.src_size}), dst(Shape{k.dst_size});
  for (std::size_t i = 0; i < k.src_size; ++i) src.data()[i] = static_cast<T>(i + 1);
  for (std::size_t i = 0; i < k.dst_size; ++i)
    dst.data()[i] = static_cast<T>(-static_cast<int>(i) - 1);
  const std::vector<T> want =
      copied(std::vector<T>(src.begin(), src.end()), std::vector<T>(dst.begin(), dst.end()), k);
  const auto s = on<Dev>(src);
  auto d = on<Dev>(dst);
  NB<Dev>::copy_block(s.storage(), k.from, d.storage(), k.to, k.d);
  EXPECT_TRUE(bitwise_equal(d, Tensor<T, CPUDev>::from_data(Shape{k.dst_size}, want.data())));
}

template <class Dev>
class BlockCopy : public ::testing::Test {};
TYPED_TEST_SUITE(BlockCopy, TestDevices, DeviceNames);

TYPED_TEST(BlockCopy, MatchesTheHostReference) {
  using Dev = TypeParam;
  const block_case cases[] = {
      // An image into a padded one (ZeroPadding2D) and back (its gradient).
      {"pad", {0, {24, 8, 1}}, {13, {60, 12, 1}}, {2, 3, 8}, 48, 120},
      {"crop", {13, {60, 12, 1}}, {0, {24, 8, 1}}, {2, 3, 8}, 120, 48},
      // A slice of a concatenation (Concatenate's layout) and its split.
      {"concat", {0, {0, 6, 1}}, {4, {0, 15, 1}}, {1, 7, 6}, 42, 105},
      // Strided on both sides along every axis (not contiguous anywhere).
      {"strided", {1, {40, 13, 3}}, {2, {1, 8, 2}}, {2, 3, 4}, 80, 26},
      // A source read repeatedly (stride 0: broadcast).
      {"broadcast", {3, {0, 0, 1}}, {0, {10, 5, 1}}, {3, 2, 5}, 9, 30},
      // Many rows (several host tasks, several work-groups).
      {"large",
       {5, {0, 700, 1}},
       {11, {0, 1000, 1}},
       {1, 300, 700},
       300 * 700 + 5,
       300 * 1000 + 11},
  };
  for (const auto& k : cases) {
    expect_block_copy<float, Dev>(k);
    expect_block_copy<std::int32_t, Dev>(k);
  }
}

TYPED_TEST(BlockCopy, AnEmptyBlockChangesNothing) {
  using Dev = TypeParam;
  // Offsets far outside the buffers: an empty block reads and writes nothing.
  expect_block_copy<float, Dev>({"empty", {100, {1, 1, 1}}, {100, {0, 0, 0}}, {0, 3, 4}, 4, 4});
  expect_block_copy<float, Dev>(
      {"empty last axis", {100, {1, 1, 1}}, {100, {1, 1, 1}}, {2, 3, 0}, 4, 4});
}

TYPED_TEST(BlockCopy, RefusesBadArguments) {
  using Dev = TypeParam;
  Tensor<float, Dev> a(Shape{24}), b(Shape{24});
  const auto call = [&](const block_layout& from, const block_layout& to, const block_extent& d) {
    return [&, from, to, d] { NB<Dev>::copy_block(a.storage(), from, b.storage(), to, d); };
  };
  const block_layout dense{0, {12, 4, 1}};
  EXPECT_TRUE(throws_with<argument_error>(call(block_layout{1, {12, 4, 1}}, dense, {2, 3, 4}),
                                          "copy_block", "[2, 3, 4]",
                                          "past the source buffer of 24 elements"));
  EXPECT_TRUE(throws_with<argument_error>(call(dense, block_layout{0, {13, 4, 1}}, {2, 3, 4}),
                                          "copy_block",
                                          "past the destination buffer of 24 elements"));
  EXPECT_TRUE(throws_with<argument_error>(call(dense, block_layout{0, {0, 4, 1}}, {2, 3, 4}),
                                          "copy_block", "writes some element", "twice"));
  EXPECT_TRUE(throws_with<argument_error>(call(dense, block_layout{0, {0, 2, 1}}, {1, 3, 4}),
                                          "copy_block", "twice"));
  EXPECT_TRUE(throws_with<argument_error>(
      call(block_layout{0, {0, 4, 1}}, block_layout{0, {std::size_t(1) << 62, 4, 1}}, {8, 3, 4}),
      "copy_block", "past the destination"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        NB<Dev>::copy_block(a.storage(), dense, a.storage(), dense, {2, 3, 4});
      },
      "copy_block", "same buffer"));
  // The checks leave the destination as it was.
  EXPECT_TRUE(bitwise_equal(b, Tensor<float, CPUDev>(Shape{24})));
}

// One OpenCL launch per call and no transfer; the host backend launches nothing.
TYPED_TEST(BlockCopy, EachCallIsOneKernelLaunchAndNoTransfer) {
  using Dev = TypeParam;
  const auto src = on<Dev>(random_host<float>({2, 3, 4, 5}, 1));
  auto dst = Tensor<float, Dev>::zeros({2, 5, 6, 5});
  const auto before = stats<Dev>();
  NB<Dev>::copy_block(src.storage(), {0, {60, 20, 1}}, dst.storage(), {35, {150, 30, 1}},
                      {2, 3, 20});
  const auto after = stats<Dev>();
  EXPECT_EQ(after.kernel_launches - before.kernel_launches, HostDevice<Dev> ? 0u : 1u);
  EXPECT_EQ(after.transfer_calls(), before.transfer_calls());
}

}  // namespace
