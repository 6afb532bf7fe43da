// uniform and normal: determinism per seed, equality across devices, ranges and statistics.
#include <cmath>
#include <cstdint>
#include <set>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class RandomTest : public ::testing::Test {};
TYPED_TEST_SUITE(RandomTest, TestDevices, DeviceNames);

// Number of positions where two tensors hold bitwise-equal values.
template <class T, class DA, class DB>
std::size_t equal_count(const Tensor<T, DA>& a, const Tensor<T, DB>& b) {
  const auto ha = host(a), hb = host(b);
  std::size_t n = 0;
  for (std::size_t i = 0; i < ha.size(); ++i) n += ha.data()[i] == hb.data()[i];
  return n;
}

TYPED_TEST(RandomTest, SameSeedSameValuesDifferentSeedDifferentValues) {
  using Dev = TypeParam;
  using F = Tensor<float, Dev>;
  EXPECT_TRUE(bitwise_equal(F::uniform({1000}, 42), F::uniform({1000}, 42)));
  EXPECT_TRUE(bitwise_equal(F::normal({1000}, 42), F::normal({1000}, 42)));
  EXPECT_TRUE(
      bitwise_equal(Tensor<double, Dev>::normal({99}, 3), Tensor<double, Dev>::normal({99}, 3)));
  EXPECT_LE(equal_count(F::uniform({1000}, 42), F::uniform({1000}, 43)), 2u);
  EXPECT_LE(equal_count(F::normal({1000}, 42), F::normal({1000}, 43)), 2u);
  // Seeds that differ only in their upper 32 bits are different streams too.
  EXPECT_LE(equal_count(F::uniform({1000}, 1), F::uniform({1000}, 1 + (1ull << 32))), 2u);
  // Elements differ from each other within one tensor.
  const auto h = host(F::uniform({1000}, 5));
  EXPECT_GE(std::set<float>(h.begin(), h.end()).size(), 990u);
}

TYPED_TEST(RandomTest, ElementDependsOnlyOnSeedAndIndex) {
  using Dev = TypeParam;
  using F = Tensor<float, Dev>;
  const auto long_ = host(F::uniform({1000}, 7));
  const auto short_ = host(F::uniform({10}, 7));
  const auto shaped = host(F::uniform({10, 100}, 7));
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(short_(i), long_(i)) << i;
  EXPECT_TRUE(bitwise_equal(shaped.reshape({1000}), long_));
  // The documented counter-based formula.
  for (std::size_t i : {0u, 1u, 2u, 500u, 999u}) {
    EXPECT_EQ(long_(i), detail::philox_uniform<float>(i, 7, 0.f, 1.f)) << i;
  }
}

TEST(Philox, KnownAnswer) {
  // Random123's known-answer vector for Philox-4x32-10 with a zero counter and key.
  const auto r = detail::philox4x32_10(0, 0);
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TYPED_TEST(RandomTest, SameValuesOnEveryDevice) {
  using Dev = TypeParam;
  using Oth = OtherDev<Dev>;
  // Uniform: bit for bit, in the default and in a custom range, float, double and int32.
  EXPECT_TRUE(bitwise_equal(Tensor<float, Dev>::uniform({4099}, 11),
                            Tensor<float, Oth>::uniform({4099}, 11)));
  EXPECT_TRUE(bitwise_equal(Tensor<float, Dev>::uniform({4099}, 12, -3.f, 7.5f),
                            Tensor<float, Oth>::uniform({4099}, 12, -3.f, 7.5f)));
  EXPECT_TRUE(bitwise_equal(Tensor<double, Dev>::uniform({1001}, 13, -2.0, 2.0),
                            Tensor<double, Oth>::uniform({1001}, 13, -2.0, 2.0)));
  EXPECT_TRUE(bitwise_equal(Tensor<std::int32_t, Dev>::uniform({1001}, 14, -5, 17),
                            Tensor<std::int32_t, Oth>::uniform({1001}, 14, -5, 17)));
  // Normal: within 1e-5 (transcendental functions may differ in the last bits).
  EXPECT_TRUE(same_values(Tensor<float, Dev>::normal({4099}, 15),
                          Tensor<float, Oth>::normal({4099}, 15), 1e-5, 1e-5));
  EXPECT_TRUE(same_values(Tensor<float, Dev>::normal({999}, 16, 3.f, 0.5f),
                          Tensor<float, Oth>::normal({999}, 16, 3.f, 0.5f), 1e-5, 1e-5));
  EXPECT_TRUE(same_values(Tensor<double, Dev>::normal({999}, 17),
                          Tensor<double, Oth>::normal({999}, 17), 1e-12, 1e-12));
}

template <class T, class Dev>
std::pair<double, double> mean_std(const Tensor<T, Dev>& x) {
  const Ref r = ref(x);
  const double m = xt::mean(r)();
  const double v = xt::mean(xt::square(r - m))();
  return {m, std::sqrt(v)};
}

TYPED_TEST(RandomTest, UniformRangeAndStatistics) {
  using Dev = TypeParam;
  constexpr std::size_t n = 100000;
  const Ref u = ref(Tensor<float, Dev>::uniform({n}, 21));
  EXPECT_GE(xt::amin(u)(), 0.0);
  EXPECT_LT(xt::amax(u)(), 1.0);
  // Standard error of the mean is 0.29 / sqrt(1e5) = 0.0009: these bounds are ~5 sigma.
  const auto [m, s] = mean_std(Tensor<float, Dev>::uniform({n}, 21));
  EXPECT_NEAR(m, 0.5, 0.005);
  EXPECT_NEAR(s, std::sqrt(1.0 / 12.0), 0.005);
  // Each tenth of [0, 1) holds about a tenth of the samples.
  for (int b = 0; b < 10; ++b) {
    const double frac = xt::mean(xt::cast<double>(u >= b / 10.0 && u < (b + 1) / 10.0))();
    EXPECT_NEAR(frac, 0.1, 0.005) << "bin " << b;
  }
  const auto [m2, s2] = mean_std(Tensor<float, Dev>::uniform({n}, 22, -3.f, 5.f));
  EXPECT_NEAR(m2, 1.0, 0.04);
  EXPECT_NEAR(s2, 8.0 / std::sqrt(12.0), 0.04);
  const Ref w = ref(Tensor<double, Dev>::uniform({n}, 23, -3.0, 5.0));
  EXPECT_GE(xt::amin(w)(), -3.0);
  EXPECT_LT(xt::amax(w)(), 5.0);
  // int32: every value of [lo, hi) occurs, nothing outside it.
  const Ref iv = ref(Tensor<std::int32_t, Dev>::uniform({n}, 24, -5, 5));
  EXPECT_EQ(xt::amin(iv)(), -5.0);
  EXPECT_EQ(xt::amax(iv)(), 4.0);
  for (int v = -5; v < 5; ++v) {
    EXPECT_NEAR(xt::mean(xt::cast<double>(xt::equal(iv, static_cast<double>(v))))(), 0.1, 0.005)
        << v;
  }
}

TYPED_TEST(RandomTest, NormalStatistics) {
  using Dev = TypeParam;
  constexpr std::size_t n = 100000;
  const auto [m, s] = mean_std(Tensor<float, Dev>::normal({n}, 31));
  EXPECT_NEAR(m, 0.0, 0.016);  // 5 standard errors
  EXPECT_NEAR(s, 1.0, 0.015);
  const auto [m2, s2] = mean_std(Tensor<float, Dev>::normal({n}, 32, 2.f, 3.f));
  EXPECT_NEAR(m2, 2.0, 0.05);
  EXPECT_NEAR(s2, 3.0, 0.05);
  const auto [m3, s3] = mean_std(Tensor<double, Dev>::normal({n}, 33, -1.0, 0.5));
  EXPECT_NEAR(m3, -1.0, 0.008);
  EXPECT_NEAR(s3, 0.5, 0.008);
  // About 68.3% within one standard deviation, 95.4% within two; all finite.
  const Ref z = ref(Tensor<float, Dev>::normal({n}, 34));
  EXPECT_TRUE(xt::all(xt::isfinite(z)));
  EXPECT_NEAR(xt::mean(xt::cast<double>(xt::abs(z) < 1.0))(), 0.6827, 0.01);
  EXPECT_NEAR(xt::mean(xt::cast<double>(xt::abs(z) < 2.0))(), 0.9545, 0.005);
}

}  // namespace
