// sum, mean, max, min and argmax over each axis (negative axes, keepdims) and over
// everything, on every device, against a float64 reference and against the other device.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xreducer.hpp>
#include <xtensor/xstrided_view.hpp>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class ReduceTest : public ::testing::Test {};
TYPED_TEST_SUITE(ReduceTest, TestDevices, DeviceNames);

enum class R { sum, mean, max, min };
const char* name_of(R r) {
  switch (r) {
    case R::sum:
      return "sum";
    case R::mean:
      return "mean";
    case R::max:
      return "max";
    default:
      return "min";
  }
}

template <class X>
auto run(R r, const X& x, std::ptrdiff_t axis, bool keepdims) {
  switch (r) {
    case R::sum:
      return locus::sum(x, axis, keepdims);
    case R::mean:
      return locus::mean(x, axis, keepdims);
    case R::max:
      return locus::max(x, axis, keepdims);
    default:
      return locus::min(x, axis, keepdims);
  }
}
template <class X>
auto run_all(R r, const X& x) {
  switch (r) {
    case R::sum:
      return locus::sum(x);
    case R::mean:
      return locus::mean(x);
    case R::max:
      return locus::max(x);
    default:
      return locus::min(x);
  }
}

// float64 reference of a reduction over one axis of `x`.
Ref ref_reduce(R r, const Ref& x, std::size_t axis, bool keepdims) {
  Ref out;
  switch (r) {
    case R::sum:
      out = xt::sum(x, {axis});
      break;
    case R::mean:
      out = xt::mean(x, {axis});
      break;
    case R::max:
      out = xt::amax(x, {axis});
      break;
    default:
      out = xt::amin(x, {axis});
  }
  if (keepdims) {
    auto s = std::vector<std::size_t>(x.shape().begin(), x.shape().end());
    s[axis] = 1;
    out.reshape(s);
  }
  return out;
}
Ref ref_reduce_all(R r, const Ref& x) {
  switch (r) {
    case R::sum:
      return xt::sum(x)();
    case R::mean:
      return xt::mean(x)();
    case R::max:
      return xt::amax(x)();
    default:
      return xt::amin(x)();
  }
}

// Every reduction over every axis (both spellings) of a tensor of shape s, with and without
// keepdims: against the reference, and Dev against the other device.
template <class Dev, class T>
void check_all_axes(const Shape& s, std::uint64_t seed, T lo, T hi, double rtol, double atol) {
  using Oth = OtherDev<Dev>;
  const auto h = random_host<T>(s, seed, lo, hi);
  const auto x = on<Dev>(h);
  const auto ox = on<Oth>(h);
  const Ref rx = ref(h);
  const auto rank = static_cast<std::ptrdiff_t>(s.rank());
  for (R r : {R::sum, R::mean, R::max, R::min}) {
    for (std::ptrdiff_t axis = -rank; axis < rank; ++axis) {
      for (bool keep : {false, true}) {
        const auto a = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
        const auto got = run(r, x, axis, keep);
        static_assert(std::is_same_v<std::remove_cvref_t<decltype(got)>, Tensor<T, Dev>>);
        EXPECT_TRUE(near_ref(got, ref_reduce(r, rx, a, keep), rtol, atol))
            << name_of(r) << " axis " << axis << (keep ? " keepdims" : "") << " of "
            << to_string(s);
        EXPECT_TRUE(same_values(got, run(r, ox, axis, keep), rtol, atol))
            << name_of(r) << " axis " << axis << " across devices";
      }
    }
    const auto all = run_all(r, x);
    EXPECT_EQ(all.rank(), 0u);
    EXPECT_TRUE(near_ref(all, ref_reduce_all(r, rx), rtol, atol * static_cast<double>(s.size())))
        << name_of(r) << " of everything, " << to_string(s);
    EXPECT_TRUE(same_values(all, run_all(r, ox), rtol, atol * static_cast<double>(s.size())));
  }
}

TYPED_TEST(ReduceTest, EveryAxisFloat) {
  using Dev = TypeParam;
  check_all_axes<Dev, float>({3, 4, 5}, 1, -1.f, 1.f, 1e-5, 1e-6);
  check_all_axes<Dev, float>({7}, 2, -1.f, 1.f, 1e-5, 1e-6);
  check_all_axes<Dev, float>({1, 1}, 3, -1.f, 1.f, 1e-5, 1e-6);
  check_all_axes<Dev, float>({2, 1, 3, 1}, 4, -1.f, 1.f, 1e-5, 1e-6);
  // Rows long enough for SIMD accumulators and multi-group GPU reductions; strided inner
  // extents that are not multiples of any vector width.
  check_all_axes<Dev, float>({5, 1031}, 5, -1.f, 1.f, 1e-5, 1e-5);
  check_all_axes<Dev, float>({300, 257}, 6, -1.f, 1.f, 1e-5, 1e-5);
  check_all_axes<Dev, float>({2, 3000, 3}, 7, -1.f, 1.f, 1e-5, 2e-5);
}

TYPED_TEST(ReduceTest, EveryAxisDoubleAndInt32) {
  using Dev = TypeParam;
  check_all_axes<Dev, double>({3, 4, 5}, 11, -1.0, 1.0, 1e-12, 1e-13);
  check_all_axes<Dev, double>({17, 129}, 12, -1.0, 1.0, 1e-12, 1e-13);
  // int32: sums exact; the mean of integers truncates toward zero (C division).
  using Oth = OtherDev<Dev>;
  const auto h = random_host<std::int32_t>({6, 7, 8}, 13, -1000, 1000);
  const auto x = on<Dev>(h);
  const Ref rx = ref(h);
  for (std::size_t a = 0; a < 3; ++a) {
    const auto ax = static_cast<std::ptrdiff_t>(a);
    EXPECT_TRUE(near_ref(sum(x, ax), ref_reduce(R::sum, rx, a, false))) << a;
    EXPECT_TRUE(near_ref(max(x, ax, true), ref_reduce(R::max, rx, a, true))) << a;
    EXPECT_TRUE(near_ref(min(x, ax - 3), ref_reduce(R::min, rx, a, false))) << a;
    const Ref want_mean =
        xt::trunc(ref_reduce(R::sum, rx, a, false) / static_cast<double>(rx.shape()[a]));
    EXPECT_TRUE(near_ref(mean(x, ax), want_mean)) << "int32 mean over axis " << a;
    EXPECT_TRUE(same_values(mean(x, ax), mean(on<Oth>(h), ax)));
  }
  EXPECT_TRUE(near_ref(sum(x), Ref(xt::sum(rx)())));
  EXPECT_TRUE(near_ref(mean(x), Ref(std::trunc(xt::sum(rx)() / 336.0))));
  const auto small = on<Dev>(Tensor<std::int32_t, CPUDev>{{1, 2, 4}, {-1, -2, -4}});
  EXPECT_TRUE(near_ref(mean(small, 1), Ref{2, -2}));
  EXPECT_TRUE(near_ref(mean(small, 0), Ref{0, 0, 0}));
}

TYPED_TEST(ReduceTest, LargeSumsAndMeans) {
  using Dev = TypeParam;
  using Oth = OtherDev<Dev>;
  // 2^20 positive values: a naive running float sum drifts far beyond these tolerances.
  const auto h = random_host<float>({1 << 20}, 21, 0.f, 1.f);
  const auto x = on<Dev>(h);
  const Ref rx = ref(h);
  EXPECT_TRUE(near_ref(sum(x), Ref(xt::sum(rx)()), 1e-5, 0));
  EXPECT_TRUE(near_ref(mean(x), Ref(xt::mean(rx)()), 1e-5, 0));
  EXPECT_TRUE(same_values(sum(x), sum(on<Oth>(h)), 1e-5, 0));
  const auto m = x.reshape({1024, 1024});
  EXPECT_TRUE(near_ref(sum(m, 0), Ref(xt::sum(xt::reshape_view(rx, {1024, 1024}), {0})), 1e-5, 0));
  EXPECT_TRUE(
      near_ref(mean(m, 1), Ref(xt::mean(xt::reshape_view(rx, {1024, 1024}), {1})), 1e-5, 0));
  EXPECT_TRUE(near_ref(max(x), Ref(xt::amax(rx)()), 0, 0));
  EXPECT_TRUE(near_ref(min(x), Ref(xt::amin(rx)()), 0, 0));
}

TYPED_TEST(ReduceTest, ExtremesAndSigns) {
  using Dev = TypeParam;
  // Max of all-negative values and min of all-positive values (the identity must not leak).
  const auto neg = on<Dev>(Tensor<float, CPUDev>{{-5.f, -3.f, -4.f}, {-9.f, -8.f, -7.f}});
  EXPECT_TRUE(near_ref(max(neg, 1), Ref{-3, -7}, 0, 0));
  EXPECT_TRUE(near_ref(max(neg, 0), Ref{-5, -3, -4}, 0, 0));
  EXPECT_TRUE(near_ref(max(neg), Ref(-3.0), 0, 0));
  const auto pos = on<Dev>(Tensor<double, CPUDev>{{5, 3, 4}, {9, 8, 7}});
  EXPECT_TRUE(near_ref(min(pos, -1), Ref{3, 7}, 0, 0));
  EXPECT_TRUE(near_ref(min(pos, -2, true), Ref{{5, 3, 4}}, 0, 0));
  EXPECT_TRUE(near_ref(min(pos), Ref(3.0), 0, 0));
  const auto big = on<Dev>(Tensor<std::int32_t, CPUDev>{-2147483647, 2147483647, 0});
  EXPECT_TRUE(near_ref(max(big, 0), Ref(2147483647.0)));
  EXPECT_TRUE(near_ref(min(big, 0), Ref(-2147483647.0)));
  // A rank-0 tensor reduces to itself; a reduction of an expression evaluates it first.
  const auto s = on<Dev>(Tensor<float, CPUDev>{2.5f}).reshape(Shape{});
  EXPECT_TRUE(near_ref(sum(s), Ref(2.5), 0, 0));
  const auto ha = random_host<float>({4, 6}, 31), hb = random_host<float>({6}, 32);
  EXPECT_TRUE(near_ref(sum(on<Dev>(ha) * on<Dev>(hb), 1), Ref(xt::sum(ref(ha) * ref(hb), {1}))));
  EXPECT_TRUE(near_ref(max(square(on<Dev>(ha))), Ref(xt::amax(ref(ha) * ref(ha))())));
  // Sum and mean over an empty axis give 0 (sum) and a shape without that axis.
  const auto e = Tensor<float, Dev>::zeros({3, 0});
  EXPECT_TRUE(near_ref(sum(e, 1), xt::zeros<double>({3}), 0, 0));
  EXPECT_EQ(sum(e, 0).shape(), Shape{0});
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)max(e, 1); }, "max", "[3, 0]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)min(e); }, "min", "[3, 0]"));
}

// Reference argmax/argmin (first extremum) along one axis of a float64 array. Written out
// rather than taken from xtensor/xsort.hpp, whose svector code trips a GCC 12
// -Warray-bounds false positive under -Werror.
Ref ref_arg_extreme(const Ref& r, std::size_t axis, bool want_max) {
  std::vector<std::size_t> out_shape;
  std::size_t outer = 1, len = r.shape()[axis], inner = 1;
  for (std::size_t d = 0; d < r.dimension(); ++d) {
    if (d < axis) outer *= r.shape()[d];
    if (d > axis) inner *= r.shape()[d];
    if (d != axis) out_shape.push_back(r.shape()[d]);
  }
  Ref out = xt::zeros<double>(out_shape);
  const double* p = r.data();
  for (std::size_t o = 0; o < outer; ++o) {
    for (std::size_t i = 0; i < inner; ++i) {
      std::size_t best = 0;
      for (std::size_t l = 1; l < len; ++l) {
        const double v = p[(o * len + l) * inner + i], b = p[(o * len + best) * inner + i];
        if (want_max ? v > b : v < b) best = l;
      }
      out.data()[o * inner + i] = static_cast<double>(best);
    }
  }
  return out;
}

TYPED_TEST(ReduceTest, Argmax) {
  using Dev = TypeParam;
  using Oth = OtherDev<Dev>;
  for (const Shape& s : {Shape{3, 4, 5}, Shape{8, 1031}, Shape{3, 700, 9}}) {
    const auto h = random_host<float>(s, 41);
    const auto x = on<Dev>(h);
    const Ref rx = ref(h);
    for (std::ptrdiff_t axis = -3; axis < 3; ++axis) {
      if (axis < -static_cast<std::ptrdiff_t>(s.rank()) ||
          axis >= static_cast<std::ptrdiff_t>(s.rank()))
        continue;
      const auto a =
          static_cast<std::size_t>(axis < 0 ? axis + static_cast<std::ptrdiff_t>(s.rank()) : axis);
      const auto got = argmax(x, axis);
      static_assert(std::is_same_v<std::remove_cvref_t<decltype(got)>, Tensor<std::int32_t, Dev>>);
      const Ref want = ref_arg_extreme(rx, a, true);
      EXPECT_TRUE(near_ref(got, want)) << "axis " << axis << " of " << to_string(s);
      auto keep = std::vector<std::size_t>(s.begin(), s.end());
      keep[a] = 1;
      Ref want_keep = want;
      want_keep.reshape(keep);
      EXPECT_TRUE(near_ref(argmax(x, axis, true), want_keep));
      EXPECT_TRUE(same_values(got, argmax(on<Oth>(h), axis)));
    }
    const auto all = argmax(x);
    EXPECT_EQ(all.rank(), 0u);
    EXPECT_TRUE(near_ref(all, Ref(ref_arg_extreme(Ref(xt::flatten(rx)), 0, true)())));
  }
  // Expressions, double and int32 operands.
  const auto hd = random_host<double>({5, 9}, 42);
  EXPECT_TRUE(near_ref(argmax(-on<Dev>(hd), 1), ref_arg_extreme(ref(hd), 1, false)));
  const auto hi = random_host<std::int32_t>({9, 5}, 43, -1000000, 1000000);
  EXPECT_TRUE(near_ref(argmax(on<Dev>(hi), 0), ref_arg_extreme(ref(hi), 0, true)));
}

TYPED_TEST(ReduceTest, ArgmaxTieGivesTheFirstIndex) {
  using Dev = TypeParam;
  const auto t = on<Dev>(Tensor<float, CPUDev>{{1.f, 3.f, 3.f}, {5.f, 5.f, 0.f}, {2.f, 2.f, 2.f}});
  EXPECT_TRUE(near_ref(argmax(t, 1), Ref{1, 0, 0}));
  EXPECT_TRUE(near_ref(argmax(t, 0), Ref{1, 1, 0}));
  EXPECT_TRUE(near_ref(argmax(t), Ref(3.0)));  // 5 at flat indices 3 and 4
  // Long rows (several work-items per row on the GPU): the maximum occurs at 300 and 700.
  auto h = Tensor<float, CPUDev>::zeros({4, 1000});
  for (std::size_t r = 0; r < 4; ++r) {
    h(r, 300 + r) = 1.f;
    h(r, 700 - r) = 1.f;
  }
  const auto x = on<Dev>(h);
  EXPECT_TRUE(near_ref(argmax(x, 1), Ref{300, 301, 302, 303}));
  // All equal: index 0, along the last axis and along a strided axis.
  const auto same = Tensor<float, Dev>::full({3, 513, 2}, 7.f);
  EXPECT_TRUE(near_ref(argmax(same, 1), xt::zeros<double>({3, 2})));
  EXPECT_TRUE(near_ref(argmax(same, 2), xt::zeros<double>({3, 513})));
  EXPECT_TRUE(near_ref(argmax(same), Ref(0.0)));
  auto hs = Tensor<std::int32_t, CPUDev>::zeros({2, 600, 3});
  hs(0, 599, 1) = 4;
  hs(0, 17, 1) = 4;
  hs(1, 2, 2) = 9;
  hs(1, 1, 2) = 9;
  EXPECT_TRUE(near_ref(argmax(on<Dev>(hs), 1), Ref{{0, 17, 0}, {0, 0, 1}}));
}

TYPED_TEST(ReduceTest, BadAxisNamesOpAndShape) {
  using Dev = TypeParam;
  const auto x = Tensor<float, Dev>::zeros({3, 4, 5});
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)sum(x, 3); }, "sum", "axis 3", "[3, 4, 5]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)mean(x, -4); }, "mean", "axis -4", "[3, 4, 5]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)max(x, 7, true); }, "max", "[3, 4, 5]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)min(x, -5); }, "min", "[3, 4, 5]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)argmax(x, 3); }, "argmax", "[3, 4, 5]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)sum(x * 2.f, 3); }, "sum", "[3, 4, 5]"));
  const auto s = Tensor<float, Dev>::zeros(Shape{});
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)sum(s, 0); }, "sum"));
  // axis_error is a shape_error.
  EXPECT_THROW((void)sum(x, 3), shape_error);
}

// eval() of a tensor lvalue is the tensor itself, not a copy; of an rvalue, the same
// storage moved in; of an expression, a new tensor.
TYPED_TEST(ReduceTest, EvalOfATensorDoesNotCopyIt) {
  using Dev = TypeParam;
  const auto x = Tensor<float, Dev>::uniform({64, 33}, 3);
  const auto& same = eval(x);
  EXPECT_EQ(&same, &x);
  // The identity of a buffer's memory: its host pointer or its OpenCL handle.
  const auto memory_of = [](const auto& t) -> const void* {
    if constexpr (requires { t.storage().handle(); }) {
      return t.storage().handle();
    } else {
      return t.storage().data();
    }
  };
  auto y = Tensor<float, Dev>::uniform({64, 33}, 4);
  const void* memory = memory_of(y);
  const auto moved = eval(std::move(y));
  EXPECT_EQ(memory_of(moved), memory);
  const auto computed = eval(x * 2.f);
  EXPECT_TRUE(allclose(to<CPUDev>(computed), to<CPUDev>(Tensor<float, Dev>(x + x))));
}

}  // namespace

// A reduction of a tensor reads it in place: on a device with memory accounting, reducing
// a tensor of S bytes raises the peak by the size of the result, not by S (before the
// fix, every reduction started with a full device copy of its operand).
TEST(ReduceMemory, ReductionsOfATensorMakeNoDeviceCopy) {
  using G = locus_test::GPUDev;
  using namespace locus;
  const auto before = memory_info<G>();
  // Larger than anything this process has held so far, so the tensor sets a new peak.
  const std::size_t elements =
      (before.peak > before.in_use ? before.peak - before.in_use : 0) / sizeof(float) + (1u << 20);
  const auto x = Tensor<float, G>::uniform({elements / 64, 64}, 5);
  const auto with_x = memory_info<G>();
  ASSERT_GE(with_x.peak, with_x.in_use);
  const std::size_t bytes = x.size() * sizeof(float);
  float acc = 0;
  acc += to<Device<CPU>>(sum(x)).item() + to<Device<CPU>>(mean(x)).item();
  acc += to<Device<CPU>>(max(x)).item() + to<Device<CPU>>(min(x, 0))(0);
  acc += float(to<Device<CPU>>(argmax(x)).item() + to<Device<CPU>>(argmax(x, 1))(0));
  EXPECT_TRUE(std::isfinite(acc));
  EXPECT_LT(memory_info<G>().peak - with_x.peak, bytes / 4)
      << "a reduction of a " << bytes << "-byte tensor raised the device memory peak from "
      << with_x.peak << " to " << memory_info<G>().peak;
}
