// DepthwiseConv2D, SeparableConv2D, Conv1D, LayerNormalization and Embedding:
//  * gradient checks in float64 (finite differences through one-layer models) over
//    strides, paddings, kernels, depth multipliers, bias and every activation;
//  * the backend kernels they add (depthwise forward and gradients, scatter_add_rows) and
//    the layers' forward passes against float64 loops written from the definitions, on
//    every device;
//  * forward and vjp of every layer agreeing between the devices in float32;
//  * Keras configurations (round trips, Keras's spellings) and typed errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "gradient_check.hpp"
#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;
using locus_test::grad::check_layer;

using HostF = Tensor<float, CPUDev>;
using HostD = Tensor<double, CPUDev>;
using HostI = Tensor<std::int32_t, CPUDev>;

/// Every activation the enum has, once each (Keras's alias "swish" names silu again).
std::vector<Activation> every_activation() {
  std::vector<Activation> out;
  std::set<Activation> seen;
  for (const auto& [name, a] : locus::detail::activation_names) {
    if (seen.insert(a).second) out.push_back(a);
  }
  return out;
}

std::string activation_name(const ::testing::TestParamInfo<Activation>& info) {
  return to_string(info.param);
}

// ---- float64 references, written from the definitions ----------------------------------------

/// Keras's extent and leading pad of one spatial axis ('same': pad_total = max((out - 1) *
/// stride + kernel - in, 0), the smaller half in front).
struct AxisRef {
  std::size_t out, pad;
};
AxisRef axis_ref(std::size_t in, std::size_t k, std::size_t s, bool same) {
  if (!same) return {(in - k) / s + 1, 0};
  const std::size_t out = (in + s - 1) / s;
  const long total = std::max(0L, static_cast<long>((out - 1) * s + k) - static_cast<long>(in));
  return {out, static_cast<std::size_t>(total / 2)};
}

double at(const Ref& a, std::initializer_list<std::size_t> idx) {
  std::size_t flat = 0, d = 0;
  for (auto i : idx) flat = flat * a.shape()[d++] + i;
  return a.data()[flat];
}

/// y[n, oh, ow, c*M + m] = sum over (kh, kw) of x[n, oh*sh + kh - pt, ow*sw + kw - pl, c] *
/// k[kh, kw, c, m], zero outside the image.
Ref depthwise_ref(const Ref& x, const Ref& k, std::size_t sh, std::size_t sw, bool same) {
  const std::size_t N = x.shape()[0], H = x.shape()[1], W = x.shape()[2], C = x.shape()[3];
  const std::size_t KH = k.shape()[0], KW = k.shape()[1], M = k.shape()[3];
  const AxisRef ah = axis_ref(H, KH, sh, same), aw = axis_ref(W, KW, sw, same);
  Ref y = Ref::from_shape({N, ah.out, aw.out, C * M});
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t oh = 0; oh < ah.out; ++oh)
      for (std::size_t ow = 0; ow < aw.out; ++ow)
        for (std::size_t c = 0; c < C; ++c)
          for (std::size_t m = 0; m < M; ++m) {
            double s = 0;
            for (std::size_t kh = 0; kh < KH; ++kh)
              for (std::size_t kw = 0; kw < KW; ++kw) {
                const long ih = static_cast<long>(oh * sh + kh) - static_cast<long>(ah.pad);
                const long iw = static_cast<long>(ow * sw + kw) - static_cast<long>(aw.pad);
                if (ih < 0 || iw < 0 || ih >= static_cast<long>(H) || iw >= static_cast<long>(W))
                  continue;
                s += at(x, {n, static_cast<std::size_t>(ih), static_cast<std::size_t>(iw), c}) *
                     at(k, {kh, kw, c, m});
              }
            y(n, oh, ow, c * M + m) = s;
          }
  return y;
}

/// The adjoints of depthwise_ref, by scattering every product of the definition: dx and
/// dk for an output gradient dy.
void depthwise_grad_ref(const Ref& x, const Ref& k, const Ref& dy, std::size_t sh, std::size_t sw,
                        bool same, Ref& dx, Ref& dk) {
  const std::size_t N = x.shape()[0], H = x.shape()[1], W = x.shape()[2], C = x.shape()[3];
  const std::size_t KH = k.shape()[0], KW = k.shape()[1], M = k.shape()[3];
  const AxisRef ah = axis_ref(H, KH, sh, same), aw = axis_ref(W, KW, sw, same);
  dx = Ref::from_shape(x.shape());
  dx.fill(0);
  dk = Ref::from_shape(k.shape());
  dk.fill(0);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t oh = 0; oh < ah.out; ++oh)
      for (std::size_t ow = 0; ow < aw.out; ++ow)
        for (std::size_t c = 0; c < C; ++c)
          for (std::size_t m = 0; m < M; ++m)
            for (std::size_t kh = 0; kh < KH; ++kh)
              for (std::size_t kw = 0; kw < KW; ++kw) {
                const long ih = static_cast<long>(oh * sh + kh) - static_cast<long>(ah.pad);
                const long iw = static_cast<long>(ow * sw + kw) - static_cast<long>(aw.pad);
                if (ih < 0 || iw < 0 || ih >= static_cast<long>(H) || iw >= static_cast<long>(W))
                  continue;
                const auto h = static_cast<std::size_t>(ih), w = static_cast<std::size_t>(iw);
                const double g = dy(n, oh, ow, c * M + m);
                dx(n, h, w, c) += g * k(kh, kw, c, m);
                dk(kh, kw, c, m) += g * x(n, h, w, c);
              }
}

/// Conv1D by the definition: 'causal' puts K - 1 zero steps in front and convolves 'valid'.
Ref conv1d_ref(const Ref& x, const Ref& k, std::size_t s, const std::string& padding) {
  const std::size_t N = x.shape()[0], L = x.shape()[1], C = x.shape()[2];
  const std::size_t K = k.shape()[0], F = k.shape()[2];
  std::size_t out = 0, pad = 0;
  if (padding == "causal") {
    out = (L + K - 1 - K) / s + 1;
    pad = K - 1;
  } else {
    const AxisRef a = axis_ref(L, K, s, padding == "same");
    out = a.out;
    pad = a.pad;
  }
  Ref y = Ref::from_shape({N, out, F});
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t t = 0; t < out; ++t)
      for (std::size_t f = 0; f < F; ++f) {
        double acc = 0;
        for (std::size_t j = 0; j < K; ++j) {
          const long i = static_cast<long>(t * s + j) - static_cast<long>(pad);
          if (i < 0 || i >= static_cast<long>(L)) continue;
          for (std::size_t c = 0; c < C; ++c)
            acc += x(n, static_cast<std::size_t>(i), c) * k(j, c, f);
        }
        y(n, t, f) = acc;
      }
  return y;
}

/// A host float tensor as a float64 reference array.
Ref r64(const HostF& t) {
  return ref(t);
}

/// Every weight of a model (any device), in weights() order, as float64 arrays.
template <class Dev>
std::vector<Ref> weight_refs(Model<Dev, float>& m) {
  std::vector<Ref> out;
  for (auto& [name, t] : m.weights()) out.push_back(ref(*t));
  return out;
}

// ---- models ---------------------------------------------------------------------------------

/// A float32 model of one call of `spec` (rebuilt from its configuration) on inputs of
/// per-sample shape `in`, with every weight set to uniform values in [-0.5, 0.5).
template <class Dev, class Spec>
Model<Dev, float> one_layer(const Spec& spec, const Shape& in, std::uint64_t seed = 11) {
  const auto x = Input(in);
  const Spec fresh = Spec::from_config(spec.config());
  Model<Dev, float> m(Functional(x, fresh(x)), seed);
  std::uint64_t s = seed * 100;
  for (auto& [name, t] : m.weights())
    *t = on<Dev>(random_host<float>(t->shape(), s++, -0.5f, 0.5f));
  return m;
}

// =============================================================================================
// Gradient checks (float64, host)
// =============================================================================================

struct DepthwiseCase {
  std::string name;
  Window kernel;
  std::size_t stride, multiplier;
  Padding padding;
  bool bias;
  Activation act;
  Shape in, out;
};
void PrintTo(const DepthwiseCase& c, std::ostream* os) {
  *os << c.name;
}

class ConvNormEmbeddingDepthwiseGradient : public ::testing::TestWithParam<DepthwiseCase> {};

TEST_P(ConvNormEmbeddingDepthwiseGradient, InputAndParameters) {
  const DepthwiseCase& c = GetParam();
  check_layer(
      DepthwiseConv2D(c.kernel, c.multiplier, c.act, {c.stride, c.stride}, c.padding, c.bias), c.in,
      c.out);
}

// Input [2, 5, 6, 3]: odd and even extents, so 'same' padding is asymmetric on one axis.
// clang-format off
INSTANTIATE_TEST_SUITE_P(
    Configurations, ConvNormEmbeddingDepthwiseGradient,
    ::testing::Values(
        DepthwiseCase{"valid_s1_3x3_m1", {3, 3}, 1, 1, Padding::valid, true, Activation::linear, {2, 5, 6, 3}, {3, 4, 3}},
        DepthwiseCase{"same_s1_3x3_m2", {3, 3}, 1, 2, Padding::same, true, Activation::tanh, {2, 5, 6, 3}, {5, 6, 6}},
        DepthwiseCase{"valid_s2_3x3_m2", {3, 3}, 2, 2, Padding::valid, true, Activation::relu, {2, 5, 6, 3}, {2, 2, 6}},
        DepthwiseCase{"same_s2_2x3_m1", {2, 3}, 2, 1, Padding::same, true, Activation::sigmoid, {2, 5, 6, 3}, {3, 3, 3}},
        DepthwiseCase{"same_s2_3x3_m2_nobias", {3, 3}, 2, 2, Padding::same, false, Activation::linear, {2, 5, 6, 3}, {3, 3, 6}},
        DepthwiseCase{"valid_s1_2x3_m1_nobias", {2, 3}, 1, 1, Padding::valid, false, Activation::softmax, {1, 4, 5, 2}, {3, 3, 2}},
        DepthwiseCase{"same_s1_2x3_m2", {2, 3}, 1, 2, Padding::same, true, Activation::gelu, {1, 4, 5, 2}, {4, 5, 4}}),
    [](const auto& info) { return info.param.name; });
// clang-format on

struct SeparableCase {
  std::string name;
  std::size_t filters;
  Window kernel;
  std::size_t stride, multiplier;
  Padding padding;
  bool bias;
  Activation act;
  Shape in, out;
};
void PrintTo(const SeparableCase& c, std::ostream* os) {
  *os << c.name;
}

class ConvNormEmbeddingSeparableGradient : public ::testing::TestWithParam<SeparableCase> {};

TEST_P(ConvNormEmbeddingSeparableGradient, InputAndParameters) {
  const SeparableCase& c = GetParam();
  SeparableConv2D spec(c.filters, c.kernel, c.act, {c.stride, c.stride}, c.padding, c.multiplier,
                       c.bias);
  check_layer(spec, c.in, c.out);
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(
    Configurations, ConvNormEmbeddingSeparableGradient,
    ::testing::Values(
        SeparableCase{"valid_s1_3x3_m1", 2, {3, 3}, 1, 1, Padding::valid, true, Activation::linear, {2, 5, 6, 3}, {3, 4, 2}},
        SeparableCase{"same_s1_3x3_m2", 4, {3, 3}, 1, 2, Padding::same, true, Activation::tanh, {2, 5, 6, 3}, {5, 6, 4}},
        SeparableCase{"valid_s2_3x3_m2", 3, {3, 3}, 2, 2, Padding::valid, true, Activation::relu, {2, 5, 6, 3}, {2, 2, 3}},
        SeparableCase{"same_s2_2x3_m1", 2, {2, 3}, 2, 1, Padding::same, true, Activation::sigmoid, {2, 5, 6, 3}, {3, 3, 2}},
        SeparableCase{"same_s2_3x3_m2_nobias", 2, {3, 3}, 2, 2, Padding::same, false, Activation::softmax, {2, 5, 6, 3}, {3, 3, 2}},
        SeparableCase{"valid_s1_2x3_m1_nobias", 3, {2, 3}, 1, 1, Padding::valid, false, Activation::silu, {1, 4, 5, 2}, {3, 3, 3}}),
    [](const auto& info) { return info.param.name; });
// clang-format on

struct Conv1DCase {
  std::string name;
  std::size_t filters, kernel, stride;
  Padding1D padding;
  bool bias;
  Activation act;
  Shape in, out;
};
void PrintTo(const Conv1DCase& c, std::ostream* os) {
  *os << c.name;
}

class ConvNormEmbeddingConv1DGradient : public ::testing::TestWithParam<Conv1DCase> {};

TEST_P(ConvNormEmbeddingConv1DGradient, InputAndParameters) {
  const Conv1DCase& c = GetParam();
  Conv1D spec(c.filters, c.kernel, c.act, c.stride, c.padding);
  spec.use_bias = c.bias;
  check_layer(spec, c.in, c.out);
}

// Input [2, 7, 3]: an odd length, so 'same' pads unevenly and stride 2 leaves a remainder.
// clang-format off
INSTANTIATE_TEST_SUITE_P(
    Configurations, ConvNormEmbeddingConv1DGradient,
    ::testing::Values(
        Conv1DCase{"valid_s1_k3", 2, 3, 1, Padding1D::valid, true, Activation::linear, {2, 7, 3}, {5, 2}},
        Conv1DCase{"same_s1_k3", 4, 3, 1, Padding1D::same, true, Activation::tanh, {2, 7, 3}, {7, 4}},
        Conv1DCase{"same_s2_k2", 2, 2, 2, Padding1D::same, false, Activation::relu, {2, 7, 3}, {4, 2}},
        Conv1DCase{"valid_s2_k3", 3, 3, 2, Padding1D::valid, true, Activation::sigmoid, {2, 7, 3}, {3, 3}},
        Conv1DCase{"causal_s1_k3", 2, 3, 1, Padding1D::causal, true, Activation::linear, {2, 7, 3}, {7, 2}},
        Conv1DCase{"causal_s2_k3", 2, 3, 2, Padding1D::causal, false, Activation::softmax, {2, 7, 3}, {4, 2}},
        Conv1DCase{"causal_s1_k4_longer_than_input", 2, 4, 1, Padding1D::causal, true, Activation::elu, {1, 3, 2}, {3, 2}}),
    [](const auto& info) { return info.param.name; });
// clang-format on

// Every activation, once per layer with a kernel, at a small configuration.
class ConvNormEmbeddingActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ConvNormEmbeddingActivationGradient, DepthwiseConv2D) {
  check_layer(DepthwiseConv2D({2, 3}, 2, GetParam(), {1, 1}, Padding::same), {1, 3, 4, 2},
              {3, 4, 4}, 4);
}
TEST_P(ConvNormEmbeddingActivationGradient, SeparableConv2D) {
  check_layer(SeparableConv2D(3, {2, 2}, GetParam(), {2, 2}, Padding::same, 2), {1, 3, 4, 2},
              {2, 2, 3}, 5);
}
TEST_P(ConvNormEmbeddingActivationGradient, Conv1D) {
  check_layer(Conv1D(3, 2, GetParam(), 1, Padding1D::causal), {2, 4, 2}, {4, 3}, 6);
}

INSTANTIATE_TEST_SUITE_P(EveryActivation, ConvNormEmbeddingActivationGradient,
                         ::testing::ValuesIn(every_activation()), activation_name);

struct NormCase {
  std::string name;
  bool center, scale;
  double epsilon;
  Shape in;
};
void PrintTo(const NormCase& c, std::ostream* os) {
  *os << c.name;
}

class ConvNormEmbeddingLayerNormGradient : public ::testing::TestWithParam<NormCase> {};

TEST_P(ConvNormEmbeddingLayerNormGradient, InputAndParameters) {
  const NormCase& c = GetParam();
  // gamma starts at 1 and beta at 0; the check perturbs them like any parameter.
  check_layer(LayerNormalization(c.epsilon, c.center, c.scale), c.in, locus::nn::per_sample(c.in));
}

INSTANTIATE_TEST_SUITE_P(
    Configurations, ConvNormEmbeddingLayerNormGradient,
    ::testing::Values(NormCase{"rank2", true, true, 1e-3, {3, 5}},
                      NormCase{"rank3", true, true, 1e-3, {2, 3, 4}},
                      NormCase{"rank4_small_epsilon", true, true, 1e-6, {2, 2, 3, 4}},
                      NormCase{"no_center", false, true, 1e-3, {3, 5}},
                      NormCase{"no_scale", true, false, 1e-3, {3, 5}},
                      NormCase{"neither", false, false, 1e-3, {2, 3, 4}}),
    [](const auto& info) { return info.param.name; });

// Embedding: only the table is differentiable. dL/d(embeddings) of vjp against central
// differences of L = sum(w * y), with repeated indices (their rows add up), fractional
// values (rounded toward zero, -0.5 included) and an unused row.
TEST(ConvNormEmbeddingEmbeddingGradient, TableGradientIsTheScatterOfDy) {
  using namespace locus_test::grad;
  const Embedding spec(6, 3);
  auto m = one_layer_model(spec, {{2, 4}});
  ASSERT_EQ(to_string(m.output_shape()), to_string(Shape{4, 3}));
  const Tn x{{0.0, 2.0, 2.9, 5.0}, {-0.5, 2.2, 4.0, 0.7}};
  const Tn w = Tn::uniform({2, 4, 3}, 3, -1.0, 1.0);
  auto params = m.parameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0]->name, "embedding/embeddings");
  const auto r = m.vjp({x}, {w}, false);
  ASSERT_EQ(r.param_grads.size(), 1u);
  const auto loss = [&]() {
    return project(w, m.vjp({x}, {Tn::zeros(w.shape())}, false).outputs[0]);
  };
  EXPECT_TRUE(grad_close(values(r.param_grads[0]), numeric_grad(params[0]->value, loss),
                         "Embedding dL/dembeddings"));
  // Row 1 and row 3 are never read: their gradient is exactly zero.
  for (std::size_t d = 0; d < 3; ++d) {
    EXPECT_EQ(r.param_grads[0](1, d), 0.0);
    EXPECT_EQ(r.param_grads[0](3, d), 0.0);
  }
  // Asked for an input gradient, the layer gives zeros of the input's shape.
  const auto r2 = m.vjp({x}, {w}, true);
  ASSERT_EQ(r2.input_grads.size(), 1u);
  ASSERT_EQ(to_string(r2.input_grads[0].shape()), to_string(x.shape()));
  for (double v : values(r2.input_grads[0])) EXPECT_EQ(v, 0.0);
}

// =============================================================================================
// Backend kernels and forward passes against the definitions, on every device
// =============================================================================================

template <class Dev>
class ConvNormEmbeddingDevices : public ::testing::Test {};
TYPED_TEST_SUITE(ConvNormEmbeddingDevices, TestDevices, DeviceNames);

constexpr double kRefRtol = 1e-4, kRefAtol = 1e-5;

struct DepthwiseGeometry {
  std::size_t n, h, w, c, kh, kw, sh, sw, m;
  bool same;
};

/// Runs the three depthwise kernels of Dev on random data and compares them with the
/// float64 definitions.
template <class Dev>
void check_depthwise_kernels(const DepthwiseGeometry& d, std::uint64_t seed) {
  const HostF x = random_host<float>({d.n, d.h, d.w, d.c}, seed);
  const HostF k = random_host<float>({d.kh, d.kw, d.c, d.m}, seed + 1);
  const AxisRef ah = axis_ref(d.h, d.kh, d.sh, d.same), aw = axis_ref(d.w, d.kw, d.sw, d.same);
  const conv_geometry g{d.n, d.h, d.w, d.c, d.kh, d.kw, d.sh, d.sw, ah.pad, aw.pad, ah.out, aw.out};
  const HostF dy = random_host<float>({d.n, ah.out, aw.out, d.c * d.m}, seed + 2);
  const auto xd = on<Dev>(x), kd = on<Dev>(k), dyd = on<Dev>(dy);
  using B = nn_backend_for<Dev>;

  Tensor<float, Dev> y(uninitialized, dy.shape());
  B::depthwise_conv2d_forward(xd.storage(), kd.storage(), g, d.m, y.storage());
  EXPECT_TRUE(near_ref(y, depthwise_ref(r64(x), r64(k), d.sh, d.sw, d.same), kRefRtol, kRefAtol))
      << "forward";

  Ref dx_ref, dk_ref;
  depthwise_grad_ref(r64(x), r64(k), r64(dy), d.sh, d.sw, d.same, dx_ref, dk_ref);
  // Start from garbage: both gradients must be overwritten, not accumulated.
  auto dx = on<Dev>(HostF::full(x.shape(), 7.f));
  B::depthwise_conv2d_backward_input(dyd.storage(), kd.storage(), g, d.m, dx.storage());
  EXPECT_TRUE(near_ref(dx, dx_ref, kRefRtol, kRefAtol)) << "input gradient";
  auto dk = on<Dev>(HostF::full(k.shape(), 7.f));
  B::depthwise_conv2d_backward_kernel(xd.storage(), dyd.storage(), g, d.m, dk.storage());
  // A kernel element sums over every output pixel: a looser absolute tolerance.
  EXPECT_TRUE(near_ref(dk, dk_ref, kRefRtol, 1e-4)) << "kernel gradient";
}

TYPED_TEST(ConvNormEmbeddingDevices, DepthwiseKernelsMatchTheDefinition) {
  using Dev = TypeParam;
  // same padding with the extra row and column at the bottom and right; stride 2x1.
  check_depthwise_kernels<Dev>({2, 7, 6, 3, 3, 2, 2, 1, 2, true}, 1);
  // valid, stride 2 on both axes, multiplier 1 (the vectorised channel path on the host).
  check_depthwise_kernels<Dev>({2, 8, 9, 19, 3, 3, 2, 2, 1, false}, 2);
  // Many output rows per kernel element: the device splits the kernel gradient in parts.
  check_depthwise_kernels<Dev>({4, 16, 16, 5, 3, 3, 1, 1, 1, true}, 3);
  // More than 256 channels x multiplier: several channel blocks per kernel position on the host.
  check_depthwise_kernels<Dev>({1, 4, 3, 130, 2, 2, 1, 1, 2, true}, 4);
  // A window larger than the image with 'same' padding; 1x1 kernel.
  check_depthwise_kernels<Dev>({2, 2, 3, 2, 5, 4, 1, 2, 3, true}, 5);
  check_depthwise_kernels<Dev>({1, 3, 3, 4, 1, 1, 1, 1, 1, false}, 6);
}

/// scatter_add_rows against a loop, with repeated and out-of-range indices.
template <class Dev>
void check_scatter(std::size_t count, std::size_t rows, std::size_t row_len, std::uint64_t seed) {
  const HostF src = random_host<float>({count, row_len}, seed);
  HostI idx(Shape{count});
  for (std::size_t r = 0; r < count; ++r) {
    // Mostly in range, with some -1, rows and far-away indices mixed in.
    const std::size_t k = (r * 7 + seed) % (rows + 3);
    idx.data()[r] = k < rows        ? static_cast<std::int32_t>(k)
                    : k == rows     ? -1
                    : k == rows + 1 ? static_cast<std::int32_t>(rows)
                                    : 1000000;
  }
  Ref want = Ref::from_shape({rows, row_len});
  want.fill(0);
  for (std::size_t r = 0; r < count; ++r) {
    const std::int32_t v = idx.data()[r];
    if (v < 0 || static_cast<std::size_t>(v) >= rows) continue;
    for (std::size_t d = 0; d < row_len; ++d) want(static_cast<std::size_t>(v), d) += src(r, d);
  }
  auto dst = on<Dev>(HostF::full({rows, row_len}, 5.f));
  nn_backend_for<Dev>::scatter_add_rows(on<Dev>(src).storage(), row_len, on<Dev>(idx).storage(),
                                        count, rows, dst.storage());
  EXPECT_TRUE(near_ref(dst, want, kRefRtol, 1e-4)) << count << " rows into " << rows;
}

TYPED_TEST(ConvNormEmbeddingDevices, ScatterAddRowsMatchesTheDefinition) {
  using Dev = TypeParam;
  check_scatter<Dev>(10, 4, 3, 1);
  check_scatter<Dev>(1000, 7, 3, 2);  // few outputs, a long list: the device splits it in parts
  check_scatter<Dev>(300, 50, 33, 3);
  check_scatter<Dev>(0, 4, 3, 4);  // no rows at all: zeros
}

TYPED_TEST(ConvNormEmbeddingDevices, BackendArgumentChecks) {
  using Dev = TypeParam;
  using B = nn_backend_for<Dev>;
  const conv_geometry g{1, 4, 4, 2, 3, 3, 1, 1, 0, 0, 2, 2};
  Tensor<float, Dev> x = Tensor<float, Dev>::zeros({1, 4, 4, 2}),
                     k = Tensor<float, Dev>::zeros({3, 3, 2, 2});
  Tensor<float, Dev> y = Tensor<float, Dev>::zeros({1, 2, 2, 4}),
                     small = Tensor<float, Dev>::zeros({3});
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::depthwise_conv2d_forward(x.storage(), k.storage(), g, 2, small.storage()); },
      "depthwise_conv2d_forward", "output buffer holds 3"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::depthwise_conv2d_backward_input(y.storage(), small.storage(), g, 2, x.storage()); },
      "depthwise_conv2d_backward_input", "kernel buffer"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::depthwise_conv2d_backward_kernel(small.storage(), y.storage(), g, 2, k.storage()); },
      "depthwise_conv2d_backward_kernel", "image buffer"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::depthwise_conv2d_forward(x.storage(), k.storage(), g, 0, y.storage()); },
      "depth multiplier"));
  const auto idx = on<Dev>(HostI{0, 1});
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::scatter_add_rows(y.storage(), 4, idx.storage(), 3, 2, x.storage()); },
      "scatter_add_rows", "index buffer holds 2"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { B::scatter_add_rows(y.storage(), 4, idx.storage(), 2, 9, small.storage()); },
      "destination holds 3"));
}

TYPED_TEST(ConvNormEmbeddingDevices, DepthwiseConv2DForwardIsTheDefinition) {
  using Dev = TypeParam;
  for (const bool same : {false, true}) {
    auto m = one_layer<Dev>(DepthwiseConv2D({3, 2}, 2, Activation::linear, {2, 1},
                                            same ? Padding::same : Padding::valid),
                            {6, 5, 3});
    const HostF x = random_host<float>({2, 6, 5, 3}, 21);
    const auto w = weight_refs(m);  // kernel, bias
    ASSERT_EQ(w.size(), 2u);
    Ref want = depthwise_ref(r64(x), w[0], 2, 1, same);
    want = want + w[1];
    EXPECT_TRUE(near_ref(m(on<Dev>(x)), want, kRefRtol, kRefAtol)) << (same ? "same" : "valid");
  }
}

TYPED_TEST(ConvNormEmbeddingDevices, SeparableConv2DForwardIsTheDefinition) {
  using Dev = TypeParam;
  auto m = one_layer<Dev>(SeparableConv2D(4, {3, 3}, Activation::relu, {2, 2}, Padding::same, 2),
                          {5, 6, 3});
  const HostF x = random_host<float>({2, 5, 6, 3}, 22);
  const auto w = weight_refs(m);  // depthwise_kernel, pointwise_kernel, bias
  ASSERT_EQ(w.size(), 3u);
  const Ref d = depthwise_ref(r64(x), w[0], 2, 2, true);
  Ref want = Ref::from_shape({2, 3, 3, 4});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < 3; ++j)
        for (std::size_t f = 0; f < 4; ++f) {
          double s = w[2](f);
          for (std::size_t c = 0; c < 6; ++c) s += d(n, i, j, c) * w[1](0, 0, c, f);
          want(n, i, j, f) = std::max(s, 0.0);
        }
  EXPECT_TRUE(near_ref(m(on<Dev>(x)), want, kRefRtol, kRefAtol));
}

TYPED_TEST(ConvNormEmbeddingDevices, Conv1DForwardIsTheDefinition) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({2, 9, 3}, 23);
  for (const auto& [padding, p] : {std::pair<std::string, Padding1D>{"valid", Padding1D::valid},
                                   {"same", Padding1D::same},
                                   {"causal", Padding1D::causal}}) {
    for (const std::size_t stride : {1u, 2u}) {
      auto m = one_layer<Dev>(Conv1D(4, 3, Activation::linear, stride, p), {9, 3});
      const auto w = weight_refs(m);
      Ref want = conv1d_ref(r64(x), w[0], stride, padding);
      want = want + w[1];
      EXPECT_TRUE(near_ref(m(on<Dev>(x)), want, kRefRtol, kRefAtol))
          << padding << " stride " << stride;
    }
  }
}

TYPED_TEST(ConvNormEmbeddingDevices, CausalConv1DOutputIgnoresTheFuture) {
  using Dev = TypeParam;
  auto m = one_layer<Dev>(Conv1D(2, 3, Activation::linear, 1, Padding1D::causal), {6, 2});
  HostF a = random_host<float>({1, 6, 2}, 24), b = a;
  for (std::size_t c = 0; c < 2; ++c) b(0, 4, c) += 1.f;  // change step 4 only
  const HostF ya = host(m(on<Dev>(a))), yb = host(m(on<Dev>(b)));
  for (std::size_t t = 0; t < 6; ++t)
    for (std::size_t f = 0; f < 2; ++f) {
      if (t < 4) {
        EXPECT_EQ(ya(0, t, f), yb(0, t, f)) << "step " << t;
      }
    }
  EXPECT_NE(ya(0, 4, 0), yb(0, 4, 0));
}

TYPED_TEST(ConvNormEmbeddingDevices, LayerNormalizationForwardIsTheDefinition) {
  using Dev = TypeParam;
  auto m = one_layer<Dev>(LayerNormalization(), {3, 6});
  // An offset and a scale per sample, so that the per-sample statistics matter.
  HostF x = random_host<float>({2, 3, 6}, 25);
  for (std::size_t i = 0; i < 6; ++i) x(1, 2, i) = 100.f + 30.f * x(1, 2, i);
  const auto w = weight_refs(m);  // gamma, beta
  const Ref xr = r64(x);
  Ref want = Ref::from_shape({2, 3, 6});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t t = 0; t < 3; ++t) {
      double mean = 0, var = 0;
      for (std::size_t i = 0; i < 6; ++i) mean += xr(n, t, i) / 6;
      for (std::size_t i = 0; i < 6; ++i) var += (xr(n, t, i) - mean) * (xr(n, t, i) - mean) / 6;
      for (std::size_t i = 0; i < 6; ++i)
        want(n, t, i) = (xr(n, t, i) - mean) / std::sqrt(var + 1e-3) * w[0](i) + w[1](i);
    }
  EXPECT_TRUE(near_ref(m(on<Dev>(x)), want, kRefRtol, kRefAtol));
  // Training and inference compute the same thing (no moving statistics).
  EXPECT_TRUE(same_values(m(on<Dev>(x), true), m(on<Dev>(x))));
}

TYPED_TEST(ConvNormEmbeddingDevices, EmbeddingForwardReadsRowsRoundedTowardZero) {
  using Dev = TypeParam;
  auto m = one_layer<Dev>(Embedding(5, 3), {4});
  const HostF x{{0.f, 4.f, 2.9f, -0.5f}, {1.2f, 3.f, 4.99f, 0.f}};
  const auto table = weight_refs(m)[0];
  const std::size_t rows[2][4] = {{0, 4, 2, 0}, {1, 3, 4, 0}};
  Ref want = Ref::from_shape({2, 4, 3});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t d = 0; d < 3; ++d) want(n, i, d) = table(rows[n][i], d);
  EXPECT_TRUE(near_ref(m(on<Dev>(x)), want, 0, 0));
}

// =============================================================================================
// The devices agree (float32 forward and vjp)
// =============================================================================================

constexpr double kDevRtol = 2e-5, kDevAtol = 2e-6;

/// Forward (inference and training) and vjp of `spec` on Dev and on the other device, from
/// the same weights, inputs and output gradient.
template <class Dev, class Spec>
void check_devices_agree(const Spec& spec, const Shape& in, const HostF& x, const std::string& what,
                         bool index_input = false) {
  using Other = OtherDev<Dev>;
  auto a = one_layer<Dev>(spec, nn::per_sample(in));
  auto b = one_layer<Other>(spec, nn::per_sample(in));
  const auto wa = weight_refs(a), wb = weight_refs(b);
  ASSERT_EQ(wa.size(), wb.size());
  const HostF dy = random_host<float>(nn::with_batch(in[0], a.output_shape()), 31);
  EXPECT_TRUE(same_values(a(on<Dev>(x)), b(on<Other>(x)), kDevRtol, kDevAtol))
      << what << " inference";
  const auto ra = a.vjp({on<Dev>(x)}, {on<Dev>(dy)}, !index_input);
  const auto rb = b.vjp({on<Other>(x)}, {on<Other>(dy)}, !index_input);
  EXPECT_TRUE(same_values(ra.outputs[0], rb.outputs[0], kDevRtol, kDevAtol))
      << what << " training output";
  ASSERT_EQ(ra.input_grads.size(), rb.input_grads.size());
  for (std::size_t i = 0; i < ra.input_grads.size(); ++i)
    EXPECT_TRUE(same_values(ra.input_grads[i], rb.input_grads[i], kDevRtol, kDevAtol))
        << what << " dx";
  ASSERT_EQ(ra.param_grads.size(), rb.param_grads.size());
  ASSERT_FALSE(ra.param_grads.empty());
  for (std::size_t j = 0; j < ra.param_grads.size(); ++j)
    EXPECT_TRUE(same_values(ra.param_grads[j], rb.param_grads[j], kDevRtol, 1e-5))
        << what << " param " << j;
}

TYPED_TEST(ConvNormEmbeddingDevices, DepthwiseConv2DAgrees) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({3, 9, 8, 5}, 41);
  for (const std::size_t mult : {1u, 2u})
    for (const std::size_t stride : {1u, 2u})
      for (const Padding p : {Padding::valid, Padding::same}) {
        const std::string what =
            "m" + std::to_string(mult) + " s" + std::to_string(stride) + " " + to_string(p);
        check_devices_agree<Dev>(
            DepthwiseConv2D({3, 3}, mult, Activation::tanh, {stride, stride}, p), x.shape(), x,
            what);
        check_devices_agree<Dev>(
            DepthwiseConv2D({2, 3}, mult, Activation::gelu, {stride, stride}, p, false), x.shape(),
            x, what + " 2x3 gelu no bias");
      }
}

TYPED_TEST(ConvNormEmbeddingDevices, SeparableConv2DAgrees) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({3, 9, 8, 5}, 42);
  for (const std::size_t mult : {1u, 2u})
    for (const Padding p : {Padding::valid, Padding::same}) {
      check_devices_agree<Dev>(SeparableConv2D(6, {3, 3}, Activation::relu, {2, 2}, p, mult),
                               x.shape(), x,
                               "separable m" + std::to_string(mult) + " " + to_string(p));
    }
  check_devices_agree<Dev>(
      SeparableConv2D(4, {2, 3}, Activation::silu, {1, 1}, Padding::same, 2, false), x.shape(), x,
      "separable 2x3 silu no bias");
}

TYPED_TEST(ConvNormEmbeddingDevices, Conv1DAgrees) {
  using Dev = TypeParam;
  const HostF x = random_host<float>({4, 11, 5}, 43);
  for (const Padding1D p : {Padding1D::valid, Padding1D::same, Padding1D::causal})
    for (const std::size_t stride : {1u, 2u}) {
      check_devices_agree<Dev>(Conv1D(6, 3, Activation::sigmoid, stride, p), x.shape(), x,
                               "conv1d " + to_string(p) + " s" + std::to_string(stride));
    }
}

TYPED_TEST(ConvNormEmbeddingDevices, LayerNormalizationAgrees) {
  using Dev = TypeParam;
  HostF x = random_host<float>({4, 5, 7}, 44);
  for (std::size_t i = 0; i < 7; ++i) x(2, 3, i) = 10.f + 5.f * x(2, 3, i);
  check_devices_agree<Dev>(LayerNormalization(), x.shape(), x, "layer norm");
  check_devices_agree<Dev>(LayerNormalization(1e-3, false, true), x.shape(), x,
                           "layer norm without beta");
  check_devices_agree<Dev>(LayerNormalization(1e-5, true, false), x.shape(), x,
                           "layer norm without gamma");
}

TYPED_TEST(ConvNormEmbeddingDevices, EmbeddingAgrees) {
  using Dev = TypeParam;
  // 600 lookups into 9 rows: many repeats per row (and a split of the list on the device).
  HostF x(Shape{30, 20});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 5) % 9) + 0.25f;
  check_devices_agree<Dev>(Embedding(9, 4), x.shape(), x, "embedding", true);
}

// =============================================================================================
// Configurations
// =============================================================================================

template <class Spec>
void expect_round_trip(const Spec& spec) {
  const nn::Config c = spec.config();
  EXPECT_EQ(Spec::from_config(c).config(), c) << c.dump();
  // The registry finds the class by Keras's name.
  const auto made = nn::layer_from_config(Spec::keras_class, c, "x");
  ASSERT_TRUE(made);
  EXPECT_EQ(made->class_name(), Spec::keras_class);
  EXPECT_EQ(made->config(), c);
}

TEST(ConvNormEmbeddingConfig, RoundTrips) {
  expect_round_trip(DepthwiseConv2D({2, 3}, 2, Activation::relu, {2, 1}, Padding::same, false));
  expect_round_trip(DepthwiseConv2D({3, 3}));
  expect_round_trip(SeparableConv2D(8, {3, 2}, Activation::tanh, {1, 2}, Padding::same, 3, false));
  expect_round_trip(SeparableConv2D(4, {3, 3}));
  expect_round_trip(Conv1D(5, 4, Activation::sigmoid, 2, Padding1D::causal));
  expect_round_trip(Conv1D(5, 4, Activation::linear, 1, Padding::same));
  expect_round_trip(LayerNormalization(1e-5, false, true));
  expect_round_trip(LayerNormalization());
  expect_round_trip(Embedding(100, 16));
}

TEST(ConvNormEmbeddingConfig, KerasKeysAndDefaults) {
  const nn::Config d = DepthwiseConv2D({3, 3}, 2, Activation::linear).config();
  EXPECT_EQ(d.at("depth_multiplier").as_int(), 2);
  EXPECT_EQ(d.at("padding").as_string(), "valid");
  EXPECT_TRUE(d.contains("depthwise_initializer"));
  EXPECT_EQ(SeparableConv2D(4, 3).config().at("kernel_size"), nn::Config::list({3, 3}));
  EXPECT_EQ(Conv1D(4, 3).config().at("kernel_size"), nn::Config::list({3}));
  const nn::Config ln = LayerNormalization().config();
  EXPECT_EQ(ln.at("axis").as_int(), -1);
  EXPECT_DOUBLE_EQ(ln.at("epsilon").as_double(), 1e-3);
  const nn::Config e = Embedding(10, 4).config();
  EXPECT_EQ(e.at("embeddings_initializer").at("class_name").as_string(), "RandomUniform");
  EXPECT_DOUBLE_EQ(e.at("embeddings_initializer").at("config").at("minval").as_double(), -0.05);
  EXPECT_DOUBLE_EQ(e.at("embeddings_initializer").at("config").at("maxval").as_double(), 0.05);
  EXPECT_FALSE(e.at("mask_zero").as_bool());

  // Keras's spellings: integers for tuples, a built LayerNormalization's axis list, Keras 2's
  // "uniform" initializer name.
  using nn::Config;
  const Conv1D c1 = Conv1D::from_config(Config::make({{"filters", 3},
                                                      {"kernel_size", 5},
                                                      {"strides", 2},
                                                      {"padding", "causal"},
                                                      {"activation", "relu"}}));
  EXPECT_EQ(c1.kernel_size, 5u);
  EXPECT_EQ(c1.strides, 2u);
  EXPECT_EQ(c1.padding, Padding1D::causal);
  const auto dw = DepthwiseConv2D::from_config(Config::make(
      {{"kernel_size", 3}, {"strides", 2}, {"activation", "linear"}, {"depth_multiplier", 4}}));
  EXPECT_EQ(dw.kernel_size, Window(3, 3));
  EXPECT_EQ(dw.strides, Window(2, 2));
  EXPECT_EQ(dw.depth_multiplier, 4u);
  EXPECT_EQ(LayerNormalization::from_config(Config::make({{"axis", Config::list({2})}})).axis(), 2);
  const Embedding em = Embedding::from_config(
      Config::make({{"input_dim", 7}, {"output_dim", 2}, {"embeddings_initializer", "uniform"}}));
  EXPECT_EQ(em.embeddings_initializer.k, nn::Initializer::kind::random_uniform);
}

TEST(ConvNormEmbeddingConfig, WeightNamesShapesAndOrder) {
  const auto names = [](auto&& m) {
    std::vector<std::string> out;
    for (auto& [name, t] : m.weights()) out.push_back(name + " " + to_string(t->shape()));
    return out;
  };
  using V = std::vector<std::string>;
  auto x = Input({6, 5, 3});
  EXPECT_EQ(
      names(Model<CPUDev, float>(Functional(x, DepthwiseConv2D({3, 2}, 2, Activation::linear)(x)))),
      (V{"depthwise_conv2d/kernel [3, 2, 3, 2]", "depthwise_conv2d/bias [6]"}));
  EXPECT_EQ(names(Model<CPUDev, float>(Functional(
                x, SeparableConv2D(4, {3, 2}, Activation::linear, {1, 1}, Padding::valid, 2)(x)))),
            (V{"separable_conv2d/depthwise_kernel [3, 2, 3, 2]",
               "separable_conv2d/pointwise_kernel [1, 1, 6, 4]", "separable_conv2d/bias [4]"}));
  auto s = Input({7, 3});
  EXPECT_EQ(names(Model<CPUDev, float>(Functional(s, Conv1D(4, 2)(s)))),
            (V{"conv1d/kernel [2, 3, 4]", "conv1d/bias [4]"}));
  EXPECT_EQ(names(Model<CPUDev, float>(Functional(s, LayerNormalization()(s)))),
            (V{"layer_normalization/gamma [3]", "layer_normalization/beta [3]"}));
  auto t = Input({5});
  EXPECT_EQ(names(Model<CPUDev, float>(Functional(t, Embedding(11, 4)(t)))),
            (V{"embedding/embeddings [11, 4]"}));
}

TEST(ConvNormEmbeddingConfig, InitialValues) {
  auto t = Input({5});
  Model<CPUDev, float> m(Functional(t, Embedding(50, 8)(t)), 3);
  const HostF e = *m.weights()[0].second;
  float lo = 1, hi = -1;
  for (float v : e) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, -0.05f);
  EXPECT_LT(hi, 0.05f);
  EXPECT_LT(lo, -0.04f);  // 400 uniform draws reach near both ends
  EXPECT_GT(hi, 0.04f);
  auto s = Input({4, 3});
  Model<CPUDev, float> ln(Functional(s, LayerNormalization()(s)), 3);
  for (float v : *ln.weights()[0].second) EXPECT_EQ(v, 1.f);
  for (float v : *ln.weights()[1].second) EXPECT_EQ(v, 0.f);
}

// =============================================================================================
// Typed errors
// =============================================================================================

TEST(ConvNormEmbeddingErrors, UnsupportedConfigurations) {
  using nn::Config;
  const auto conv = [](std::initializer_list<Config::member> extra) {
    Config c = Config::make(
        {{"filters", 2}, {"kernel_size", 3}, {"activation", "linear"}, {"depth_multiplier", 1}});
    for (const auto& [k, v] : extra) c.set(k, v);
    return c;
  };
  const auto cf = conv({{"data_format", "channels_first"}});
  EXPECT_TRUE(throws_with<config_error>([&] { DepthwiseConv2D::from_config(cf); },
                                        "DepthwiseConv2D", "channels_first"));
  EXPECT_TRUE(throws_with<config_error>([&] { SeparableConv2D::from_config(cf); },
                                        "SeparableConv2D", "channels_first"));
  EXPECT_TRUE(
      throws_with<config_error>([&] { Conv1D::from_config(cf); }, "Conv1D", "channels_first"));
  const auto dil2 = conv({{"dilation_rate", Config::list({2, 2})}});
  EXPECT_TRUE(
      throws_with<config_error>([&] { DepthwiseConv2D::from_config(dil2); }, "dilation_rate"));
  EXPECT_TRUE(
      throws_with<config_error>([&] { SeparableConv2D::from_config(dil2); }, "dilation_rate"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv1D::from_config(conv({{"dilation_rate", 2}}));
      },
      "dilation_rate"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv1D::from_config(conv({{"dilation_rate", Config::list({3})}}));
      },
      "dilation_rate"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv1D::from_config(conv({{"groups", 2}}));
      },
      "groups"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv1D::from_config(conv({{"padding", "full"}}));
      },
      "padding 'full'"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        DepthwiseConv2D::from_config(conv({{"padding", "causal"}}));
      },
      "padding 'causal'"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        DepthwiseConv2D::from_config(conv({{"depth_multiplier", 0}}));
      },
      "depth_multiplier must be positive"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Conv1D::from_config(conv({{"kernel_size", Config::list({3, 3})}}));
      },
      "kernel_size must be one integer"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        LayerNormalization::from_config(Config::make({{"axis", Config::list({1, 2})}}));
      },
      "axis [1, 2]", "last axis"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        LayerNormalization::from_config(Config::make({{"axis", -2}}));
      },
      "axis -2"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        LayerNormalization::from_config(Config::make({{"rms_scaling", true}}));
      },
      "rms_scaling"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        LayerNormalization::from_config(Config::make({{"epsilon", 0.0}}));
      },
      "epsilon"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Embedding::from_config(
            Config::make({{"input_dim", 5}, {"output_dim", 2}, {"mask_zero", true}}));
      },
      "mask_zero"));
  EXPECT_TRUE(throws_with<config_error>(
      [&] {
        Embedding::from_config(Config::make({{"input_dim", 0}, {"output_dim", 2}}));
      },
      "input_dim"));
}

TEST(ConvNormEmbeddingErrors, LayerNormalizationAxisOtherThanTheLast) {
  // Axis 1 of [N, 4, 3] is not the last one (Keras counts the batch axis).
  const auto ln = LayerNormalization::from_config(nn::Config::make({{"axis", 1}}));
  auto x = Input({4, 3});
  EXPECT_TRUE(
      throws_with<config_error>([&] { (void)ln(x); }, "LayerNormalization", "axis 1", "last axis"));
  // Axis 2 is the last one.
  const auto last = LayerNormalization::from_config(nn::Config::make({{"axis", 2}}));
  EXPECT_NO_THROW((void)last(x));
}

TEST(ConvNormEmbeddingErrors, Shapes) {
  auto img = Input({4, 4, 2});
  auto seq = Input({5, 2});
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        (void)DepthwiseConv2D({3, 3})(seq);
      },
      "DepthwiseConv2D", "[height, width, channels]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        (void)DepthwiseConv2D({5, 3})(img);
      },
      "does not fit"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        (void)SeparableConv2D(2, {3, 3})(seq);
      },
      "SeparableConv2D"));
  EXPECT_TRUE(
      throws_with<shape_error>([&] { (void)Conv1D(2, 3)(img); }, "Conv1D", "[steps, channels]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)Conv1D(2, 6)(seq); }, "does not fit"));
  // Causal padding never runs out of input.
  EXPECT_NO_THROW((void)Conv1D(2, 6, Activation::linear, 1, Padding1D::causal)(seq));
}

TEST(ConvNormEmbeddingErrors, EmbeddingIndexOutOfRangeOnTheHostThrowsBeforeAnythingChanges) {
  auto t = Input({3});
  Model<CPUDev, float> m(Functional(t, Dense(1)(Flatten()(Embedding(4, 2)(t)))), 1);
  const HostF good{{0.f, 1.f, 3.f}, {2.f, 3.9f, -0.9f}};
  EXPECT_NO_THROW((void)m(good));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        (void)m(HostF{{0.f, 1.f, 3.f}, {2.f, 4.f, 0.f}});
      },
      "Embedding", "index 4", "input element 4", "[0, 4)"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        (void)m(HostF{{0.f, -1.f, 3.f}, {2.f, 1.f, 0.f}});
      },
      "index -1", "input element 1"));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        (void)m(HostF{{0.f, 1.f, nan}, {2.f, 1.f, 0.f}});
      },
      "index nan"));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        (void)m(HostF{{0.f, 1.f, 3e30f}, {2.f, 1.f, 0.f}});
      },
      "index 3e+30"));
  // A training step on a batch with a bad index fails before any weight changes.
  std::vector<HostF> before;
  for (auto& [name, w] : m.weights()) before.push_back(*w);
  m.compile(SGD{.learning_rate = 0.5}, MeanSquaredError{});
  const HostF bad{{0.f, 1.f, 3.f}, {2.f, 7.f, 0.f}};
  const HostF y = HostF::full({2, 1}, 1.f);
  EXPECT_TRUE(throws_with<argument_error>(
      [&] { (void)m.fit(bad, y, {.epochs = 1, .batch_size = 2, .verbose = 0}); }, "index 7"));
  const auto after = m.weights();
  for (std::size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(bitwise_equal(before[i], *after[i].second)) << i;
}

TEST(ConvNormEmbeddingErrors, EmbeddingIndexOutOfRangeOnADeviceReadsZerosAndAddsNothing) {
  auto t = Input({3});
  Model<GPUDev, float> m(Functional(t, Embedding(4, 2)(t)), 1);
  const HostF x{{0.f, 4.f, -1.f}, {2.f, 1e9f, 3.f}};
  const HostF y = host(m(on<GPUDev>(x)));
  const HostF table = host(*m.weights()[0].second);
  for (std::size_t d = 0; d < 2; ++d) {
    EXPECT_EQ(y(0, 0, d), table(0, d));
    EXPECT_EQ(y(0, 1, d), 0.f);
    EXPECT_EQ(y(0, 2, d), 0.f);
    EXPECT_EQ(y(1, 0, d), table(2, d));
    EXPECT_EQ(y(1, 1, d), 0.f);
    EXPECT_EQ(y(1, 2, d), table(3, d));
  }
  // The gradient of the table: only the rows that were read, each once.
  const HostF dy = random_host<float>({2, 3, 2}, 5);
  const auto r = m.vjp({on<GPUDev>(x)}, {on<GPUDev>(dy)}, false);
  const HostF g = host(r.param_grads[0]);
  for (std::size_t d = 0; d < 2; ++d) {
    EXPECT_EQ(g(0, d), dy(0, 0, d));
    EXPECT_EQ(g(1, d), 0.f);
    EXPECT_EQ(g(2, d), dy(1, 0, d));
    EXPECT_EQ(g(3, d), dy(1, 2, d));
  }
}

}  // namespace
