// The OpenCL kernels against the host backend: generated element-wise kernels (flat and
// broadcast), reductions, argmax, transpose, GEMM and Philox random numbers.
#include <gtest/gtest.h>

#include <cstdint>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;

template <class T>
Tensor<T, C> host(const Tensor<T, G>& t) {
  return to<C>(t);
}

template <class T>
void expect_equal(const Tensor<T, C>& got, const Tensor<T, C>& want, double tol = 1e-5) {
  ASSERT_EQ(got.shape(), want.shape());
  for (std::size_t i = 0; i < want.size(); ++i) {
    if constexpr (std::is_integral_v<T>) {
      ASSERT_EQ(got.data()[i], want.data()[i]) << "at " << i;
    } else {
      ASSERT_NEAR(got.data()[i], want.data()[i], tol * (1 + std::abs(want.data()[i])))
          << "at " << i;
    }
  }
}

TEST(OpenCLKernels, FusedExpressionMatchesHost) {
  auto a = Tensor<float, C>::uniform({7, 33}, 1, -2.f, 2.f);
  auto b = Tensor<float, C>::uniform({7, 33}, 2, 0.5f, 3.f);
  auto ga = to<G>(a), gb = to<G>(b);
  Tensor<float, C> want = relu(a) * sigmoid(b) + square(a - b) / sqrt(b) - exp(-abs(a)) +
                          log(b) * tanh(a) + maximum(a, b) - minimum(a, 0.5f) + pow(b, 1.5f);
  Tensor<float, G> got = relu(ga) * sigmoid(gb) + square(ga - gb) / sqrt(gb) - exp(-abs(ga)) +
                         log(gb) * tanh(ga) + maximum(ga, gb) - minimum(ga, 0.5f) + pow(gb, 1.5f);
  expect_equal(host(got), want, 1e-5);
}

TEST(OpenCLKernels, ComparisonsWhereAndCasts) {
  auto a = Tensor<float, C>::uniform({50}, 3, -1.f, 1.f);
  auto b = Tensor<float, C>::uniform({50}, 4, -1.f, 1.f);
  auto ga = to<G>(a), gb = to<G>(b);
  Tensor<float, C> w1 = greater(a, b) + less(a, b) * 2.f + greater_equal(a, 0.f) * 4.f +
                        less_equal(b, 0.f) * 8.f + equal(a, a) * 16.f;
  Tensor<float, G> g1 = greater(ga, gb) + less(ga, gb) * 2.f + greater_equal(ga, 0.f) * 4.f +
                        less_equal(gb, 0.f) * 8.f + equal(ga, ga) * 16.f;
  expect_equal(host(g1), w1);
  Tensor<std::int32_t, C> wi = cast<std::int32_t>(a * 10.f);
  Tensor<std::int32_t, G> gi = cast<std::int32_t>(ga * 10.f);
  expect_equal(host(gi), wi);
  Tensor<float, C> ww = where(wi, a, b * 2.f);
  Tensor<float, G> gw = where(gi, ga, gb * 2.f);
  expect_equal(host(gw), ww);
  Tensor<std::int32_t, C> wint =
      relu(wi) * 3 + abs(wi) - maximum(wi, 2) + minimum(wi, -1) / 2 + square(wi);
  Tensor<std::int32_t, G> gint =
      relu(gi) * 3 + abs(gi) - maximum(gi, 2) + minimum(gi, -1) / 2 + square(gi);
  expect_equal(host(gint), wint);
}

TEST(OpenCLKernels, DoubleExpressions) {
  if (!backend_for<G>::ctx().info.fp64) GTEST_SKIP() << "device has no cl_khr_fp64";
  auto a = Tensor<double, C>::uniform({1000}, 5, 0.1, 2.0);
  auto ga = to<G>(a);
  Tensor<double, C> want = log(a) * a + cast<double>(cast<float>(a));
  Tensor<double, G> got = log(ga) * ga + cast<double>(cast<float>(ga));
  expect_equal(host(got), want, 1e-12);
}

TEST(OpenCLKernels, BroadcastExpressions) {
  auto m = Tensor<float, C>::uniform({4, 5, 6}, 6);
  auto row = Tensor<float, C>::uniform({6}, 7);
  auto col = Tensor<float, C>::uniform({4, 1, 1}, 8);
  auto mid = Tensor<float, C>::uniform({5, 1}, 9);
  auto gm = to<G>(m), grow = to<G>(row), gcol = to<G>(col), gmid = to<G>(mid);
  expect_equal(host(Tensor<float, G>(gm + grow)), Tensor<float, C>(m + row));
  expect_equal(host(Tensor<float, G>(gm * gcol - gmid)), Tensor<float, C>(m * col - mid));
  expect_equal(host(Tensor<float, G>(grow * gmid + gcol)), Tensor<float, C>(row * mid + col));
  // Rank-0 and size-1 leaves.
  Tensor<float, C> s0 = sum(m);
  expect_equal(host(Tensor<float, G>(gm / to<G>(s0))), Tensor<float, C>(m / s0));
  // In-place with broadcasting (the target keeps its shape).
  Tensor<float, C> hm = m;
  hm += row;
  gm += grow;
  expect_equal(host(gm), hm);
}

TEST(OpenCLKernels, Reductions) {
  for (auto shape : {Shape{3, 4, 5}, Shape{2, 100000}, Shape{1, 3001}, Shape{257, 3}, Shape{1}}) {
    // Generated on the device (bit-identical to the host generator, tested below).
    auto ga = Tensor<float, G>::uniform(shape, 10, -1.f, 1.f);
    auto a = host(ga);
    for (std::ptrdiff_t axis = 0; axis < static_cast<std::ptrdiff_t>(shape.rank()); ++axis) {
      expect_equal(host(sum(ga, axis)), sum(a, axis), 1e-4);
      expect_equal(host(mean(ga, axis)), mean(a, axis), 1e-4);
      expect_equal(host(max(ga, axis)), max(a, axis));
      expect_equal(host(min(ga, axis)), min(a, axis));
      expect_equal(host(argmax(ga, axis)), argmax(a, axis));
    }
    expect_equal(host(sum(ga)), sum(a), 1e-4);
    expect_equal(host(max(ga)), max(a));
    expect_equal(host(argmax(ga)), argmax(a));
  }
  auto i = Tensor<std::int32_t, C>::uniform({6, 1000}, 11, -50, 50);
  auto gi = to<G>(i);
  expect_equal(host(sum(gi, 1)), sum(i, 1));
  expect_equal(host(max(gi, 0)), max(i, 0));
  expect_equal(host(argmax(gi, 1)), argmax(i, 1));
}

TEST(OpenCLKernels, ArgmaxTakesTheFirstIndexOnTies) {
  Tensor<float, C> a{{1.f, 5.f, 5.f, 2.f}, {7.f, 7.f, 7.f, 7.f}};
  auto ga = to<G>(a);
  auto r = host(argmax(ga, 1));
  EXPECT_EQ(r(0), 1);
  EXPECT_EQ(r(1), 0);
  auto big = Tensor<float, C>::zeros({10000});
  big(4000) = 3.f;
  big(9000) = 3.f;
  EXPECT_EQ(host(argmax(to<G>(big))).item(), 4000);
}

TEST(OpenCLKernels, Transpose) {
  for (auto [r, c] : {std::pair<std::size_t, std::size_t>{1, 1}, {17, 33}, {64, 16}, {3, 1000}}) {
    auto a = Tensor<float, C>::uniform({r, c}, 12);
    expect_equal(host(transpose(to<G>(a))), transpose(a));
  }
}

TEST(OpenCLKernels, Gemm) {
  auto a = Tensor<float, C>::uniform({37, 19}, 13, -1.f, 1.f);
  auto b = Tensor<float, C>::uniform({19, 23}, 14, -1.f, 1.f);
  expect_equal(host(matmul(to<G>(a), to<G>(b))), matmul(a, b), 1e-4);
  auto ia = Tensor<std::int32_t, C>::uniform({9, 17}, 15, -5, 5);
  auto ib = Tensor<std::int32_t, C>::uniform({17, 5}, 16, -5, 5);
  expect_equal(host(matmul(to<G>(ia), to<G>(ib))), matmul(ia, ib));
}

TEST(OpenCLKernels, RandomMatchesHostBitForBit) {
  const Shape s{1001};
  expect_equal(host(Tensor<float, G>::uniform(s, 99, -3.f, 5.f)),
               Tensor<float, C>::uniform(s, 99, -3.f, 5.f), 0);
  expect_equal(host(Tensor<std::int32_t, G>::uniform(s, 99, -7, 1000)),
               Tensor<std::int32_t, C>::uniform(s, 99, -7, 1000));
  if (backend_for<G>::ctx().info.fp64) {
    expect_equal(host(Tensor<double, G>::uniform(s, 1ull << 40, 0.0, 1.0)),
                 Tensor<double, C>::uniform(s, 1ull << 40, 0.0, 1.0), 0);
    expect_equal(host(Tensor<double, G>::normal(s, 3, 1.0, 2.0)),
                 Tensor<double, C>::normal(s, 3, 1.0, 2.0), 1e-12);
  }
  expect_equal(host(Tensor<float, G>::normal(s, 3, 1.f, 2.f)),
               Tensor<float, C>::normal(s, 3, 1.f, 2.f), 1e-5);
  // Different seeds differ.
  EXPECT_NE(host(Tensor<float, G>::uniform(s, 1))(0), host(Tensor<float, G>::uniform(s, 2))(0));
}

TEST(OpenCLKernels, FillCopySliceAndEmptyTensors) {
  auto f = Tensor<std::int32_t, G>::full({1000}, 42);
  auto h = host(f);
  EXPECT_EQ(h(0), 42);
  EXPECT_EQ(h(999), 42);
  auto m = to<G>(Tensor<float, C>{{1.f, 2.f}, {3.f, 4.f}, {5.f, 6.f}});
  auto sl = host(m.slice(1, 3));
  EXPECT_EQ(sl(0, 0), 3.f);
  EXPECT_EQ(sl(1, 1), 6.f);
  Tensor<float, G> copy = m;
  EXPECT_EQ(host(copy)(2, 1), 6.f);
  Tensor<float, Device<GPU, 3>> empty;  // touches no device (there is no device 3)
  EXPECT_EQ(empty.size(), 0u);
}

}  // namespace
