// matmul (2-D and batched, every transpose combination, awkward sizes) on every device
// against a float64 reference and against the other device; allclose semantics.
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class LinalgTest : public ::testing::Test {};
TYPED_TEST_SUITE(LinalgTest, TestDevices, DeviceNames);

// Stored shape of an operand that enters the product as rows x cols (transposed or not),
// with an optional batch axis.
Shape stored(std::size_t batch, std::size_t rows, std::size_t cols, bool transposed) {
  const std::size_t r = transposed ? cols : rows, c = transposed ? rows : cols;
  return batch ? Shape{batch, r, c} : Shape{r, c};
}

// One product on Dev: reference and other-device comparison. ba / bb: batch of a / b (0 = 2-D).
template <class Dev, class T>
void check_matmul(std::size_t ba, std::size_t bb, std::size_t m, std::size_t k, std::size_t n,
                  bool ta, bool tb, std::uint64_t seed) {
  using Oth = OtherDev<Dev>;
  const auto ha = random_host<T>(stored(ba, m, k, ta), seed, T(-1), T(1));
  const auto hb = random_host<T>(stored(bb, k, n, tb), seed + 1, T(-1), T(1));
  const matmul_options o{ta, tb};
  const auto got = matmul(on<Dev>(ha), on<Dev>(hb), o);
  // float32 accumulation over k terms of magnitude <= 1.
  const double atol = std::is_same_v<T, float> ? 2e-6 * static_cast<double>(k + 1)
                                               : 1e-13 * static_cast<double>(k + 1);
  const double rtol = tol<T>::rtol;
  std::ostringstream what;
  what << "a " << to_string(ha.shape()) << (ta ? "^T" : "") << " x b " << to_string(hb.shape())
       << (tb ? "^T" : "");
  EXPECT_TRUE(near_ref(got, ref_matmul(ref(ha), ref(hb), ta, tb), rtol, atol)) << what.str();
  EXPECT_TRUE(same_values(got, matmul(on<Oth>(ha), on<Oth>(hb), o), rtol, atol))
      << what.str() << " across devices";
}

using Sizes = std::tuple<std::size_t, std::size_t, std::size_t>;
const std::vector<Sizes> kSizes = {{1, 1, 1},     {1, 17, 1},    {17, 1, 17}, {17, 17, 17},
                                   {64, 64, 64},  {129, 65, 33}, {2, 129, 3}, {1, 64, 129},
                                   {129, 129, 1}, {33, 200, 70}};

TYPED_TEST(LinalgTest, Matmul2DEveryTransposeCombination) {
  using Dev = TypeParam;
  std::uint64_t seed = 1;
  for (const auto& [m, k, n] : kSizes) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) check_matmul<Dev, float>(0, 0, m, k, n, ta, tb, seed += 2);
    }
  }
  // Known values: the result shape and an exact small product.
  const auto a = on<Dev>(Tensor<float, CPUDev>{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}});
  const auto b = on<Dev>(Tensor<float, CPUDev>{{7.f, 8.f}, {9.f, 10.f}, {11.f, 12.f}});
  EXPECT_TRUE(near_ref(matmul(a, b), Ref{{58, 64}, {139, 154}}, 0, 0));
  EXPECT_TRUE(near_ref(matmul(b, a), Ref{{39, 54, 69}, {49, 68, 87}, {59, 82, 105}}, 0, 0));
  EXPECT_TRUE(near_ref(matmul(a, a, {false, true}), Ref{{14, 32}, {32, 77}}, 0, 0));
  EXPECT_TRUE(
      near_ref(matmul(a, a, {true, false}), Ref{{17, 22, 27}, {22, 29, 36}, {27, 36, 45}}, 0, 0));
  EXPECT_TRUE(near_ref(matmul(b, a, {true, true}), Ref{{58, 139}, {64, 154}}, 0, 0));
}

TYPED_TEST(LinalgTest, MatmulDoubleAndInt32) {
  using Dev = TypeParam;
  std::uint64_t seed = 100;
  for (const auto& [m, k, n] : kSizes) {
    check_matmul<Dev, double>(0, 0, m, k, n, false, false, seed += 2);
    check_matmul<Dev, double>(0, 0, m, k, n, true, true, seed += 2);
  }
  check_matmul<Dev, double>(3, 3, 17, 33, 9, true, false, seed += 2);
  for (const auto& [m, k, n] : std::vector<Sizes>{{1, 1, 1}, {17, 5, 9}, {33, 64, 65}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const auto ha = Tensor<std::int32_t, CPUDev>::uniform(stored(0, m, k, ta), seed++, -50, 50);
        const auto hb = Tensor<std::int32_t, CPUDev>::uniform(stored(0, k, n, tb), seed++, -50, 50);
        EXPECT_TRUE(near_ref(matmul(on<Dev>(ha), on<Dev>(hb), {ta, tb}),
                             ref_matmul(ref(ha), ref(hb), ta, tb)))
            << m << "x" << k << "x" << n << " int32";
      }
    }
  }
  const auto hb3 = Tensor<std::int32_t, CPUDev>::uniform({4, 6, 5}, 7, -9, 9);
  const auto ha2 = Tensor<std::int32_t, CPUDev>::uniform({3, 6}, 8, -9, 9);
  EXPECT_TRUE(near_ref(matmul(on<Dev>(ha2), on<Dev>(hb3)), ref_matmul(ref(ha2), ref(hb3))));
}

TYPED_TEST(LinalgTest, BatchedMatmul) {
  using Dev = TypeParam;
  std::uint64_t seed = 200;
  const std::vector<Sizes> sizes = {{1, 1, 1}, {17, 17, 17}, {5, 64, 3}, {33, 9, 129}};
  for (std::size_t batch : {1u, 3u}) {
    for (const auto& [m, k, n] : sizes) {
      for (bool ta : {false, true}) {
        for (bool tb : {false, true}) {
          check_matmul<Dev, float>(batch, batch, m, k, n, ta, tb, seed += 2);  // [B,m,k]x[B,k,n]
          check_matmul<Dev, float>(batch, 0, m, k, n, ta, tb, seed += 2);      // [B,m,k]x[k,n]
          check_matmul<Dev, float>(0, batch, m, k, n, ta, tb, seed += 2);      // [m,k]x[B,k,n]
        }
      }
    }
  }
  // Shapes of the results.
  const auto a3 = Tensor<float, Dev>::ones({4, 2, 3}), b2 = Tensor<float, Dev>::ones({3, 5});
  EXPECT_EQ(matmul(a3, b2).shape(), (Shape{4, 2, 5}));
  EXPECT_EQ(matmul(b2, a3, {true, true}).shape(), (Shape{4, 5, 2}));
  EXPECT_TRUE(near_ref(matmul(a3, b2), xt::ones<double>({4, 2, 5}) * 3.0, 0, 0));
  // A batch with a single entry is still batched.
  EXPECT_EQ(matmul(Tensor<float, Dev>::ones({1, 2, 3}), b2).shape(), (Shape{1, 2, 5}));
}

TYPED_TEST(LinalgTest, MatmulWithEmptyInnerOrOuterDimensions) {
  using Dev = TypeParam;
  // k = 0: every element is an empty sum, 0.
  const auto a = Tensor<float, Dev>::ones({3, 0}), b = Tensor<float, Dev>::ones({0, 4});
  EXPECT_TRUE(near_ref(matmul(a, b), xt::zeros<double>({3, 4}), 0, 0));
  EXPECT_TRUE(near_ref(
      matmul(Tensor<float, Dev>::ones({0, 3}), Tensor<float, Dev>::ones({4, 0}), {true, true}),
      xt::zeros<double>({3, 4}), 0, 0));
  EXPECT_TRUE(
      near_ref(matmul(Tensor<float, Dev>::ones({2, 3, 0}), Tensor<float, Dev>::ones({0, 4})),
               xt::zeros<double>({2, 3, 4}), 0, 0));
  EXPECT_TRUE(near_ref(matmul(Tensor<double, Dev>::ones({2, 0}), Tensor<double, Dev>::ones({0, 2})),
                       xt::zeros<double>({2, 2}), 0, 0));
  // m = 0, n = 0, batch = 0: empty results of the right shape.
  EXPECT_EQ(matmul(Tensor<float, Dev>::ones({0, 5}), Tensor<float, Dev>::ones({5, 4})).shape(),
            (Shape{0, 4}));
  EXPECT_EQ(matmul(Tensor<float, Dev>::ones({3, 5}), Tensor<float, Dev>::ones({5, 0})).shape(),
            (Shape{3, 0}));
  EXPECT_EQ(matmul(Tensor<float, Dev>::ones({0, 3, 5}), Tensor<float, Dev>::ones({5, 2})).shape(),
            (Shape{0, 3, 2}));
}

TYPED_TEST(LinalgTest, MatmulOfExpressions) {
  using Dev = TypeParam;
  const auto ha = random_host<float>({9, 7}, 301), hb = random_host<float>({7, 5}, 302);
  const auto a = on<Dev>(ha), b = on<Dev>(hb);
  const auto got = matmul(a * 2.f, relu(b));
  EXPECT_TRUE(near_ref(got, ref_matmul(ref(ha) * 2.0, xt::maximum(ref(hb), 0.0)), 1e-5, 1e-5));
  EXPECT_TRUE(near_ref(matmul(a, b + 1.f), ref_matmul(ref(ha), ref(hb) + 1.0), 1e-5, 1e-5));
  // Transposing explicitly and by option agree.
  EXPECT_TRUE(same_values(matmul(transpose(a), a), matmul(a, a, {true, false}), 1e-5, 1e-5));
}

TYPED_TEST(LinalgTest, MismatchedShapesThrowNamingShapes) {
  using Dev = TypeParam;
  const auto a = Tensor<float, Dev>::ones({2, 3}), b = Tensor<float, Dev>::ones({4, 5});
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)matmul(a, b); }, "matmul", "[2, 3]", "[4, 5]",
                                       "3 vs 4"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)matmul(a, a); }, "matmul", "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        (void)matmul(a, b, {true, false});
      },
      "[2, 3] transposed", "[4, 5]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        (void)matmul(a, b, {false, true});
      },
      "[2, 3]", "[4, 5] transposed"));
  // Batch sizes must agree when both operands are batched.
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        (void)matmul(Tensor<float, Dev>::ones({2, 2, 3}), Tensor<float, Dev>::ones({3, 3, 2}));
      },
      "batch", "[2, 2, 3]", "[3, 3, 2]"));
  // Ranks other than 2 and 3.
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        (void)matmul(Tensor<float, Dev>::ones({3}), Tensor<float, Dev>::ones({3, 2}));
      },
      "[3]", "[3, 2]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        (void)matmul(Tensor<float, Dev>::ones({2, 3}), Tensor<float, Dev>::ones({1, 1, 3, 2}));
      },
      "[1, 1, 3, 2]"));
}

// allclose reads values, so it takes host tensors; results of Dev are copied first.
TYPED_TEST(LinalgTest, AllcloseSemantics) {
  using Dev = TypeParam;
  using H = Tensor<float, CPUDev>;
  const auto a = host(on<Dev>(H{1.f, 100.f}));
  // |a - b| <= atol + rtol * |b|, elementwise.
  EXPECT_TRUE(allclose(a, H{1.f, 100.f}, 0, 0));
  EXPECT_TRUE(allclose(a, H{1.f, 101.f}, 0.01, 0));
  EXPECT_FALSE(allclose(a, H{1.f, 102.f}, 0.01, 0));
  EXPECT_TRUE(allclose(a, H{1.5f, 100.f}, 0, 0.5));
  EXPECT_FALSE(allclose(a, H{1.5f, 100.f}, 0, 0.25));
  // The relative term uses |b| (NumPy's asymmetry).
  const H x{10.f}, y{11.f};
  EXPECT_TRUE(allclose(x, y, 0.095, 0));   // 1 <= 0.095 * 11 = 1.045
  EXPECT_FALSE(allclose(y, x, 0.095, 0));  // 1 > 0.095 * 10 = 0.95
  // Defaults rtol = 1e-5, atol = 1e-8.
  EXPECT_TRUE(allclose(H{1.f}, H{1.000001f}));
  EXPECT_FALSE(allclose(H{1.f}, H{1.0001f}));
  EXPECT_FALSE(allclose(H{0.f}, H{1e-6f}));
  // NaN is never close, not even to NaN; infinities of one sign are close (NumPy).
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(allclose(H{nan}, H{nan}));
  EXPECT_FALSE(allclose(H{nan}, H{1.f}, 1e9, 1e9));
  EXPECT_FALSE(allclose(H{1.f}, H{nan}, 1e9, 1e9));
  EXPECT_TRUE(allclose(H{inf, -inf}, H{inf, -inf}));
  EXPECT_FALSE(allclose(H{inf}, H{-inf}));
  EXPECT_FALSE(allclose(H{inf}, H{1.f}, 1e9, 1e9));
  // Broadcasting, and a shape mismatch is a shape_error.
  EXPECT_TRUE(allclose(H{{1.f, 2.f}, {1.f, 2.f}}, H{1.f, 2.f}));
  EXPECT_FALSE(allclose(H{{1.f, 2.f}, {1.f, 3.f}}, H{1.f, 2.f}));
  EXPECT_THROW((void)allclose(H{1.f, 2.f, 3.f}, H{1.f, 2.f}), shape_error);
  // A device result compared with a host reference.
  const auto hm = random_host<float>({8, 8}, 401);
  const auto prod = host(matmul(on<Dev>(hm), on<Dev>(hm)));
  EXPECT_TRUE(allclose(prod, matmul(hm, hm), 1e-5, 1e-6));
  EXPECT_FALSE(allclose(prod, Tensor<float, CPUDev>(matmul(hm, hm) + 1e-3f), 1e-5, 1e-6));
}

}  // namespace
