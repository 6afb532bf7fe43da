// Fusions of the model core, on every device:
//  * the GEMM epilogue: C = act(alpha op(A) op(B) + beta C + bias) through the backend seam
//    (detail::gemm_into), against a float64 reference on every CPU GEMM path and every
//    OpenCL kernel, and bitwise against the unfused computation for linear and relu;
//  * the plan's gradient fusion: a relu layer's derivative moved into the max pooling that
//    alone reads its output. Which calls fuse is checked on the plan, and a training step
//    through the fused plan must give the unfused plan's outputs and gradients bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <xtensor/xmath.hpp>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class NnFusion : public ::testing::Test {};
TYPED_TEST_SUITE(NnFusion, TestDevices, DeviceNames);

// ---- the GEMM epilogue ------------------------------------------------------------------

double act_ref(gemm_activation act, double x) {
  switch (act) {
    case gemm_activation::relu:
      return x > 0 ? x : 0;
    case gemm_activation::sigmoid:
      return 1 / (1 + std::exp(-x));
    case gemm_activation::tanh:
      return std::tanh(x);
    case gemm_activation::linear:
      break;
  }
  return x;
}

struct gemm_shape {
  std::size_t m, n, k;
  bool ta, tb;
};

TYPED_TEST(NnFusion, GemmEpilogueOnEveryPath) {
  using Dev = TypeParam;
  using T = float;
  // CPU: full and edge tiles, the transposed problem (skinny n: the bias runs along tile
  // rows), the dot-product path, the k-split path; OpenCL: the nn, tn, nt, tt kernels.
  const std::vector<gemm_shape> shapes = {{48, 64, 20, false, false},  {49, 65, 21, false, true},
                                          {200, 10, 40, true, false},  {32, 10, 5408, false, false},
                                          {9, 32, 21632, true, false}, {33, 17, 70, true, true}};
  const gemm_activation acts[] = {gemm_activation::linear, gemm_activation::relu,
                                  gemm_activation::sigmoid, gemm_activation::tanh};
  std::uint64_t seed = 1;
  for (const auto& s : shapes) {
    const std::size_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k,
                      bc = s.tb ? s.k : s.n;
    const auto a = random_host<T>({ar, ac}, seed++), b = random_host<T>({br, bc}, seed++);
    const auto bias = random_host<T>({s.n}, seed++);
    const Ref z = ref_matmul(ref(a), ref(b), s.ta, s.tb);
    const Ref mag = ref_matmul(xt::abs(ref(a)), xt::abs(ref(b)), s.ta, s.tb);  // sum |a b|
    const Tensor<T, Dev> da = on<Dev>(a), db = on<Dev>(b), dbias = on<Dev>(bias);
    Tensor<T, Dev> plain(uninitialized, {s.m, s.n});
    detail::gemm_into(da, 1, ar, ac, db, 1, br, bc, {s.ta, s.tb}, plain);
    for (auto act : acts) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                     " k=" + std::to_string(s.k) + " act=" + std::to_string(static_cast<int>(act)) +
                     " bias=" + std::to_string(with_bias));
        Tensor<T, Dev> c(uninitialized, {s.m, s.n});
        detail::gemm_into(da, 1, ar, ac, db, 1, br, bc, {s.ta, s.tb}, c, T(1), T(0),
                          with_bias ? &dbias : nullptr, act);
        // Any summation order of k float products errs by at most ~k eps sum |a b|; the bias
        // add and the (1-Lipschitz) activation add a few ulps.
        const auto got = host(c);
        const double eps = std::numeric_limits<T>::epsilon();
        std::size_t bad = 0;
        for (std::size_t i = 0; i < s.m; ++i)
          for (std::size_t j = 0; j < s.n; ++j) {
            const double bj = with_bias ? static_cast<double>(bias.data()[j]) : 0.0;
            const double want = act_ref(act, z(i, j) + bj);
            const double tol =
                2 * eps * (static_cast<double>(s.k) + 2) * (mag(i, j) + std::abs(bj)) + 8 * eps;
            if (!(std::abs(static_cast<double>(got.data()[i * s.n + j]) - want) <= tol) &&
                bad++ < 3)
              ADD_FAILURE() << "C(" << i << "," << j << ") = " << got.data()[i * s.n + j]
                            << ", want " << want;
          }
        EXPECT_EQ(bad, 0u);
        // What a layer computed before the epilogue: the product, then relu(z + b) as an
        // element-wise expression. The epilogue must give exactly that.
        if (act == gemm_activation::linear) {
          const Tensor<T, Dev> unfused = with_bias ? Tensor<T, Dev>(plain + dbias) : plain;
          EXPECT_TRUE(bitwise_equal(c, unfused));
        } else if (act == gemm_activation::relu) {
          const Tensor<T, Dev> unfused =
              with_bias ? Tensor<T, Dev>(relu(plain + dbias)) : Tensor<T, Dev>(relu(plain));
          EXPECT_TRUE(bitwise_equal(c, unfused));
        }
      }
    }
  }
}

TYPED_TEST(NnFusion, GemmColumnSumsOfB) {
  using Dev = TypeParam;
  using T = float;
  // A weight gradient X^T dZ with the bias gradient (column sums of dZ) beside it, in the
  // shapes of a convolution (the k-split path on the CPU) and a Dense layer, B transposed
  // or not.
  const std::vector<gemm_shape> shapes = {{9, 32, 21632, true, false},
                                          {5408, 10, 32, true, false},
                                          {7, 45, 1000, false, true},
                                          {3, 4, 0, false, false}};
  std::uint64_t seed = 30;
  for (const auto& s : shapes) {
    SCOPED_TRACE("m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                 " k=" + std::to_string(s.k));
    const std::size_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k,
                      bc = s.tb ? s.k : s.n;
    const auto a = random_host<T>({ar, ac}, seed++), b = random_host<T>({br, bc}, seed++);
    Tensor<T, Dev> c(uninitialized, {s.m, s.n}), sums = Tensor<T, Dev>::full({s.n}, T(5));
    detail::gemm_into(on<Dev>(a), 1, ar, ac, on<Dev>(b), 1, br, bc, {s.ta, s.tb}, c, T(1), T(0),
                      nullptr, gemm_activation::linear, &sums);
    Ref want = Ref::from_shape({s.n});
    double worst_mag = 0;
    for (std::size_t j = 0; j < s.n; ++j) {
      double sum = 0, mag = 0;
      for (std::size_t p = 0; p < s.k; ++p) {
        const double v = b.data()[s.tb ? j * s.k + p : p * s.n + j];
        sum += v;
        mag += std::abs(v);
      }
      want(j) = sum;
      worst_mag = std::max(worst_mag, mag);
    }
    const double eps = std::numeric_limits<T>::epsilon();
    EXPECT_TRUE(
        near_ref(sums, want, 0, 2 * eps * (static_cast<double>(s.k) + 2) * worst_mag + 1e-30));
    EXPECT_TRUE(near_ref(c, ref_matmul(ref(a), ref(b), s.ta, s.tb), 1e-4, 1e-3));
  }
  // The sums need n values and one product.
  const Tensor<T, Dev> a = on<Dev>(random_host<T>({4, 3}, 1)),
                       b = on<Dev>(random_host<T>({3, 5}, 2));
  Tensor<T, Dev> c(uninitialized, {4, 5}), four(uninitialized, {4}), five(uninitialized, {5});
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        detail::gemm_into(a, 1, 4, 3, b, 1, 3, 5, {}, c, 1.f, 0.f, nullptr, gemm_activation::linear,
                          &four);
      },
      "need 5 values"));
  Tensor<T, Dev> c2(uninitialized, {2, 2, 5});
  const Tensor<T, Dev> a2 = on<Dev>(random_host<T>({2, 2, 3}, 3));
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        detail::gemm_into(a2, 2, 2, 3, b, 1, 3, 5, {}, c2, 1.f, 0.f, nullptr,
                          gemm_activation::linear, &five);
      },
      "one product only"));
}

TYPED_TEST(NnFusion, GemmEpilogueWithBetaAndEmptyK) {
  using Dev = TypeParam;
  using T = double;
  const auto a = random_host<T>({7, 5}, 11), b = random_host<T>({5, 9}, 12),
             c0 = random_host<T>({7, 9}, 13);
  const auto bias = random_host<T>({9}, 14);
  // C = tanh(2 A B + 0.5 C + b).
  Tensor<T, Dev> c = on<Dev>(c0);
  const Tensor<T, Dev> dbias = on<Dev>(bias);
  detail::gemm_into(on<Dev>(a), 1, 7, 5, on<Dev>(b), 1, 5, 9, {}, c, T(2), T(0.5), &dbias,
                    gemm_activation::tanh);
  const Ref ab = ref_matmul(ref(a), ref(b));
  Ref want = ab;
  for (std::size_t i = 0; i < 7; ++i)
    for (std::size_t j = 0; j < 9; ++j)
      want(i, j) = std::tanh(2 * ab(i, j) + 0.5 * c0.data()[i * 9 + j] + bias.data()[j]);
  EXPECT_TRUE(near_ref(c, want, 1e-12, 1e-13));
  // k == 0: nothing is read from A and B, C = relu(0 + b) when beta is 0.
  Tensor<T, Dev> e = on<Dev>(c0);
  const Tensor<T, Dev> none(uninitialized, {7, 0}), none_b(uninitialized, {0, 9});
  detail::gemm_into(none, 1, 7, 0, none_b, 1, 0, 9, {}, e, T(1), T(0), &dbias,
                    gemm_activation::relu);
  Ref want_e = Ref::from_shape({7, 9});
  for (std::size_t i = 0; i < 7; ++i)
    for (std::size_t j = 0; j < 9; ++j) want_e(i, j) = std::max(0.0, bias.data()[j]);
  EXPECT_TRUE(near_ref(e, want_e, 0, 0));
}

TYPED_TEST(NnFusion, GemmEpilogueTypedErrors) {
  using Dev = TypeParam;
  const Tensor<float, Dev> a = on<Dev>(random_host<float>({4, 3}, 1)),
                           b = on<Dev>(random_host<float>({3, 5}, 2));
  Tensor<float, Dev> c(uninitialized, {4, 5});
  const Tensor<float, Dev> short_bias = on<Dev>(random_host<float>({4}, 3));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] { detail::gemm_into(a, 1, 4, 3, b, 1, 3, 5, {}, c, 1.f, 0.f, &short_bias); },
      "bias needs 5 values"));
  const auto ia = Tensor<std::int32_t, Dev>::full({4, 3}, 1),
             ib = Tensor<std::int32_t, Dev>::full({3, 5}, 2);
  Tensor<std::int32_t, Dev> ic(uninitialized, {4, 5});
  EXPECT_TRUE(throws_with<argument_error>(
      [&] {
        detail::gemm_into(ia, 1, 4, 3, ib, 1, 3, 5, {}, ic, std::int32_t(1), std::int32_t(0),
                          nullptr, gemm_activation::relu);
      },
      "floating-point"));
}

// ---- gradient fusion: the plan's decisions -----------------------------------------------

// The value ids of a plan call's first input and output.
std::size_t out_of(const nn::Plan& p, std::size_t call) {
  return p.calls[call].out[0];
}

Functional conv_pool_head(Activation conv_act, bool max_pool) {
  const Input x({10, 10, 2});
  const auto c = Conv2D(4, {3, 3}, conv_act)(x);
  const auto p = max_pool ? MaxPooling2D({2, 2})(c) : AveragePooling2D({2, 2})(c);
  return Functional(x, Dense(3, Activation::softmax)(Flatten()(p)));
}

TEST(NnFusionPlan, ReluLayerIntoMaxPooling) {
  const Functional f = conv_pool_head(Activation::relu, true);
  const nn::Plan fused(f);
  ASSERT_EQ(fused.fusions.size(), 1u);
  EXPECT_EQ(fused.fusions[0].grad, nn::MovedGrad::relu);
  EXPECT_EQ(fused.fusions[0].producer, 0u);  // conv2d
  EXPECT_EQ(fused.fusions[0].consumer, 1u);  // max_pooling2d
  EXPECT_TRUE(fused.output_grad_applied[0]);
  EXPECT_EQ(fused.apply_to_dx[1], nn::MovedGrad::relu);
  EXPECT_EQ(fused.apply_to_dx_input[1], 0u);
  // The convolution's output is read by no backward pass any more (the pooling keeps only
  // its argmax, as unfused): neither is kept.
  EXPECT_FALSE(fused.kept[out_of(fused, 0)]);
  EXPECT_FALSE(fused.kept[out_of(fused, 1)]);

  const nn::Plan unfused(f, nn::PlanOptions{.fuse_gradients = false});
  EXPECT_TRUE(unfused.fusions.empty());
  EXPECT_FALSE(unfused.output_grad_applied[0]);
  EXPECT_EQ(unfused.apply_to_dx[1], nn::MovedGrad::none);
  EXPECT_TRUE(unfused.kept[out_of(unfused, 0)]);  // relu' reads the convolution's output
  EXPECT_FALSE(unfused.kept[out_of(unfused, 1)]);

  // Dense ending in relu (over the last axis of an image) fuses the same way.
  const Input x({6, 6, 3});
  const nn::Plan dense(
      Functional(x, Flatten()(MaxPooling2D({2, 2})(Dense(5, Activation::relu)(x)))));
  ASSERT_EQ(dense.fusions.size(), 1u);
  EXPECT_FALSE(dense.kept[out_of(dense, 0)]);
}

TEST(NnFusionPlan, OnlyForOneMaxPoolingReader) {
  // No relu, or an average pooling: nothing to move.
  EXPECT_TRUE(nn::Plan(conv_pool_head(Activation::linear, true)).fusions.empty());
  EXPECT_TRUE(nn::Plan(conv_pool_head(Activation::tanh, true)).fusions.empty());
  EXPECT_TRUE(nn::Plan(conv_pool_head(Activation::relu, false)).fusions.empty());
  // The relu output is also a model output, or is read by a second layer: its gradient
  // then has other terms, so the producer applies relu' itself.
  const Input x({8, 8, 1});
  const auto c = Conv2D(2, {3, 3}, Activation::relu)(x);
  const auto p = MaxPooling2D({2, 2})(c);
  const nn::Plan two_outputs(Functional({x}, {Flatten()(p), Flatten()(c)}));
  EXPECT_TRUE(two_outputs.fusions.empty());
  EXPECT_TRUE(two_outputs.kept[out_of(two_outputs, 0)]);
  const nn::Plan as_output(Functional({x}, {p, c}));
  EXPECT_TRUE(as_output.fusions.empty());
}

// ---- gradient fusion: fused and unfused training steps agree bitwise -----------------------

template <class Dev, class T>
struct StepResult {
  std::vector<Tensor<T, Dev>> outputs, param_grads, input_grads;
  std::size_t fusions = 0;
};

// One training step (forward, then backward from the given output gradients) through a
// plan of `f` with or without gradient fusion, every weight set to values drawn from
// `seed` (biases too, so that the epilogue's bias is not zero).
template <class Dev, class T>
StepResult<Dev, T> train_step(const Functional& f, bool fuse,
                              const std::vector<Tensor<T, CPUDev>>& xs,
                              const std::vector<Tensor<T, CPUDev>>& dys, std::uint64_t seed) {
  auto plan = std::make_shared<const nn::Plan>(f, nn::PlanOptions{.fuse_gradients = fuse});
  std::vector<std::unique_ptr<const nn::LayerKernel<Dev, T>>> kernels;
  for (const auto& pl : plan->layers) kernels.push_back(nn::bind_layer<Dev, T>(pl.layer));
  std::vector<std::unique_ptr<Tensor<T, Dev>>> weights;
  std::vector<nn::LayerWeights<Dev, T>> lw(plan->layers.size());
  std::vector<Shape> param_shapes;
  for (std::size_t i = 0; i < plan->layers.size(); ++i) {
    lw[i].seed = seed + i;
    for (const auto& ws : plan->layers[i].weights) {
      weights.push_back(std::make_unique<Tensor<T, Dev>>(
          on<Dev>(random_host<T>(ws.shape, seed * 131 + weights.size(), T(-0.5), T(0.5)))));
      lw[i].all.push_back(weights.back().get());
      lw[i].params.push_back(param_shapes.size());
      param_shapes.push_back(ws.shape);
    }
  }
  nn::Executor<Dev, T> ex(plan, std::move(kernels));
  std::vector<Tensor<T, Dev>> in;
  for (const auto& x : xs) in.push_back(on<Dev>(x));
  std::vector<const Tensor<T, Dev>*> in_ptrs;
  for (const auto& x : in) in_ptrs.push_back(&x);
  nn::Tape<Dev, T> tape;
  StepResult<Dev, T> r;
  for (const Tensor<T, Dev>* y : ex.forward(tape, in_ptrs, lw, 0)) r.outputs.push_back(*y);
  std::vector<Tensor<T, Dev>> dy;
  for (const auto& d : dys) dy.push_back(on<Dev>(d));
  r.param_grads.resize(param_shapes.size());
  std::vector<Tensor<T, Dev>*> grad_ptrs;
  for (auto& g : r.param_grads) grad_ptrs.push_back(&g);
  ex.backward(tape, std::move(dy), lw, grad_ptrs, param_shapes, &r.input_grads);
  r.fusions = plan->fusions.size();
  return r;
}

template <class Dev, class T>
void expect_fused_equals_unfused(const Functional& f, const std::vector<Tensor<T, CPUDev>>& xs,
                                 const std::vector<Tensor<T, CPUDev>>& dys,
                                 std::size_t expected_fusions) {
  const auto fused = train_step<Dev, T>(f, true, xs, dys, 7);
  const auto unfused = train_step<Dev, T>(f, false, xs, dys, 7);
  ASSERT_EQ(fused.fusions, expected_fusions);  // the fused path was really taken
  ASSERT_EQ(unfused.fusions, 0u);
  ASSERT_EQ(fused.outputs.size(), unfused.outputs.size());
  for (std::size_t i = 0; i < fused.outputs.size(); ++i)
    EXPECT_TRUE(bitwise_equal(fused.outputs[i], unfused.outputs[i])) << "output " << i;
  ASSERT_EQ(fused.param_grads.size(), unfused.param_grads.size());
  for (std::size_t i = 0; i < fused.param_grads.size(); ++i)
    EXPECT_TRUE(bitwise_equal(fused.param_grads[i], unfused.param_grads[i])) << "parameter " << i;
  ASSERT_EQ(fused.input_grads.size(), unfused.input_grads.size());
  for (std::size_t i = 0; i < fused.input_grads.size(); ++i)
    EXPECT_TRUE(bitwise_equal(fused.input_grads[i], unfused.input_grads[i])) << "input " << i;
}

TYPED_TEST(NnFusion, HeadlineCnnGradientsBitwiseUnfused) {
  using Dev = TypeParam;
  // The example's model (smaller images): Conv2D(relu) -> MaxPooling2D -> Flatten ->
  // Dense(softmax).
  const Input x({14, 14, 1});
  const auto y = Dense(10, Activation::softmax)(
      Flatten()(MaxPooling2D({2, 2})(Conv2D(32, {3, 3}, Activation::relu)(x))));
  const Functional f(x, y);
  expect_fused_equals_unfused<Dev, float>(f, {random_host<float>({5, 14, 14, 1}, 3)},
                                          {random_host<float>({5, 10}, 4)}, 1);
}

TYPED_TEST(NnFusion, OverlappingWindowsAndNonFiniteGradients) {
  using Dev = TypeParam;
  // 2x2 windows at stride 1 with 'same' padding: an input element can be the argmax of
  // several windows, whose gradients add up. The output gradient is NaN wherever the pooled
  // relu output is 0 and infinite at some other places: where relu' is 0 the NaN must
  // vanish (a mask applied by multiplication would keep it).
  const Input x({9, 9, 2});
  const auto c = Conv2D(3, {3, 3}, Activation::relu).with_padding(Padding::same)(x);
  const Functional f(x, MaxPooling2D({2, 2}, {1, 1}, Padding::same)(c));
  const auto xs = random_host<float>({4, 9, 9, 2}, 6);
  const auto y = host(
      train_step<Dev, float>(f, false, {xs}, {random_host<float>({4, 9, 9, 3}, 5)}, 7).outputs[0]);
  auto dy = random_host<float>({4, 9, 9, 3}, 5);
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < dy.size(); ++i) {
    if (y.data()[i] == 0.f) {
      dy.data()[i] = std::numeric_limits<float>::quiet_NaN();
      ++zeros;
    } else if (i % 17 == 0) {
      dy.data()[i] =
          i % 2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
    }
  }
  ASSERT_GT(zeros, 0u);
  expect_fused_equals_unfused<Dev, float>(f, {xs}, {dy}, 1);
  // 3x3 windows at stride 2, in double.
  const Input xd({9, 9, 2});
  const Functional fd(xd, MaxPooling2D({3, 3}, {2, 2}, Padding::same)(
                              Conv2D(3, {3, 3}, Activation::relu).with_padding(Padding::same)(xd)));
  expect_fused_equals_unfused<Dev, double>(fd, {random_host<double>({2, 9, 9, 2}, 8)},
                                           {random_host<double>({2, 5, 5, 3}, 9)}, 1);
}

TYPED_TEST(NnFusion, DenseReluIntoPoolingGradientsBitwiseUnfused) {
  using Dev = TypeParam;
  const Input x({6, 6, 3});
  const auto h = Dense(5, Activation::relu)(x);
  const auto y = Dense(2, Activation::sigmoid)(Flatten()(MaxPooling2D({2, 2})(h)));
  expect_fused_equals_unfused<Dev, float>(Functional(x, y), {random_host<float>({3, 6, 6, 3}, 10)},
                                          {random_host<float>({3, 2}, 11)}, 1);
}

TYPED_TEST(NnFusion, TrainedModelUsesTheFusedPlan) {
  using Dev = TypeParam;
  // Through the public model: training steps with the fused plan match a model whose
  // convolution keeps relu in a layer of its own (nothing to fuse), given equal weights.
  Sequential<Dev> fused(Input({8, 8, 1}), Conv2D(4, {3, 3}, Activation::relu), MaxPooling2D({2, 2}),
                        Flatten(), Dense(3, Activation::softmax));
  Sequential<Dev> split(Input({8, 8, 1}), Conv2D(4, {3, 3}), layers::Activation("relu"),
                        MaxPooling2D({2, 2}), Flatten(), Dense(3, Activation::softmax));
  fused.build(3);
  split.build(3);
  const auto from = fused.weights();
  auto to = split.weights();
  ASSERT_EQ(from.size(), to.size());
  for (std::size_t i = 0; i < from.size(); ++i) {
    // Random biases too, so that the epilogue's bias is not zero.
    *from[i].second = on<Dev>(random_host<float>(from[i].second->shape(), 20 + i, -0.5f, 0.5f));
    *to[i].second = *from[i].second;
  }
  const auto xs = on<Dev>(random_host<float>({6, 8, 8, 1}, 12));
  const auto ys = on<Dev>(Tensor<std::int32_t, CPUDev>{0, 2, 1, 1, 0, 2});
  const auto a = fused.value_and_gradient(xs, ys, SparseCategoricalCrossentropy{});
  const auto b = split.value_and_gradient(xs, ys, SparseCategoricalCrossentropy{});
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (std::size_t i = 0; i < a.grads.size(); ++i)
    EXPECT_TRUE(bitwise_equal(a.grads[i], b.grads[i])) << i;
}

}  // namespace
