// Element-wise expressions on every device against a float64 reference: arithmetic with
// NumPy broadcasting, scalars, unary functions, maximum/minimum/pow, comparisons, where,
// cast, compound assignment and fused trees (also compared across devices).
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class ElementwiseTest : public ::testing::Test {};
TYPED_TEST_SUITE(ElementwiseTest, TestDevices, DeviceNames);

// One binary op on inputs of shapes sa and sb: locus on Dev against the float64 reference.
template <class Dev, class T, class F, class R>
void check_binary(const Shape& sa, const Shape& sb, F f, R r, std::uint64_t seed, T lo = T(-4),
                  T hi = T(4), double rtol = tol<T>::rtol, double atol = tol<T>::atol) {
  const auto ha = random_host<T>(sa, seed, lo, hi), hb = random_host<T>(sb, seed + 1, lo, hi);
  const auto a = on<Dev>(ha), b = on<Dev>(hb);
  const Tensor<T, Dev> got = f(a, b);
  EXPECT_TRUE(near_ref(got, ref_binary(ref(ha), ref(hb), r), rtol, atol))
      << to_string(sa) << " with " << to_string(sb);
}

const auto add_ = [](const auto& a, const auto& b) { return a + b; };
const auto sub_ = [](const auto& a, const auto& b) { return a - b; };
const auto mul_ = [](const auto& a, const auto& b) { return a * b; };
const auto div_ = [](const auto& a, const auto& b) { return a / b; };

TYPED_TEST(ElementwiseTest, ArithmeticWithBroadcasting) {
  using Dev = TypeParam;
  const std::vector<std::pair<Shape, Shape>> cases = {{{2, 3}, {2, 3}},
                                                      {{2, 3}, {3}},
                                                      {{3}, {2, 3}},
                                                      {{2, 1}, {1, 3}},
                                                      {{4, 1, 3}, {2, 1}},
                                                      {{2, 1}, {4, 1, 3}},
                                                      {{1}, {5}},
                                                      {Shape{}, {2, 3}},
                                                      {{2, 3}, Shape{}},
                                                      {{5, 1, 1}, {1, 4, 1}},
                                                      {{2, 3, 4, 5}, {3, 1, 5}},
                                                      {{300, 257}, {257}},
                                                      {{257, 1}, {1, 300}},
                                                      {{100000}, {100000}},
                                                      {{7, 0}, {7, 1}}};
  std::uint64_t seed = 10;
  for (const auto& [sa, sb] : cases) {
    check_binary<Dev, float>(sa, sb, add_, add_, seed++);
    check_binary<Dev, float>(sa, sb, sub_, sub_, seed++);
    check_binary<Dev, float>(sa, sb, mul_, mul_, seed++);
    check_binary<Dev, float>(sa, sb, div_, div_, seed++, 0.5f, 4.f);
  }
  EXPECT_EQ(
      (on<Dev>(random_host<float>({4, 1, 3}, 1)) + on<Dev>(random_host<float>({2, 1}, 2))).shape(),
      (Shape{4, 2, 3}));
}

TYPED_TEST(ElementwiseTest, DoubleAndInt32Arithmetic) {
  using Dev = TypeParam;
  check_binary<Dev, double>({3, 5}, {5}, add_, add_, 1);
  check_binary<Dev, double>({3, 1}, {1, 5}, mul_, mul_, 2);
  check_binary<Dev, double>({4, 1, 3}, {2, 1}, div_, div_, 3, 0.25, 3.0);
  check_binary<Dev, double>({64, 33}, {64, 33}, sub_, sub_, 4);
  check_binary<Dev, std::int32_t>({3, 5}, {5}, add_, add_, 5, -100, 100);
  check_binary<Dev, std::int32_t>({3, 1}, {1, 5}, sub_, sub_, 6, -100, 100);
  check_binary<Dev, std::int32_t>({4, 1, 3}, {2, 1}, mul_, mul_, 7, -100, 100);
  check_binary<Dev, std::int32_t>({1000}, {1000}, mul_, mul_, 8, -1000, 1000);
  // Integer division truncates toward zero (C semantics).
  const auto a = on<Dev>(Tensor<std::int32_t, CPUDev>{7, -7, 7, -7, 9, 0, 100});
  const auto b = on<Dev>(Tensor<std::int32_t, CPUDev>{2, 2, -2, -2, 3, 5, 7});
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(a / b), Ref{3, -3, -3, 3, 3, 0, 14}));
  // Enough elements for the SIMD path and its tail.
  const auto hi = random_host<std::int32_t>({1003}, 9, -50, 50);
  const auto hd = random_host<std::int32_t>({1003}, 10, 1, 9);
  EXPECT_TRUE(
      near_ref(Tensor<std::int32_t, Dev>(on<Dev>(hi) / on<Dev>(hd)),
               ref_binary(ref(hi), ref(hd), [](double x, double y) { return std::trunc(x / y); })));
}

TYPED_TEST(ElementwiseTest, ScalarsOnEitherSide) {
  using Dev = TypeParam;
  const auto h = random_host<float>({3, 7}, 21, 0.5f, 2.f);
  const auto x = on<Dev>(h);
  const Ref r = ref(h);
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(x + 2.f), r + 2.0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(2.f + x), r + 2.0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(x - 3.f), r - 3.0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(3.f - x), 3.0 - r));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(x * 0.5f), r * 0.5));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(4.f * x), r * 4.0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(x / 4.f), r / 4.0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(1.f / x), 1.0 / r));
  // A scalar of another arithmetic type takes the tensor's element type.
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(x * 2 + 1.0), r * 2.0 + 1.0));
  const auto hi = on<Dev>(Tensor<std::int32_t, CPUDev>{1, -2, 3});
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(10 - hi * 3), Ref{7, 16, 1}));
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(hi / 2), Ref{0, -1, 1}));
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(7 / hi), Ref{7, -3, 2}));
  const auto hd = on<Dev>(Tensor<double, CPUDev>{0.1, 0.2});
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(hd * 3.0 - 0.3), Ref{0.1 * 3.0 - 0.3, 0.2 * 3.0 - 0.3}));
}

template <class Dev, class T, class F, class R>
void check_unary(const char* name, F f, R r, T lo, T hi, double rtol = tol<T>::rtol,
                 double atol = tol<T>::atol) {
  // 1000 elements: SIMD batches plus a scalar tail; a broadcast tree for the other kernel.
  const auto h = random_host<T>({1000}, 77, lo, hi);
  const Tensor<T, Dev> got = f(on<Dev>(h));
  EXPECT_TRUE(near_ref(got, ref_unary(ref(h), r), rtol, atol)) << name;
}

TYPED_TEST(ElementwiseTest, UnaryFunctions) {
  using Dev = TypeParam;
  check_unary<Dev, float>(
      "exp", [](const auto& x) { return exp(x); }, [](double v) { return std::exp(v); }, -10.f,
      10.f);
  check_unary<Dev, float>(
      "log", [](const auto& x) { return log(x); }, [](double v) { return std::log(v); }, 1e-3f,
      1e3f);
  check_unary<Dev, float>(
      "sqrt", [](const auto& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, 0.f,
      100.f);
  check_unary<Dev, float>(
      "tanh", [](const auto& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, -5.f,
      5.f);
  check_unary<Dev, float>(
      "relu", [](const auto& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0.0; }, -3.f,
      3.f, 0, 0);
  check_unary<Dev, float>(
      "sigmoid", [](const auto& x) { return sigmoid(x); },
      [](double v) { return 1 / (1 + std::exp(-v)); }, -20.f, 20.f);
  check_unary<Dev, float>(
      "abs", [](const auto& x) { return abs(x); }, [](double v) { return std::abs(v); }, -3.f, 3.f,
      0, 0);
  check_unary<Dev, float>(
      "square", [](const auto& x) { return square(x); }, [](double v) { return v * v; }, -3.f, 3.f);
  check_unary<Dev, float>(
      "negate", [](const auto& x) { return -x; }, [](double v) { return -v; }, -3.f, 3.f, 0, 0);
  check_unary<Dev, double>(
      "exp<double>", [](const auto& x) { return exp(x); }, [](double v) { return std::exp(v); },
      -10.0, 10.0);
  check_unary<Dev, double>(
      "tanh<double>", [](const auto& x) { return tanh(x); }, [](double v) { return std::tanh(v); },
      -5.0, 5.0);
  check_unary<Dev, double>(
      "sigmoid<double>", [](const auto& x) { return sigmoid(x); },
      [](double v) { return 1 / (1 + std::exp(-v)); }, -20.0, 20.0);
  check_unary<Dev, std::int32_t>(
      "relu<int32>", [](const auto& x) { return relu(x); },
      [](double v) { return v > 0 ? v : 0.0; }, -50, 50);
  check_unary<Dev, std::int32_t>(
      "abs<int32>", [](const auto& x) { return abs(x); }, [](double v) { return std::abs(v); }, -50,
      50);
  check_unary<Dev, std::int32_t>(
      "square<int32>", [](const auto& x) { return square(x); }, [](double v) { return v * v; }, -50,
      50);
  check_unary<Dev, std::int32_t>(
      "negate<int32>", [](const auto& x) { return -x; }, [](double v) { return -v; }, -50, 50);
  // Special values: exp overflows to inf, log(0) is -inf, sqrt(-1) is NaN, sigmoid saturates.
  const auto s = on<Dev>(Tensor<float, CPUDev>{0.f, -1.f, 100.f, -100.f});
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(exp(s)), Ref{1, std::exp(-1.0), inf, 0}, 1e-5, 1e-30));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(log(s)), Ref{-inf, nan, std::log(100.0), nan}));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(sqrt(s)), Ref{0, nan, 10, nan}));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(sigmoid(s)), Ref{0.5, 1 / (1 + std::exp(1.0)), 1, 0},
                       1e-5, 1e-30));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(tanh(s)), Ref{0, std::tanh(-1.0), 1, -1}));
}

TYPED_TEST(ElementwiseTest, MaximumMinimumPow) {
  using Dev = TypeParam;
  const auto mx = [](double a, double b) { return std::max(a, b); };
  const auto mn = [](double a, double b) { return std::min(a, b); };
  check_binary<Dev, float>(
      {5, 7}, {7}, [](const auto& a, const auto& b) { return maximum(a, b); }, mx, 31);
  check_binary<Dev, float>(
      {5, 1}, {1, 7}, [](const auto& a, const auto& b) { return minimum(a, b); }, mn, 32);
  check_binary<Dev, std::int32_t>(
      {100}, {100}, [](const auto& a, const auto& b) { return maximum(a, b); }, mx, 33);
  check_binary<Dev, double>(
      {4, 1, 3}, {2, 1}, [](const auto& a, const auto& b) { return minimum(a, b); }, mn, 34);
  check_binary<Dev, float>(
      {6, 50}, {50}, [](const auto& a, const auto& b) { return pow(a, b); },
      [](double a, double b) { return std::pow(a, b); }, 35, 0.1f, 3.f, 1e-5, 1e-6);
  check_binary<Dev, double>(
      {6, 50}, {6, 50}, [](const auto& a, const auto& b) { return pow(a, b); },
      [](double a, double b) { return std::pow(a, b); }, 36, 0.1, 3.0);
  const auto h = random_host<float>({9, 11}, 37, -2.f, 2.f);
  const auto x = on<Dev>(h);
  const Ref r = ref(h);
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(maximum(x, 0.5f)), xt::maximum(r, 0.5), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(minimum(-0.5f, x)), xt::minimum(r, -0.5), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(pow(x, 2.f)), r * r));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(pow(2.f, x)), xt::pow(2.0, r)));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(pow(abs(x), 0.5f)), xt::sqrt(xt::abs(r))));
}

TYPED_TEST(ElementwiseTest, ErfErfcExpm1Log1p) {
  using Dev = TypeParam;
  const auto erf_ = [](const auto& x) { return erf(x); };
  const auto erfc_ = [](const auto& x) { return erfc(x); };
  const auto expm1_ = [](const auto& x) { return expm1(x); };
  const auto log1p_ = [](const auto& x) { return log1p(x); };
  const auto r_erf = [](double v) { return std::erf(v); };
  const auto r_erfc = [](double v) { return std::erfc(v); };
  const auto r_expm1 = [](double v) { return std::expm1(v); };
  const auto r_log1p = [](double v) { return std::log1p(v); };
  check_unary<Dev, float>("erf", erf_, r_erf, -5.f, 5.f);
  check_unary<Dev, float>("erfc", erfc_, r_erfc, -3.f, 9.f, 1e-5, 1e-30);
  check_unary<Dev, float>("expm1", expm1_, r_expm1, -10.f, 10.f, 1e-5, 1e-30);
  check_unary<Dev, float>("log1p", log1p_, r_log1p, -0.99f, 100.f, 1e-5, 1e-30);
  check_unary<Dev, double>("erf<double>", erf_, r_erf, -6.0, 6.0);
  check_unary<Dev, double>("erfc<double>", erfc_, r_erfc, -3.0, 25.0, 1e-12, 1e-300);
  check_unary<Dev, double>("expm1<double>", expm1_, r_expm1, -20.0, 20.0, 1e-12, 1e-300);
  check_unary<Dev, double>("log1p<double>", log1p_, r_log1p, -0.999, 1e3, 1e-12, 1e-300);
  // Where they beat the naive spelling: relative accuracy near 0 (expm1, log1p) and in
  // the far tail (erfc); saturation, overflow and the pole at -1.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const std::vector<double> small{1e-10, -1e-10, 1e-30, -1e-20, 3e-8, 0};
  Tensor<float, CPUDev> hs(Shape{small.size()});
  for (std::size_t i = 0; i < small.size(); ++i) hs.data()[i] = static_cast<float>(small[i]);
  const auto s = on<Dev>(hs);
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(expm1(s)), ref_unary(ref(hs), r_expm1), 1e-6, 1e-40));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(log1p(s)), ref_unary(ref(hs), r_log1p), 1e-6, 1e-40));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(erf(s)), ref_unary(ref(hs), r_erf), 1e-6, 1e-40));
  const auto e = on<Dev>(Tensor<float, CPUDev>{100.f, -100.f, 9.f, -9.f, 0.f, -1.f});
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(expm1(e)),
                       Ref{inf, -1, std::expm1(9.0), std::expm1(-9.0), 0, std::expm1(-1.0)}));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(erf(e)), Ref{1, -1, 1, -1, 0, std::erf(-1.0)}));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(erfc(e)),
                       Ref{0, 2, std::erfc(9.0), 2, 1, std::erfc(-1.0)}, 1e-5, 1e-40));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(log1p(e)),
                       Ref{std::log1p(100.0), nan, std::log1p(9.0), nan, 0, -inf}));
  const auto d = on<Dev>(Tensor<double, CPUDev>{1e-15, -1e-200, 26.0, 700.0, -1.0});
  EXPECT_TRUE(near_ref(
      Tensor<double, Dev>(expm1(d)),
      Ref{std::expm1(1e-15), -1e-200, std::expm1(26.0), std::expm1(700.0), std::expm1(-1.0)}, 1e-12,
      1e-300));
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(erfc(d)),
                       Ref{std::erfc(1e-15), 1, std::erfc(26.0), 0, std::erfc(-1.0)}, 1e-12,
                       1e-300));
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(log1p(d)),
                       Ref{std::log1p(1e-15), -1e-200, std::log1p(26.0), std::log1p(700.0), -inf},
                       1e-12, 1e-300));
  // Fused with other ops and broadcast (the second OpenCL kernel): softplus, as the
  // activations write it, and gelu.
  const auto hx = random_host<float>({33, 7}, 51, -30.f, 30.f), hb = random_host<float>({7}, 52);
  const auto x = on<Dev>(hx), b = on<Dev>(hb);
  const Ref rxb =
      ref_binary(ref(hx), ref(hb), [](double u, double v) { return double(float(u) + float(v)); });
  EXPECT_TRUE(near_ref(
      Tensor<float, Dev>(relu(x + b) + log1p(exp(-abs(x + b)))),
      ref_unary(rxb, [](double v) { return v > 30 ? v : std::log1p(std::exp(v)); }), 1e-5, 1e-30));
  EXPECT_TRUE(
      near_ref(Tensor<float, Dev>(0.5f * (x + b) * erfc((x + b) * -0.70710678f)),
               ref_unary(rxb, [](double v) { return 0.5 * v * std::erfc(-v / std::sqrt(2.0)); }),
               2e-5, 1e-30));
}

TYPED_TEST(ElementwiseTest, ComparisonsGiveOneOrZero) {
  using Dev = TypeParam;
  // Small integers in float make ties frequent, so equal/greater_equal/less_equal matter.
  const auto ha = Tensor<float, CPUDev>(xt::floor(xt::arange(-12.f, 12.f) / 3.f));
  const auto hb = Tensor<float, CPUDev>(xt::floor(xt::arange(12.f, -12.f, -1.f) / 4.f));
  const auto a = on<Dev>(ha), b = on<Dev>(hb);
  const Ref ra = ref(ha), rb = ref(hb);
  auto cmp = [&](auto f) {
    return ref_binary(ra, rb, [&](double x, double y) { return f(x, y) ? 1.0 : 0.0; });
  };
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(greater(a, b)), cmp(std::greater<>{}), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(less(a, b)), cmp(std::less<>{}), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(greater_equal(a, b)), cmp(std::greater_equal<>{}), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(less_equal(a, b)), cmp(std::less_equal<>{}), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(equal(a, b)), cmp(std::equal_to<>{}), 0, 0));
  // With scalars and broadcasting, and in int32 and double.
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(greater(a, 0.f)),
                       ref_unary(ra, [](double x) { return x > 0 ? 1.0 : 0.0; }), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(less_equal(1.f, a)),
                       ref_unary(ra, [](double x) { return 1 <= x ? 1.0 : 0.0; }), 0, 0));
  const auto m = on<Dev>(Tensor<std::int32_t, CPUDev>{{1, 2, 3}, {4, 5, 6}});
  const auto row = on<Dev>(Tensor<std::int32_t, CPUDev>{2, 5, 3});
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(equal(m, row)), Ref{{0, 0, 1}, {0, 1, 0}}));
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(greater(m, row)), Ref{{0, 0, 0}, {1, 0, 1}}));
  const auto d = on<Dev>(Tensor<double, CPUDev>{0.1 + 0.2, 0.3});
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(equal(d, 0.3)), Ref{0, 1}));
  // NaN compares false with everything, itself included.
  const auto n = on<Dev>(Tensor<float, CPUDev>{std::nanf(""), 1.f});
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(equal(n, n)), Ref{0, 1}));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(greater_equal(n, 0.f) + less(n, 0.f)), Ref{0, 1}));
}

TYPED_TEST(ElementwiseTest, Where) {
  using Dev = TypeParam;
  const auto hc = random_host<float>({4, 5}, 41);
  const auto ha = random_host<float>({4, 5}, 42), hb = random_host<float>({5}, 43);
  const auto c = on<Dev>(hc), a = on<Dev>(ha), b = on<Dev>(hb);
  const Ref rc = ref(hc), ra = ref(ha), rb = xt::broadcast(ref(hb), std::vector<std::size_t>{4, 5});
  const Ref want = xt::where(rc > 0, ra, rb);
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(where(greater(c, 0.f), a, b)), want, 0, 0));
  // Scalars in either branch, and a condition of another element type (int32).
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(where(greater(c, 0.f), a, 0.f)),
                       Ref(xt::where(rc > 0, ra, 0.0)), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(where(greater(c, 0.f), -1.f, b)),
                       Ref(xt::where(rc > 0, -1.0, rb)), 0, 0));
  const auto mask = on<Dev>(Tensor<std::int32_t, CPUDev>{0, 3, 0, -1, 0});
  const Ref rm = Ref{0, 1, 0, 1, 0};
  EXPECT_TRUE(near_ref(
      Tensor<float, Dev>(where(mask, a, b)),
      Ref(xt::where(xt::broadcast(rm, std::vector<std::size_t>{4, 5}) > 0, ra, rb)), 0, 0));
  const auto ia = on<Dev>(Tensor<std::int32_t, CPUDev>{1, 2, 3}),
             ib = on<Dev>(Tensor<std::int32_t, CPUDev>{10, 20, 30});
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>(where(less(ia, 2), ia, ib)), Ref{1, 20, 30}));
  // A where-tree used inside a larger expression (relu's derivative).
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(where(greater(a, 0.f), 1.f, 0.f) * b),
                       Ref(xt::where(ra > 0, rb, 0.0)), 0, 0));
}

TYPED_TEST(ElementwiseTest, Cast) {
  using Dev = TypeParam;
  const auto f = on<Dev>(Tensor<float, CPUDev>{-2.7f, -0.5f, 0.f, 0.5f, 2.7f, 1e6f, -3.f});
  // float -> int32 truncates toward zero.
  EXPECT_TRUE(
      near_ref(Tensor<std::int32_t, Dev>(cast<std::int32_t>(f)), Ref{-2, 0, 0, 0, 2, 1000000, -3}));
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(cast<double>(f)), ref(f), 0, 0));
  const auto hi = random_host<std::int32_t>({1001}, 51, -100000, 100000);
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(cast<float>(on<Dev>(hi))), ref(hi), 0, 0));
  EXPECT_TRUE(near_ref(Tensor<double, Dev>(cast<double>(on<Dev>(hi)) * 0.5), ref(hi) * 0.5, 0, 0));
  const auto hd = random_host<double>({1001}, 52, -10.0, 10.0);
  const Ref rd = ref(hd);
  Ref want = Ref::from_shape({1001});
  for (std::size_t i = 0; i < 1001; ++i) want(i) = static_cast<double>(static_cast<float>(rd(i)));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(cast<float>(on<Dev>(hd))), want, 0, 0));
  // A cast inside a tree: labels (int) turned into float one-hot-like masks.
  const auto lab = on<Dev>(Tensor<std::int32_t, CPUDev>{0, 1, 2, 1});
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(cast<float>(equal(lab, 1)) * 2.f), Ref{0, 2, 0, 2}));
  // Broadcasting through a cast.
  const auto col = on<Dev>(Tensor<std::int32_t, CPUDev>{1, 2}.reshape({2, 1}));
  const auto rowf = on<Dev>(Tensor<float, CPUDev>{0.5f, 0.25f, 0.125f});
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(cast<float>(col) * rowf),
                       Ref{{0.5, 0.25, 0.125}, {1, 0.5, 0.25}}));
}

TYPED_TEST(ElementwiseTest, CompoundAssignment) {
  using Dev = TypeParam;
  const auto ha = random_host<float>({3, 4}, 61, 1.f, 2.f),
             hb = random_host<float>({3, 4}, 62, 1.f, 2.f);
  const auto hr = random_host<float>({4}, 63, 1.f, 2.f);
  const Ref ra = ref(ha), rb = ref(hb), rr = ref(hr);
  auto a = on<Dev>(ha);
  const auto b = on<Dev>(hb), row = on<Dev>(hr);
  a += b;
  Ref want = ra + rb;
  EXPECT_TRUE(near_ref(a, want));
  a -= row;  // broadcast right operand
  want = want - rr;
  EXPECT_TRUE(near_ref(a, want));
  a *= b * 2.f;  // an expression
  want = want * (rb * 2.0);
  EXPECT_TRUE(near_ref(a, want));
  a /= 4.f;  // a scalar
  want = want / 4.0;
  EXPECT_TRUE(near_ref(a, want));
  a += a;  // aliasing
  want = want * 2.0;
  EXPECT_TRUE(near_ref(a, want));
  auto i = on<Dev>(Tensor<std::int32_t, CPUDev>{5, 6, 7});
  i *= 3;
  i -= on<Dev>(Tensor<std::int32_t, CPUDev>{1, 1, 1});
  i /= 2;
  EXPECT_TRUE(near_ref(i, Ref{7, 8, 10}));
}

TYPED_TEST(ElementwiseTest, CompoundAssignmentShapeError) {
  using Dev = TypeParam;
  auto row = Tensor<float, Dev>::ones({4});
  const auto m = Tensor<float, Dev>::ones({3, 4});
  EXPECT_TRUE(throws_with<shape_error>([&] { row += m; }, "operator+=", "[3, 4]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { row -= m; }, "operator-=", "[3, 4]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { row *= m; }, "operator*=", "[3, 4]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { row /= m; }, "operator/=", "[3, 4]", "[4]"));
  auto col = Tensor<float, Dev>::ones({3, 1});
  EXPECT_THROW(col += m, shape_error);
  // The failed assignments left the target untouched.
  EXPECT_TRUE(near_ref(row, xt::ones<double>({4}), 0, 0));
  EXPECT_TRUE(near_ref(col, xt::ones<double>({3, 1}), 0, 0));
}

TYPED_TEST(ElementwiseTest, AssigningAnExpressionReplacesShapeAndValues) {
  using Dev = TypeParam;
  const auto ha = random_host<float>({2, 3}, 71), hb = random_host<float>({3}, 72);
  const auto a = on<Dev>(ha), b = on<Dev>(hb);
  auto r = Tensor<float, Dev>::zeros({5});
  r = a * b;  // new shape
  EXPECT_TRUE(near_ref(r, ref_binary(ref(ha), ref(hb), mul_)));
  r = r * 2.f + r;  // same shape, in place, reading itself
  EXPECT_TRUE(near_ref(r, ref_binary(ref(ha), ref(hb), mul_) * 3.0));
  // Temporaries captured by value inside the tree stay alive until evaluation.
  const Tensor<float, Dev> t = on<Dev>(ha) * 2.f + on<Dev>(hb);
  EXPECT_TRUE(near_ref(t, ref(ha) * 2.0 + ref(hb)));
  const auto e = exp(on<Dev>(ha)) - on<Dev>(hb);
  EXPECT_TRUE(near_ref(eval(e), xt::exp(ref(ha)) - ref(hb)));
}

// a*b+c and deeper trees: against the reference, and the device against the other device.
TYPED_TEST(ElementwiseTest, FusedExpressionsMatchReferenceAndOtherDevice) {
  using Dev = TypeParam;
  using Oth = OtherDev<Dev>;
  const auto ha = random_host<float>({33, 65}, 81), hb = random_host<float>({33, 65}, 82);
  const auto hc = random_host<float>({65}, 83), hd = random_host<float>({33, 1}, 84, 0.5f, 2.f);
  const Ref ra = ref(ha), rb = ref(hb), rc = ref(hc), rd = ref(hd);
  const auto a = on<Dev>(ha), b = on<Dev>(hb), c = on<Dev>(hc), d = on<Dev>(hd);
  const auto oa = on<Oth>(ha), ob = on<Oth>(hb), oc = on<Oth>(hc), od = on<Oth>(hd);

  const Tensor<float, Dev> triad = a * b + c;
  const Tensor<float, Oth> triad_o = oa * ob + oc;
  EXPECT_TRUE(near_ref(triad, ra * rb + rc));
  EXPECT_TRUE(same_values(triad, triad_o));

  auto deep = [](const auto& a, const auto& b, const auto& c, const auto& d) {
    return relu(a * b + c) / d - sigmoid(a - c) * tanh(b) + square(minimum(a, 0.25f)) +
           sqrt(abs(b) + 1.f) * exp(-abs(c)) - maximum(log(d), 0.f);
  };
  const Tensor<float, Dev> got = deep(a, b, c, d);
  const Tensor<float, Oth> got_o = deep(oa, ob, oc, od);
  const Ref want =
      xt::maximum(ra * rb + rc, 0.0) / rd - (1.0 / (1.0 + xt::exp(-(ra - rc)))) * xt::tanh(rb) +
      xt::square(xt::minimum(ra, 0.25)) + xt::sqrt(xt::abs(rb) + 1.0) * xt::exp(-xt::abs(rc)) -
      xt::maximum(xt::log(rd), 0.0);
  EXPECT_TRUE(near_ref(got, want, 1e-5, 1e-5));
  EXPECT_TRUE(same_values(got, got_o, 1e-5, 1e-5));

  // Double precision keeps double accuracy through the fused tree.
  const auto da = on<Dev>(random_host<double>({1000}, 85)),
             db = on<Dev>(random_host<double>({1000}, 86));
  const Tensor<double, Dev> dd = da * db + da / (db * db + 1.0) - 3.0;
  const Ref rda = ref(da), rdb = ref(db);
  EXPECT_TRUE(near_ref(dd, rda * rdb + rda / (rdb * rdb + 1.0) - 3.0));
  // int32 trees are exact on both devices.
  const auto hi = random_host<std::int32_t>({500}, 87, -100, 100);
  const auto i = on<Dev>(hi);
  const auto oi = on<Oth>(hi);
  const Tensor<std::int32_t, Dev> ti =
      relu(i) * 3 + abs(i) - maximum(i, 2) + minimum(i, -1) / 2 + square(i);
  const Tensor<std::int32_t, Oth> to_ =
      relu(oi) * 3 + abs(oi) - maximum(oi, 2) + minimum(oi, -1) / 2 + square(oi);
  const Ref ri = ref(hi);
  Ref wi = Ref::from_shape({500});
  for (std::size_t k = 0; k < 500; ++k) {
    const double v = ri(k);
    wi(k) = std::max(v, 0.0) * 3 + std::abs(v) - std::max(v, 2.0) +
            std::trunc(std::min(v, -1.0) / 2) + v * v;
  }
  EXPECT_TRUE(near_ref(ti, wi));
  EXPECT_TRUE(same_values(ti, to_));
}

}  // namespace
