// Tests for the CPU GEMM and the thread pool it runs on. Every result is checked against a
// naive double-precision reference with an error bound scaled by k and the magnitudes
// involved, so a wrong index, a dropped edge row or a missed k block fails loudly.
#include <locus/backend/cpu/gemm.hpp>
#include <locus/backend/cpu/thread_pool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cpu = locus::backend::cpu;

namespace {

// Restores the thread count a test changed, even when an assertion bails out early.
class thread_count_guard {
 public:
  thread_count_guard() : saved_(cpu::num_threads()) {}
  ~thread_count_guard() { cpu::set_num_threads(saved_); }
  thread_count_guard(const thread_count_guard&) = delete;
  thread_count_guard& operator=(const thread_count_guard&) = delete;

 private:
  std::size_t saved_;
};

struct problem {
  bool ta, tb;
  std::size_t m, n, k;
  std::size_t pad = 0;  // extra elements per stored row (tests ld > minimal)
};

template <class T>
struct operands {
  std::size_t lda, ldb, ldc;
  std::vector<T> a, b, c;
};

template <class T>
operands<T> make_operands(const problem& p, std::mt19937& rng, T c_fill_nan) {
  operands<T> o;
  const std::size_t a_rows = p.ta ? p.k : p.m, a_cols = p.ta ? p.m : p.k;
  const std::size_t b_rows = p.tb ? p.n : p.k, b_cols = p.tb ? p.k : p.n;
  o.lda = a_cols + p.pad;
  o.ldb = b_cols + p.pad;
  o.ldc = p.n + p.pad;
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  // +1 so empty matrices still have a valid data pointer.
  o.a.resize(a_rows * o.lda + 1);
  o.b.resize(b_rows * o.ldb + 1);
  o.c.resize(p.m * o.ldc + 1);
  for (auto& x : o.a) x = static_cast<T>(dist(rng));
  for (auto& x : o.b) x = static_cast<T>(dist(rng));
  for (auto& x : o.c) x = c_fill_nan != c_fill_nan ? c_fill_nan : static_cast<T>(dist(rng));
  return o;
}

// Naive reference in double. Also returns, per element, the magnitude sum that bounds the
// rounding error of any summation order.
template <class T>
void reference(const problem& p, double alpha, const operands<T>& o, double beta,
               std::vector<double>& out, std::vector<double>& mag) {
  out.assign(p.m * p.n, 0.0);
  mag.assign(p.m * p.n, 0.0);
  for (std::size_t i = 0; i < p.m; ++i)
    for (std::size_t j = 0; j < p.n; ++j) {
      double s = 0, sm = 0;
      for (std::size_t q = 0; q < p.k; ++q) {
        const double av = p.ta ? o.a[q * o.lda + i] : o.a[i * o.lda + q];
        const double bv = p.tb ? o.b[j * o.ldb + q] : o.b[q * o.ldb + j];
        s += av * bv;
        sm += std::abs(av * bv);
      }
      const double c0 = beta == 0 ? 0.0 : static_cast<double>(o.c[i * o.ldc + j]);
      out[i * p.n + j] = alpha * s + beta * c0;
      mag[i * p.n + j] = std::abs(alpha) * sm + std::abs(beta * c0);
    }
}

template <class T>
::testing::AssertionResult check_gemm(const problem& p, T alpha, T beta, std::mt19937& rng,
                                      bool nan_c = false) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  operands<T> o = make_operands<T>(p, rng, nan_c ? nan : T(0));
  std::vector<double> ref, mag;
  reference(p, alpha, o, beta, ref, mag);
  const std::vector<T> c_before = o.c;
  cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
               o.c.data(), o.ldc);
  const double eps = std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < p.m; ++i) {
    for (std::size_t j = 0; j < o.ldc; ++j) {
      const T got = o.c[i * o.ldc + j];
      if (j >= p.n) {  // padding columns must be untouched
        const T was = c_before[i * o.ldc + j];
        if (!(got == was || (got != got && was != was)))
          return ::testing::AssertionFailure() << "padding C(" << i << "," << j << ") modified";
        continue;
      }
      const double want = ref[i * p.n + j];
      const double tol = 4 * eps * (static_cast<double>(p.k) + 2) * mag[i * p.n + j] + 1e-30;
      if (!(std::abs(static_cast<double>(got) - want) <= tol))
        return ::testing::AssertionFailure()
               << "C(" << i << "," << j << ") = " << got << ", want " << want << " (tol " << tol
               << ") for m=" << p.m << " n=" << p.n << " k=" << p.k << " ta=" << p.ta
               << " tb=" << p.tb << " pad=" << p.pad << " alpha=" << alpha << " beta=" << beta;
    }
  }
  return ::testing::AssertionSuccess();
}

const std::vector<std::size_t> kSmallDims = {0, 1, 2, 3, 7, 17, 33};
const std::vector<std::size_t> kLargeDims = {64, 65, 127, 129, 255, 300};

template <class T>
class GemmTyped : public ::testing::Test {};
using GemmTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GemmTyped, GemmTypes);

TYPED_TEST(GemmTyped, AllSmallShapesAllTransposes) {
  using T = TypeParam;
  std::mt19937 rng(42);
  for (int t = 0; t < 4; ++t)
    for (std::size_t m : kSmallDims)
      for (std::size_t n : kSmallDims)
        for (std::size_t k : kSmallDims)
          ASSERT_TRUE(check_gemm<T>({(t & 1) != 0, (t & 2) != 0, m, n, k}, T(1), T(0), rng));
}

TYPED_TEST(GemmTyped, LargeShapesAllTransposes) {
  using T = TypeParam;
  std::mt19937 rng(7);
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    for (std::size_t d : kLargeDims) ASSERT_TRUE(check_gemm<T>({ta, tb, d, d, d}, T(1), T(0), rng));
    // Mixed and skinny shapes, odd edges against every block size.
    const std::vector<std::array<std::size_t, 3>> mixed = {
        {300, 65, 129}, {65, 300, 255}, {129, 127, 1}, {1, 300, 300}, {300, 1, 300},
        {300, 300, 1},  {7, 255, 300},  {255, 7, 33},  {17, 129, 65}, {33, 17, 769}};
    for (const auto& s : mixed)
      ASSERT_TRUE(check_gemm<T>({ta, tb, s[0], s[1], s[2]}, T(1), T(0), rng));
  }
}

TYPED_TEST(GemmTyped, KLargerThanOneCacheBlock) {
  using T = TypeParam;
  std::mt19937 rng(3);
  // k spans several KC blocks: later blocks must accumulate, not apply beta again.
  ASSERT_TRUE(check_gemm<T>({false, false, 40, 50, 1000}, T(1), T(0.5), rng));
  ASSERT_TRUE(check_gemm<T>({true, true, 40, 50, 1000}, T(-1), T(0), rng, true));
}

TYPED_TEST(GemmTyped, LargerThanOneMcNcBlock) {
  using T = TypeParam;
  std::mt19937 rng(4);
  // m and n past the MC / NC blocks (1024 / 768 for float), with odd remainders.
  ASSERT_TRUE(check_gemm<T>({false, false, 1100, 37, 20}, T(1), T(0), rng));
  ASSERT_TRUE(check_gemm<T>({false, true, 37, 1700, 20}, T(1), T(1), rng));
  ASSERT_TRUE(check_gemm<T>({true, false, 1031, 803, 9}, T(1), T(0), rng));
}

TYPED_TEST(GemmTyped, NeuralNetworkShapes) {
  using T = TypeParam;
  std::mt19937 rng(5);
  // Dense forward / backward-input / backward-weights and a conv im2col product.
  ASSERT_TRUE(check_gemm<T>({false, false, 32, 10, 5408}, T(1), T(0), rng));
  ASSERT_TRUE(check_gemm<T>({false, true, 32, 5408, 10}, T(1), T(0), rng));
  ASSERT_TRUE(check_gemm<T>({true, false, 5408, 10, 32}, T(1), T(1), rng));
  ASSERT_TRUE(check_gemm<T>({false, false, 676, 32, 9}, T(1), T(0), rng));
}

TYPED_TEST(GemmTyped, SmallOutputLongK) {
  using T = TypeParam;
  std::mt19937 rng(31);
  // Tiny C with long k (the dot-product path): k tails that are not a multiple of the
  // vector width, several k slices, every transpose and beta case.
  const std::vector<std::array<std::size_t, 3>> shapes = {
      {1, 1, 1024}, {3, 5, 1031}, {17, 9, 2501}, {32, 10, 5408}, {4, 256, 4099}, {9, 1, 20000}};
  for (int t = 0; t < 4; ++t)
    for (const auto& sh : shapes) {
      const problem p{(t & 1) != 0, (t & 2) != 0, sh[0], sh[1], sh[2]};
      ASSERT_TRUE(check_gemm<T>(p, T(1), T(0), rng, true));
      ASSERT_TRUE(check_gemm<T>(p, T(-2), T(0.5), rng));
    }
}

TYPED_TEST(GemmTyped, AlphaBetaCases) {
  using T = TypeParam;
  std::mt19937 rng(11);
  const std::vector<std::pair<T, T>> cases = {{T(1), T(0)},       {T(2.5), T(0)}, {T(1), T(1)},
                                              {T(-0.5), T(0.75)}, {T(0), T(2)},   {T(0), T(0)},
                                              {T(3), T(-1)}};
  for (int t = 0; t < 4; ++t)
    for (const auto& [alpha, beta] : cases)
      for (std::size_t d : {1, 5, 33, 130})
        ASSERT_TRUE(check_gemm<T>({(t & 1) != 0, (t & 2) != 0, d, d + 3, d + 1}, alpha, beta, rng));
}

TYPED_TEST(GemmTyped, BetaZeroIgnoresNanInC) {
  using T = TypeParam;
  std::mt19937 rng(13);
  for (int t = 0; t < 4; ++t)
    for (std::size_t d : {1, 3, 17, 64, 129, 300}) {
      ASSERT_TRUE(check_gemm<T>({(t & 1) != 0, (t & 2) != 0, d, d, d}, T(1), T(0), rng, true));
      ASSERT_TRUE(check_gemm<T>({(t & 1) != 0, (t & 2) != 0, d, d, d}, T(2), T(0), rng, true));
    }
  // k == 0 and alpha == 0 with beta == 0 must write zeros, not NaN * 0.
  ASSERT_TRUE(check_gemm<T>({false, false, 9, 11, 0}, T(1), T(0), rng, true));
  ASSERT_TRUE(check_gemm<T>({false, false, 9, 11, 5}, T(0), T(0), rng, true));
}

TYPED_TEST(GemmTyped, PaddedLeadingDimensions) {
  using T = TypeParam;
  std::mt19937 rng(17);
  for (int t = 0; t < 4; ++t)
    for (std::size_t d : {1, 7, 33, 65, 200})
      ASSERT_TRUE(
          check_gemm<T>({(t & 1) != 0, (t & 2) != 0, d, d + 1, d + 2, 5}, T(1.5), T(0.5), rng));
}

TYPED_TEST(GemmTyped, ResultIndependentOfThreadCount) {
  using T = TypeParam;
  thread_count_guard guard;
  std::mt19937 rng(19);
  const problem p{false, false, 301, 287, 400};
  operands<T> o = make_operands<T>(p, rng, T(0));
  std::vector<std::vector<T>> results;
  for (std::size_t threads : {1, 2, 3, 4}) {
    cpu::set_num_threads(threads);
    std::vector<T> c = o.c;
    cpu::gemm<T>(false, false, p.m, p.n, p.k, T(1), o.a.data(), o.lda, o.b.data(), o.ldb, T(0),
                 c.data(), o.ldc);
    results.push_back(std::move(c));
  }
  // The k blocking does not depend on the thread count, so every element is summed in the
  // same order: results are bitwise identical.
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[0], results[i]) << i;
}

TYPED_TEST(GemmTyped, BatchedWithSharedOperands) {
  using T = TypeParam;
  std::mt19937 rng(23);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (const auto& [m, n, k, batch] : std::vector<std::array<std::size_t, 4>>{
           {5, 7, 3, 9}, {33, 17, 20, 40}, {130, 120, 110, 3}}) {
    for (int shared = 0; shared < 3; ++shared) {  // 0: none, 1: A shared, 2: B shared
      for (int t = 0; t < 4; ++t) {
        const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
        const std::size_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
        const std::size_t sa = shared == 1 ? 0 : m * k + 3, sb = shared == 2 ? 0 : k * n + 1,
                          sc = m * n + 2;
        std::vector<T> a(sa * batch + m * k), b(sb * batch + k * n), c(sc * batch);
        for (auto& x : a) x = static_cast<T>(dist(rng));
        for (auto& x : b) x = static_cast<T>(dist(rng));
        for (auto& x : c) x = std::numeric_limits<T>::quiet_NaN();
        cpu::gemm_batched<T>(batch, ta, tb, m, n, k, T(1), a.data(), lda, sa, b.data(), ldb, sb,
                             T(0), c.data(), ldc, sc);
        for (std::size_t q = 0; q < batch; ++q) {
          std::vector<T> want(m * n, T(0));
          cpu::gemm<T>(ta, tb, m, n, k, T(1), a.data() + q * sa, lda, b.data() + q * sb, ldb, T(0),
                       want.data(), ldc);
          for (std::size_t i = 0; i < m * n; ++i)
            ASSERT_EQ(c[q * sc + i], want[i]) << "batch " << q << " element " << i;
          // Gaps between the C matrices are untouched.
          ASSERT_TRUE(std::isnan(c[q * sc + m * n]));
        }
      }
    }
  }
}

TYPED_TEST(GemmTyped, BatchedSharedOutputAccumulates) {
  using T = TypeParam;
  // stride_c == 0: the products are applied to the same C in order (beta = 1 sums them).
  const std::size_t m = 3, n = 4, k = 2, batch = 5;
  std::vector<T> a(m * k * batch), b(k * n), c(m * n, T(1));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = T(static_cast<double>(i % 7));
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = T(static_cast<double>(i % 5) - 2);
  cpu::gemm_batched<T>(batch, false, false, m, n, k, T(1), a.data(), k, m * k, b.data(), n, 0, T(1),
                       c.data(), n, 0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double want = 1;
      for (std::size_t q = 0; q < batch; ++q)
        for (std::size_t p = 0; p < k; ++p)
          want += static_cast<double>(a[q * m * k + i * k + p]) * static_cast<double>(b[p * n + j]);
      EXPECT_EQ(static_cast<double>(c[i * n + j]), want);
    }
}

// ---- epilogue: C = act(alpha op(A) op(B) + beta C + bias) ---------------------------------

double act_ref(locus::gemm_activation act, double x) {
  switch (act) {
    case locus::gemm_activation::relu:
      return x > 0 ? x : 0;
    case locus::gemm_activation::sigmoid:
      return 1 / (1 + std::exp(-x));
    case locus::gemm_activation::tanh:
      return std::tanh(x);
    case locus::gemm_activation::linear:
      break;
  }
  return x;
}

const locus::gemm_activation kActs[] = {
    locus::gemm_activation::linear, locus::gemm_activation::relu, locus::gemm_activation::sigmoid,
    locus::gemm_activation::tanh};

// One product with an epilogue, checked two ways: against the float64 reference with a
// rounding bound (every activation), and, for linear and relu, bitwise against the same
// product without epilogue followed by the unfused float computation relu(z + b), which
// is what a layer computed before the epilogue existed.
template <class T>
::testing::AssertionResult check_epilogue(const problem& p, T alpha, T beta,
                                          locus::gemm_activation act, bool with_bias,
                                          std::mt19937& rng, bool nan_c = false) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  operands<T> o = make_operands<T>(p, rng, nan_c ? nan : T(0));
  std::vector<T> bias(p.n + 1);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (auto& x : bias) x = static_cast<T>(dist(rng));
  std::vector<double> ref, mag;
  reference(p, alpha, o, beta, ref, mag);
  const std::vector<T> c_before = o.c;
  const cpu::gemm_epilogue<T> ep{with_bias ? bias.data() : nullptr, act};
  cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
               o.c.data(), o.ldc, ep);
  std::vector<T> plain = c_before;
  cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
               plain.data(), o.ldc);
  const double eps = std::numeric_limits<T>::epsilon();
  auto where = [&](std::size_t i, std::size_t j) {
    return ::testing::AssertionFailure()
           << "C(" << i << "," << j << ") for m=" << p.m << " n=" << p.n << " k=" << p.k
           << " ta=" << p.ta << " tb=" << p.tb << " pad=" << p.pad << " alpha=" << alpha
           << " beta=" << beta << " act=" << static_cast<int>(act) << " bias=" << with_bias;
  };
  for (std::size_t i = 0; i < p.m; ++i) {
    for (std::size_t j = 0; j < o.ldc; ++j) {
      const T got = o.c[i * o.ldc + j];
      if (j >= p.n) {
        const T was = c_before[i * o.ldc + j];
        if (!(got == was || (got != got && was != was))) return where(i, j) << ": padding modified";
        continue;
      }
      const double b = with_bias ? static_cast<double>(bias[j]) : 0.0;
      const double z = ref[i * p.n + j] + b;
      const double want = act_ref(act, z);
      // act is 1-Lipschitz for all four; the function itself adds a few ulps.
      const double tol =
          4 * eps * (static_cast<double>(p.k) + 3) * (mag[i * p.n + j] + std::abs(b)) +
          8 * eps * std::max(1.0, std::abs(want)) + 1e-30;
      if (!(std::abs(static_cast<double>(got) - want) <= tol))
        return where(i, j) << " = " << got << ", want " << want << " (tol " << tol << ")";
      if (act == locus::gemm_activation::linear || act == locus::gemm_activation::relu) {
        T unfused = plain[i * o.ldc + j];
        if (with_bias) unfused = unfused + bias[j];
        if (act == locus::gemm_activation::relu) unfused = unfused > T(0) ? unfused : T(0);
        if (!(got == unfused || (got != got && unfused != unfused)))
          return where(i, j) << " = " << got << ", the unfused computation gives " << unfused;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

TYPED_TEST(GemmTyped, EpilogueEveryPath) {
  using T = TypeParam;
  std::mt19937 rng(101);
  // Full tiles, edge tiles, the transposed problem (skinny n: the bias runs along tile
  // rows), several k blocks (the epilogue goes with the last one only), the dot-product
  // path (tiny C, long k), the k-split path (tiny C, long k, both operands strided) and a
  // product too small for the thread pool.
  const std::vector<std::array<std::size_t, 3>> shapes = {
      {48, 64, 20},  {49, 65, 21},    {7, 3, 5},    {200, 10, 40},  {10, 200, 40},
      {61, 5, 1000}, {32, 10, 5408},  {3, 5, 1031}, {9, 32, 21632}, {13, 40, 9000},
      {1, 1, 1},     {300, 287, 400}, {7, 45, 1000}};
  int variant = 0;
  for (int t = 0; t < 4; ++t)
    for (const auto& sh : shapes)
      for (auto act : kActs) {
        const problem p{(t & 1) != 0, (t & 2) != 0, sh[0], sh[1], sh[2]};
        // Over the activations, every shape meets each of: beta 0 with NaN in C, a general
        // alpha and beta, no bias.
        switch (variant++ % 3) {
          case 0:
            ASSERT_TRUE(check_epilogue<T>(p, T(1), T(0), act, true, rng, true));
            break;
          case 1:
            ASSERT_TRUE(check_epilogue<T>(p, T(-1.5), T(0.5), act, true, rng));
            break;
          default:
            ASSERT_TRUE(check_epilogue<T>(p, T(1), T(0), act, false, rng));
        }
      }
}

TYPED_TEST(GemmTyped, EpiloguePaddedAndDegenerate) {
  using T = TypeParam;
  std::mt19937 rng(103);
  for (auto act : kActs) {
    for (int t = 0; t < 4; ++t)
      for (std::size_t d : {1, 7, 33, 65})
        ASSERT_TRUE(check_epilogue<T>({(t & 1) != 0, (t & 2) != 0, d, d + 1, d + 2, 5}, T(1.5),
                                      T(0.5), act, true, rng));
    // k == 0 and alpha == 0: A and B are not read, C = act(beta C + bias).
    ASSERT_TRUE(check_epilogue<T>({false, false, 9, 11, 0}, T(1), T(0), act, true, rng, true));
    ASSERT_TRUE(check_epilogue<T>({false, false, 9, 11, 0}, T(1), T(2), act, true, rng));
    ASSERT_TRUE(check_epilogue<T>({true, true, 9, 11, 5}, T(0), T(0.5), act, true, rng));
  }
}

TYPED_TEST(GemmTyped, EpilogueIndependentOfThreadCount) {
  using T = TypeParam;
  thread_count_guard guard;
  std::mt19937 rng(107);
  // A blocked product split over threads, a transposed one and a k-split one.
  for (const problem& p :
       {problem{false, false, 301, 287, 400}, problem{false, false, 2000, 10, 200},
        problem{true, false, 9, 32, 21632}}) {
    operands<T> o = make_operands<T>(p, rng, T(0));
    std::vector<T> bias(p.n);
    for (std::size_t j = 0; j < p.n; ++j)
      bias[j] = static_cast<T>(0.01 * static_cast<double>(j) - 0.1);
    std::vector<std::vector<T>> results;
    for (std::size_t threads : {1, 2, 3, 4}) {
      cpu::set_num_threads(threads);
      std::vector<T> c = o.c;
      cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, T(1), o.a.data(), o.lda, o.b.data(), o.ldb, T(0),
                   c.data(), o.ldc, {bias.data(), locus::gemm_activation::tanh});
      results.push_back(std::move(c));
    }
    for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[0], results[i]) << i;
  }
}

TYPED_TEST(GemmTyped, EpilogueBatchedSharesTheBias) {
  using T = TypeParam;
  std::mt19937 rng(109);
  std::uniform_real_distribution<double> dist(-1, 1);
  const std::size_t m = 33, n = 17, k = 20, batch = 40;  // many small products: one per task
  std::vector<T> a(m * k * batch), b(k * n), c(m * n * batch), bias(n);
  for (auto& x : a) x = static_cast<T>(dist(rng));
  for (auto& x : b) x = static_cast<T>(dist(rng));
  for (auto& x : bias) x = static_cast<T>(dist(rng));
  cpu::gemm_batched<T>(batch, false, false, m, n, k, T(1), a.data(), k, m * k, b.data(), n, 0, T(0),
                       c.data(), n, m * n, {bias.data(), locus::gemm_activation::relu});
  for (std::size_t q = 0; q < batch; ++q) {
    std::vector<T> want(m * n);
    cpu::gemm<T>(false, false, m, n, k, T(1), a.data() + q * m * k, k, b.data(), n, T(0),
                 want.data(), n, {bias.data(), locus::gemm_activation::relu});
    for (std::size_t i = 0; i < m * n; ++i) ASSERT_EQ(c[q * m * n + i], want[i]) << "batch " << q;
  }
}

// ---- column sums of op(B) beside the product ------------------------------------------------

template <class T>
::testing::AssertionResult check_colsum(const problem& p, T alpha, T beta, std::mt19937& rng) {
  operands<T> o = make_operands<T>(p, rng, T(0));
  std::vector<double> ref, mag;
  reference(p, alpha, o, beta, ref, mag);
  std::vector<T> sums(p.n + 1, T(-7));
  cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, alpha, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
               o.c.data(), o.ldc, {}, sums.data());
  const double eps = std::numeric_limits<T>::epsilon();
  for (std::size_t j = 0; j < p.n; ++j) {
    double want = 0, sm = 0;
    for (std::size_t q = 0; q < p.k; ++q) {
      const double bv = p.tb ? o.b[j * o.ldb + q] : o.b[q * o.ldb + j];
      want += bv;
      sm += std::abs(bv);
    }
    const double tol = 4 * eps * (static_cast<double>(p.k) + 2) * sm + 1e-30;
    if (!(std::abs(static_cast<double>(sums[j]) - want) <= tol))
      return ::testing::AssertionFailure()
             << "sum " << j << " = " << sums[j] << ", want " << want << " for m=" << p.m
             << " n=" << p.n << " k=" << p.k << " ta=" << p.ta << " tb=" << p.tb;
  }
  if (sums[p.n] != T(-7)) return ::testing::AssertionFailure() << "wrote past the n sums";
  // The product itself is unaffected.
  for (std::size_t i = 0; i < p.m; ++i)
    for (std::size_t j = 0; j < p.n; ++j) {
      const double got = o.c[i * o.ldc + j], want = ref[i * p.n + j];
      const double tol = 4 * eps * (static_cast<double>(p.k) + 2) * mag[i * p.n + j] + 1e-30;
      if (!(std::abs(got - want) <= tol))
        return ::testing::AssertionFailure() << "C(" << i << "," << j << ") wrong";
    }
  return ::testing::AssertionSuccess();
}

TYPED_TEST(GemmTyped, ColumnSumsOfBOnEveryPath) {
  using T = TypeParam;
  std::mt19937 rng(127);
  // The k-split path (sums per slice, through the ones row or, with m a multiple of the
  // micro-panel height, a pass of their own), the dot path, the blocked path with B read in
  // place, the transposed problem, the multi-threaded grid, k == 0 and alpha == 0.
  const std::vector<std::array<std::size_t, 3>> shapes = {
      {9, 32, 21632},  {13, 40, 9000}, {12, 32, 9000}, {32, 10, 5408}, {7, 45, 1000}, {200, 10, 40},
      {300, 287, 400}, {1, 1, 1},      {5, 3, 0},      {0, 6, 50},     {17, 33, 7}};
  for (int t = 0; t < 4; ++t)
    for (const auto& sh : shapes) {
      const problem p{(t & 1) != 0, (t & 2) != 0, sh[0], sh[1], sh[2]};
      ASSERT_TRUE(check_colsum<T>(p, T(1), T(0), rng));
      ASSERT_TRUE(check_colsum<T>(p, T(-2), T(0.5), rng));
    }
  ASSERT_TRUE(check_colsum<T>({false, true, 9, 11, 5}, T(0), T(1), rng));
}

TYPED_TEST(GemmTyped, ColumnSumsIndependentOfThreadCount) {
  using T = TypeParam;
  thread_count_guard guard;
  std::mt19937 rng(131);
  const problem p{true, false, 9, 32, 21632};
  operands<T> o = make_operands<T>(p, rng, T(0));
  std::vector<std::vector<T>> sums;
  for (std::size_t threads : {1, 2, 3, 4}) {
    cpu::set_num_threads(threads);
    std::vector<T> c = o.c, s(p.n);
    cpu::gemm<T>(p.ta, p.tb, p.m, p.n, p.k, T(1), o.a.data(), o.lda, o.b.data(), o.ldb, T(0),
                 c.data(), o.ldc, {}, s.data());
    sums.push_back(std::move(s));
  }
  for (std::size_t i = 1; i < sums.size(); ++i) EXPECT_EQ(sums[0], sums[i]) << i;
}

TYPED_TEST(GemmTyped, ColumnSumsAddUpOverABatch) {
  using T = TypeParam;
  std::mt19937 rng(137);
  std::uniform_real_distribution<double> dist(-1, 1);
  const std::size_t m = 4, n = 6, k = 5, batch = 3;
  std::vector<T> a(m * k * batch), b(k * n * batch), c(m * n * batch), sums(n);
  for (auto& x : a) x = static_cast<T>(dist(rng));
  for (auto& x : b) x = static_cast<T>(dist(rng));
  cpu::gemm_batched<T>(batch, false, false, m, n, k, T(1), a.data(), k, m * k, b.data(), n, k * n,
                       T(0), c.data(), n, m * n, {}, sums.data());
  for (std::size_t j = 0; j < n; ++j) {
    double want = 0;
    for (std::size_t q = 0; q < batch * k; ++q) want += static_cast<double>(b[q * n + j]);
    EXPECT_NEAR(static_cast<double>(sums[j]), want, 1e-5);
  }
}

TEST(GemmInt, EpilogueBiasAndRelu) {
  std::mt19937 rng(113);
  std::uniform_int_distribution<int> dist(-9, 9);
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    const std::size_t m = 13, n = 7, k = 5;
    std::vector<std::int32_t> a(m * k), b(k * n), c(m * n), bias(n);
    for (auto& x : a) x = dist(rng);
    for (auto& x : b) x = dist(rng);
    for (auto& x : bias) x = dist(rng);
    for (auto act : {locus::gemm_activation::linear, locus::gemm_activation::relu}) {
      std::vector<std::int32_t> sums(n);
      cpu::gemm<std::int32_t>(ta, tb, m, n, k, 2, a.data(), ta ? m : k, b.data(), tb ? k : n, 0,
                              c.data(), n, {bias.data(), act}, sums.data());
      for (std::size_t j = 0; j < n; ++j) {
        std::int32_t want = 0;
        for (std::size_t p = 0; p < k; ++p) want += tb ? b[j * k + p] : b[p * n + j];
        ASSERT_EQ(sums[j], want) << j;
      }
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          std::int32_t want = 0;
          for (std::size_t p = 0; p < k; ++p)
            want += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
          want = 2 * want + bias[j];
          if (act == locus::gemm_activation::relu) want = std::max(want, 0);
          ASSERT_EQ(c[i * n + j], want) << i << "," << j;
        }
    }
  }
}

TEST(GemmInt, MatchesReferenceAllTransposes) {
  std::mt19937 rng(29);
  std::uniform_int_distribution<int> dist(-9, 9);
  for (int t = 0; t < 4; ++t) {
    const bool ta = (t & 1) != 0, tb = (t & 2) != 0;
    for (const auto& [m, n, k] : std::vector<std::array<std::size_t, 3>>{
             {0, 3, 3}, {1, 1, 1}, {7, 5, 3}, {17, 33, 9}, {64, 65, 31}}) {
      const std::size_t lda = ta ? m : k, ldb = tb ? k : n;
      std::vector<std::int32_t> a(m * k + 1), b(k * n + 1), c(m * n + 1);
      for (auto& x : a) x = dist(rng);
      for (auto& x : b) x = dist(rng);
      for (auto& x : c) x = dist(rng);
      const std::vector<std::int32_t> c0 = c;
      cpu::gemm<std::int32_t>(ta, tb, m, n, k, 2, a.data(), lda, b.data(), ldb, -3, c.data(), n);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          std::int64_t s = 0;
          for (std::size_t p = 0; p < k; ++p)
            s += std::int64_t{ta ? a[p * lda + i] : a[i * lda + p]} *
                 (tb ? b[j * ldb + p] : b[p * ldb + j]);
          ASSERT_EQ(c[i * n + j], 2 * s - 3 * c0[i * n + j]) << m << "x" << n << "x" << k;
        }
    }
  }
}

// ---- thread pool -------------------------------------------------------------------------

TEST(ThreadPool, NumThreadsDefaultAndOverride) {
  thread_count_guard guard;
  EXPECT_GE(cpu::num_threads(), 1u);
  cpu::set_num_threads(3);
  EXPECT_EQ(cpu::num_threads(), 3u);
  cpu::set_num_threads(0);  // clamped
  EXPECT_EQ(cpu::num_threads(), 1u);
}

TEST(ThreadPool, ChunksCoverRangeExactlyOnce) {
  thread_count_guard guard;
  for (std::size_t threads : {1, 2, 3, 5, 8}) {
    cpu::set_num_threads(threads);
    for (std::size_t n : {1, 2, 3, 10, 100, 1001, 65536}) {
      for (std::size_t grain : {1, 7, 64, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        std::mutex mu;
        std::vector<std::pair<std::size_t, std::size_t>> chunks;
        cpu::parallel_for(n, grain, [&](std::size_t b, std::size_t e) {
          {
            std::lock_guard<std::mutex> lk(mu);
            chunks.emplace_back(b, e);
          }
          for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << i;
        ASSERT_LE(chunks.size(), threads);
        std::sort(chunks.begin(), chunks.end());
        for (std::size_t c = 0; c < chunks.size(); ++c) {
          ASSERT_LT(chunks[c].first, chunks[c].second);  // no empty chunks
          if (chunks.size() > 1) {
            ASSERT_GE(chunks[c].second - chunks[c].first, grain);
          }
        }
        if (n <= grain) {
          ASSERT_EQ(chunks.size(), 1u);
        }
      }
    }
  }
}

TEST(ThreadPool, StaticDeterministicChunks) {
  thread_count_guard guard;
  cpu::set_num_threads(4);
  auto boundaries = [] {
    std::mutex mu;
    std::set<std::pair<std::size_t, std::size_t>> s;
    cpu::parallel_for(1003, 10, [&](std::size_t b, std::size_t e) {
      std::lock_guard<std::mutex> lk(mu);
      s.emplace(b, e);
    });
    return s;
  };
  const auto first = boundaries();
  EXPECT_EQ(first.size(), 4u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(boundaries(), first);
}

TEST(ThreadPool, SmallRangeRunsInlineOnCaller) {
  thread_count_guard guard;
  cpu::set_num_threads(4);
  const auto me = std::this_thread::get_id();
  std::thread::id seen;
  cpu::parallel_for(10, 10, [&](std::size_t b, std::size_t e) {
    seen = std::this_thread::get_id();
    EXPECT_EQ(b, 0u);
    EXPECT_EQ(e, 10u);
  });
  EXPECT_EQ(seen, me);
  std::size_t calls = 0;
  cpu::parallel_for(0, 1, [&](std::size_t, std::size_t) { ++calls; });
  EXPECT_EQ(calls, 0u);
}

TEST(ThreadPool, CallerRunsOneChunkAndWorkersTheRest) {
  thread_count_guard guard;
  cpu::set_num_threads(2);
  const auto me = std::this_thread::get_id();
  std::mutex mu;
  std::vector<std::thread::id> ids;
  cpu::parallel_for(2, 1, [&](std::size_t, std::size_t) {
    std::lock_guard<std::mutex> lk(mu);
    ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_TRUE(ids[0] == me || ids[1] == me);
}

TEST(ThreadPool, ExceptionsPropagateToCaller) {
  thread_count_guard guard;
  for (std::size_t threads : {1, 2, 4}) {
    cpu::set_num_threads(threads);
    // From the last chunk (a worker when threads > 1) and from the caller's chunk.
    EXPECT_THROW(cpu::parallel_for(100, 1,
                                   [](std::size_t, std::size_t e) {
                                     if (e == 100) throw std::runtime_error("last");
                                   }),
                 std::runtime_error);
    EXPECT_THROW(cpu::parallel_for(100, 1,
                                   [](std::size_t b, std::size_t) {
                                     if (b == 0) throw std::invalid_argument("first");
                                   }),
                 std::invalid_argument);
    // Every chunk throws: exactly one exception arrives and the pool stays usable.
    EXPECT_THROW(cpu::parallel_for(100, 1, [](std::size_t, std::size_t) { throw 7; }), int);
    std::atomic<std::size_t> sum{0};
    cpu::parallel_for(100, 1, [&](std::size_t b, std::size_t e) { sum += e - b; });
    EXPECT_EQ(sum.load(), 100u);
  }
}

TEST(ThreadPool, NestedCallsRunInline) {
  thread_count_guard guard;
  cpu::set_num_threads(2);
  std::atomic<std::size_t> total{0};
  cpu::parallel_for(8, 1, [&](std::size_t b, std::size_t e) {
    EXPECT_TRUE(cpu::in_parallel_region());
    for (std::size_t i = b; i < e; ++i) {
      const auto outer = std::this_thread::get_id();
      cpu::parallel_for(1000, 1, [&](std::size_t ib, std::size_t ie) {
        EXPECT_EQ(std::this_thread::get_id(), outer);  // inline: no deadlock, no hand-off
        total += ie - ib;
      });
    }
  });
  EXPECT_EQ(total.load(), 8000u);
  EXPECT_FALSE(cpu::in_parallel_region());
}

TEST(ThreadPool, GemmInsideParallelFor) {
  thread_count_guard guard;
  cpu::set_num_threads(2);
  const std::size_t d = 200;
  std::vector<float> a(d * d, 1.0f), b(d * d, 0.5f);
  std::vector<std::vector<float>> c(4, std::vector<float>(d * d));
  cpu::parallel_for(4, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      cpu::gemm<float>(false, false, d, d, d, 1.0f, a.data(), d, b.data(), d, 0.0f, c[i].data(), d);
  });
  for (const auto& ci : c)
    for (float x : ci) ASSERT_EQ(x, 100.0f);
}

TEST(ThreadPool, ConcurrentCallersFromUserThreads) {
  thread_count_guard guard;
  cpu::set_num_threads(3);
  std::atomic<std::size_t> total{0};
  std::vector<std::thread> users;
  for (int t = 0; t < 4; ++t)
    users.emplace_back([&] {
      for (int r = 0; r < 200; ++r)
        cpu::parallel_for(64, 1, [&](std::size_t b, std::size_t e) { total += e - b; });
    });
  for (auto& u : users) u.join();
  EXPECT_EQ(total.load(), 4u * 200u * 64u);
}

TEST(ThreadPool, ResizeBetweenCalls) {
  thread_count_guard guard;
  for (std::size_t threads : {4, 1, 3, 2, 6, 2}) {
    cpu::set_num_threads(threads);
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::atomic<std::size_t> total{0};
    cpu::parallel_for(600, 1, [&](std::size_t b, std::size_t e) {
      total += e - b;
      std::lock_guard<std::mutex> lk(mu);
      ids.insert(std::this_thread::get_id());
    });
    EXPECT_EQ(total.load(), 600u);
    EXPECT_EQ(ids.size(), threads);
  }
}

TEST(ThreadPool, ManyBackToBackDispatches) {
  thread_count_guard guard;
  cpu::set_num_threads(2);
  std::vector<int> v(4096, 0);
  for (int r = 0; r < 5000; ++r)
    cpu::parallel_for(v.size(), 256, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) ++v[i];
    });
  for (int x : v) ASSERT_EQ(x, 5000);
}

}  // namespace
