// The neural-network kernels of both backends (nn_backend_for<Dev>) against straightforward
// float64 host references: im2col / col2im (and their adjointness), 2-D pooling forward
// and backward (max with the first-maximum tie rule, average with Keras 'same' counting),
// gather_rows and one_hot. The references are written in the scatter form the kernels
// avoid, so an indexing mistake in the gather form cannot be mirrored by the reference.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <locus/backend/cpu/nn.hpp>
#include <locus/backend/opencl/nn.hpp>
#include <locus/locus.hpp>

#include "test_devices.hpp"

namespace {

using namespace locus_test;
using locus::conv_geometry;
using locus::pool_geometry;
using locus::pool_kind;
using locus::Tensor;

template <class Dev>
using NB = locus::nn_backend_for<Dev>;

template <class Dev>
class NNKernels : public ::testing::Test {};
TYPED_TEST_SUITE(NNKernels, TestDevices, DeviceNames);

template <class Dev>
bool has_fp64() {
  if constexpr (locus::HostDevice<Dev>) {
    return true;
  } else {
    return locus::backend_for<Dev>::ctx().info.fp64;
  }
}

// Runs f.template operator()<T>() for float and, where the device supports it, double.
template <class Dev, class F>
void for_float_types(F&& f) {
  {
    SCOPED_TRACE("float");
    f.template operator()<float>();
  }
  if (has_fp64<Dev>()) {
    SCOPED_TRACE("double");
    f.template operator()<double>();
  }
}

// ---- geometries -------------------------------------------------------------------------

struct conv_case {
  std::size_t n, h, w, c, kh, kw, sh, sw;
  bool same;
};

conv_geometry make_conv(const conv_case& k) {
  const auto y = locus::spatial_axis(k.h, k.kh, k.sh, k.same);
  const auto x = locus::spatial_axis(k.w, k.kw, k.sw, k.same);
  return {k.n, k.h, k.w, k.c, k.kh, k.kw, k.sh, k.sw, y.pad_before, x.pad_before, y.out, x.out};
}

std::string describe(const conv_case& k) {
  std::ostringstream s;
  s << "x [" << k.n << "," << k.h << "," << k.w << "," << k.c << "], kernel " << k.kh << "x" << k.kw
    << ", strides " << k.sh << "x" << k.sw << (k.same ? ", same" : ", valid");
  return s.str();
}

// Valid and same padding, strides 1/2/3, odd sizes, windows 1x1 to 5x5, C = 1/3/8/32,
// windows larger than the input (same padding), the CNN's own shape.
const std::vector<conv_case> conv_cases = {
    {2, 7, 9, 1, 3, 3, 1, 1, false},   {2, 7, 9, 1, 3, 3, 1, 1, true},
    {1, 8, 8, 3, 3, 3, 2, 2, true},    {3, 11, 10, 8, 5, 3, 3, 2, true},
    {2, 28, 28, 1, 3, 3, 1, 1, false}, {1, 5, 5, 3, 1, 1, 1, 1, false},
    {2, 6, 7, 3, 2, 2, 2, 2, false},   {1, 9, 13, 8, 5, 3, 1, 3, false},
    {2, 5, 4, 3, 3, 3, 3, 3, true},    {1, 4, 4, 1, 5, 5, 1, 1, true},
    {1, 3, 3, 2, 3, 3, 2, 1, true},    {2, 13, 13, 32, 3, 3, 1, 1, true},
    {1, 10, 9, 3, 3, 5, 2, 3, false},  {2, 6, 6, 1, 2, 3, 1, 2, true},
    {1, 9, 11, 1, 3, 2, 2, 1, true},   {2, 12, 30, 1, 3, 3, 1, 1, true},
    {1, 6, 5, 1, 1, 4, 1, 1, true},    {1, 7, 6, 1, 3, 1, 1, 1, false},
};

struct pool_case {
  std::size_t n, h, w, c, ph, pw, sh, sw;
  bool same;
};

pool_geometry make_pool(const pool_case& k) {
  const auto y = locus::spatial_axis(k.h, k.ph, k.sh, k.same);
  const auto x = locus::spatial_axis(k.w, k.pw, k.sw, k.same);
  return {k.n, k.h, k.w, k.c, k.ph, k.pw, k.sh, k.sw, y.pad_before, x.pad_before, y.out, x.out};
}

std::string describe(const pool_case& k) {
  std::ostringstream s;
  s << "x [" << k.n << "," << k.h << "," << k.w << "," << k.c << "], window " << k.ph << "x" << k.pw
    << ", strides " << k.sh << "x" << k.sw << (k.same ? ", same" : ", valid");
  return s.str();
}

// Non-overlapping and overlapping windows (stride < window), 1x1, 5x3, odd sizes, C = 1/3/
// 8/16/17/32/33 (whole SIMD batches and tails), the CNN's [32,26,26,32] 2x2 (smaller N).
const std::vector<pool_case> pool_cases = {
    {2, 26, 26, 32, 2, 2, 2, 2, false}, {2, 7, 9, 3, 2, 2, 2, 2, true},
    {1, 7, 7, 8, 3, 3, 1, 1, false},    {2, 9, 8, 3, 3, 3, 2, 2, true},
    {1, 10, 11, 17, 5, 3, 3, 2, true},  {2, 5, 5, 1, 1, 1, 1, 1, false},
    {1, 6, 7, 16, 2, 3, 1, 2, false},   {3, 13, 12, 33, 3, 3, 2, 2, true},
    {1, 4, 4, 8, 3, 3, 3, 3, true},     {2, 7, 5, 1, 5, 3, 2, 1, true},
    {1, 9, 9, 32, 3, 3, 1, 1, true},    {1, 5, 8, 3, 2, 2, 3, 3, false},
};

// ---- float64 references -----------------------------------------------------------------

template <class T>
std::vector<double> values(const Tensor<T, CPUDev>& t) {
  return std::vector<double>(t.begin(), t.end());
}

Ref as_ref(const std::vector<double>& v, const locus::Shape& s) {
  Ref r = Ref::from_shape(s.to_vector());
  std::copy(v.begin(), v.end(), r.begin());
  return r;
}

// Input coordinate of output o, window offset k (may be outside [0, in)).
std::ptrdiff_t input_pos(std::size_t o, std::size_t s, std::size_t k, std::size_t pad) {
  return static_cast<std::ptrdiff_t>(o * s + k) - static_cast<std::ptrdiff_t>(pad);
}

std::vector<double> ref_im2col(const std::vector<double>& x, const conv_geometry& g) {
  const std::size_t K = g.kh * g.kw * g.c;
  std::vector<double> cols(g.n * g.oh * g.ow * K, 0.0);
  for (std::size_t n = 0; n < g.n; ++n)
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow)
        for (std::size_t kh = 0; kh < g.kh; ++kh)
          for (std::size_t kw = 0; kw < g.kw; ++kw)
            for (std::size_t c = 0; c < g.c; ++c) {
              const auto ih = input_pos(oh, g.sh, kh, g.pad_top);
              const auto iw = input_pos(ow, g.sw, kw, g.pad_left);
              if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(g.h) ||
                  iw >= static_cast<std::ptrdiff_t>(g.w))
                continue;
              cols[((n * g.oh + oh) * g.ow + ow) * K + (kh * g.kw + kw) * g.c + c] =
                  x[((n * g.h + static_cast<std::size_t>(ih)) * g.w +
                     static_cast<std::size_t>(iw)) *
                        g.c +
                    c];
            }
  return cols;
}

// Scatter form: every column entry adds itself to the pixel it was read from.
std::vector<double> ref_col2im(const std::vector<double>& cols, const conv_geometry& g) {
  const std::size_t K = g.kh * g.kw * g.c;
  std::vector<double> dx(g.n * g.h * g.w * g.c, 0.0);
  for (std::size_t n = 0; n < g.n; ++n)
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow)
        for (std::size_t kh = 0; kh < g.kh; ++kh)
          for (std::size_t kw = 0; kw < g.kw; ++kw)
            for (std::size_t c = 0; c < g.c; ++c) {
              const auto ih = input_pos(oh, g.sh, kh, g.pad_top);
              const auto iw = input_pos(ow, g.sw, kw, g.pad_left);
              if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(g.h) ||
                  iw >= static_cast<std::ptrdiff_t>(g.w))
                continue;
              dx[((n * g.h + static_cast<std::size_t>(ih)) * g.w + static_cast<std::size_t>(iw)) *
                     g.c +
                 c] += cols[((n * g.oh + oh) * g.ow + ow) * K + (kh * g.kw + kw) * g.c + c];
            }
  return dx;
}

struct pool_ref {
  std::vector<double> y;
  std::vector<std::int32_t> argmax;
  std::vector<double> count;  // in-bounds elements per output
};

pool_ref ref_pool_forward(pool_kind kind, const std::vector<double>& x, const pool_geometry& g) {
  pool_ref r;
  const std::size_t ny = g.n * g.oh * g.ow * g.c;
  r.y.assign(ny, 0.0);
  r.argmax.assign(ny, -1);
  r.count.assign(ny, 0.0);
  for (std::size_t n = 0; n < g.n; ++n)
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow)
        for (std::size_t c = 0; c < g.c; ++c) {
          const std::size_t o = ((n * g.oh + oh) * g.ow + ow) * g.c + c;
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          std::int32_t at = -1;
          std::size_t count = 0;
          for (std::size_t kh = 0; kh < g.ph; ++kh)
            for (std::size_t kw = 0; kw < g.pw; ++kw) {
              const auto ih = input_pos(oh, g.sh, kh, g.pad_top);
              const auto iw = input_pos(ow, g.sw, kw, g.pad_left);
              if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(g.h) ||
                  iw >= static_cast<std::ptrdiff_t>(g.w))
                continue;
              const std::size_t i =
                  ((n * g.h + static_cast<std::size_t>(ih)) * g.w + static_cast<std::size_t>(iw)) *
                      g.c +
                  c;
              ++count;
              sum += x[i];
              if (at < 0 || x[i] > best) {  // first maximum in window order
                best = x[i];
                at = static_cast<std::int32_t>(i);
              }
            }
          r.count[o] = static_cast<double>(count);
          r.argmax[o] = at;
          r.y[o] = kind == pool_kind::max ? best : sum / static_cast<double>(count);
        }
  return r;
}

// Scatter form of the backward pass.
std::vector<double> ref_pool_backward(pool_kind kind, const std::vector<double>& dy,
                                      const pool_ref& fwd, const pool_geometry& g) {
  std::vector<double> dx(g.n * g.h * g.w * g.c, 0.0);
  for (std::size_t n = 0; n < g.n; ++n)
    for (std::size_t oh = 0; oh < g.oh; ++oh)
      for (std::size_t ow = 0; ow < g.ow; ++ow)
        for (std::size_t c = 0; c < g.c; ++c) {
          const std::size_t o = ((n * g.oh + oh) * g.ow + ow) * g.c + c;
          if (kind == pool_kind::max) {
            dx[static_cast<std::size_t>(fwd.argmax[o])] += dy[o];
            continue;
          }
          for (std::size_t kh = 0; kh < g.ph; ++kh)
            for (std::size_t kw = 0; kw < g.pw; ++kw) {
              const auto ih = input_pos(oh, g.sh, kh, g.pad_top);
              const auto iw = input_pos(ow, g.sw, kw, g.pad_left);
              if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(g.h) ||
                  iw >= static_cast<std::ptrdiff_t>(g.w))
                continue;
              dx[((n * g.h + static_cast<std::size_t>(ih)) * g.w + static_cast<std::size_t>(iw)) *
                     g.c +
                 c] += dy[o] / fwd.count[o];
            }
        }
  return dx;
}

template <class T>
double sum_tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// ---- im2col / col2im --------------------------------------------------------------------

TYPED_TEST(NNKernels, Im2colMatchesReference) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 100;
    for (const auto& k : conv_cases) {
      SCOPED_TRACE(describe(k));
      const conv_geometry g = make_conv(k);
      const auto hx = random_host<T>({k.n, k.h, k.w, k.c}, ++seed);
      const auto x = on<Dev>(hx);
      // Pre-filled so that an element the kernel forgets to write shows up.
      auto cols = Tensor<T, Dev>::full({g.n * g.oh * g.ow, g.kh * g.kw * g.c}, T(7));
      NB<Dev>::im2col(x.storage(), g, cols.storage());
      EXPECT_TRUE(near_ref(cols, as_ref(ref_im2col(values(hx), g), cols.shape()), 0, 0));
    }
  });
}

TYPED_TEST(NNKernels, Col2imMatchesReference) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 200;
    for (const auto& k : conv_cases) {
      SCOPED_TRACE(describe(k));
      const conv_geometry g = make_conv(k);
      const auto hc = random_host<T>({g.n * g.oh * g.ow, g.kh * g.kw * g.c}, ++seed);
      const auto cols = on<Dev>(hc);
      auto dx = Tensor<T, Dev>::full({k.n, k.h, k.w, k.c}, T(7));  // must be overwritten
      NB<Dev>::col2im(cols.storage(), g, dx.storage());
      EXPECT_TRUE(
          near_ref(dx, as_ref(ref_col2im(values(hc), g), dx.shape()), sum_tol<T>(), sum_tol<T>()));
    }
  });
}

// <im2col(x), y> == <x, col2im(y)>: col2im is the adjoint the convolution's backward pass
// relies on, checked on the device's own outputs.
TYPED_TEST(NNKernels, Im2colAndCol2imAreAdjoint) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 300;
    for (const auto& k : conv_cases) {
      SCOPED_TRACE(describe(k));
      const conv_geometry g = make_conv(k);
      const auto hx = random_host<T>({k.n, k.h, k.w, k.c}, ++seed);
      const auto hy = random_host<T>({g.n * g.oh * g.ow, g.kh * g.kw * g.c}, ++seed);
      const auto x = on<Dev>(hx);
      const auto y = on<Dev>(hy);
      Tensor<T, Dev> cols(locus::uninitialized, hy.shape());
      Tensor<T, Dev> back(locus::uninitialized, hx.shape());
      NB<Dev>::im2col(x.storage(), g, cols.storage());
      NB<Dev>::col2im(y.storage(), g, back.storage());
      const auto hcols = host(cols), hback = host(back);
      double lhs = 0, rhs = 0, scale = 0;
      for (std::size_t i = 0; i < hy.size(); ++i) {
        lhs += static_cast<double>(hcols.data()[i]) * static_cast<double>(hy.data()[i]);
        scale += std::abs(static_cast<double>(hcols.data()[i]) * static_cast<double>(hy.data()[i]));
      }
      for (std::size_t i = 0; i < hx.size(); ++i) {
        rhs += static_cast<double>(hx.data()[i]) * static_cast<double>(hback.data()[i]);
      }
      EXPECT_NEAR(lhs, rhs, sum_tol<T>() * (1 + scale));
    }
  });
}

// ---- pooling ------------------------------------------------------------------------------

template <class Dev, class T>
void check_pool(pool_kind kind, const pool_case& k, const Tensor<T, CPUDev>& hx,
                std::uint64_t seed) {
  const pool_geometry g = make_pool(k);
  const pool_ref want = ref_pool_forward(kind, values(hx), g);
  const locus::Shape ys{g.n, g.oh, g.ow, g.c};
  const auto x = on<Dev>(hx);
  auto y = Tensor<T, Dev>::full(ys, T(7));
  auto am = Tensor<std::int32_t, Dev>::full(ys, 12345);
  NB<Dev>::pool2d_forward(kind, x.storage(), g, y.storage(),
                          kind == pool_kind::max ? &am.storage() : nullptr);
  if (kind == pool_kind::max) {
    EXPECT_TRUE(near_ref(y, as_ref(want.y, ys), 0, 0));
    EXPECT_TRUE(
        near_ref(am, as_ref(std::vector<double>(want.argmax.begin(), want.argmax.end()), ys)))
        << "argmax must be the flat index of the first maximum";
    // Without an argmax buffer the values are the same.
    auto y2 = Tensor<T, Dev>::full(ys, T(7));
    NB<Dev>::pool2d_forward(kind, x.storage(), g, y2.storage(), nullptr);
    EXPECT_TRUE(near_ref(y2, as_ref(want.y, ys), 0, 0));
  } else {
    EXPECT_TRUE(near_ref(y, as_ref(want.y, ys), sum_tol<T>(), sum_tol<T>()));
  }

  const auto hdy = random_host<T>(ys, seed);
  const auto dy = on<Dev>(hdy);
  auto dx = Tensor<T, Dev>::full(hx.shape(), T(7));  // must be overwritten
  NB<Dev>::pool2d_backward(kind, dy.storage(), kind == pool_kind::max ? &am.storage() : nullptr, g,
                           dx.storage());
  EXPECT_TRUE(near_ref(dx, as_ref(ref_pool_backward(kind, values(hdy), want, g), hx.shape()),
                       sum_tol<T>(), sum_tol<T>()));
}

TYPED_TEST(NNKernels, MaxPoolMatchesReference) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 400;
    for (const auto& k : pool_cases) {
      SCOPED_TRACE(describe(k));
      const auto hx = random_host<T>({k.n, k.h, k.w, k.c}, ++seed);
      check_pool<Dev, T>(pool_kind::max, k, hx, ++seed);
    }
  });
}

// Inputs drawn from {-1, 0, 1, 2}: nearly every window has tied maxima, so the argmax (and
// with it the backward pass) is only right if the first maximum in window order wins.
TYPED_TEST(NNKernels, MaxPoolTiesPickTheFirstMaximum) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 500;
    for (const auto& k : pool_cases) {
      SCOPED_TRACE(describe(k));
      const auto ints = Tensor<std::int32_t, CPUDev>::uniform({k.n, k.h, k.w, k.c}, ++seed, -1, 3);
      const Tensor<T, CPUDev> hx = locus::cast<T>(ints);
      check_pool<Dev, T>(pool_kind::max, k, hx, ++seed);
    }
  });
}

TYPED_TEST(NNKernels, AveragePoolMatchesReference) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    std::uint64_t seed = 600;
    for (const auto& k : pool_cases) {
      SCOPED_TRACE(describe(k));
      const auto hx = random_host<T>({k.n, k.h, k.w, k.c}, ++seed);
      check_pool<Dev, T>(pool_kind::average, k, hx, ++seed);
    }
  });
}

// A hand-checked case: 2x2 windows, stride 1, on one 3x3 channel.
TYPED_TEST(NNKernels, MaxPoolSmallExample) {
  using Dev = TypeParam;
  const Tensor<float, CPUDev> hx =
      Tensor<float, CPUDev>({1, 5, 2, 5, 4, 0, 3, 5, 1}).reshape({1, 3, 3, 1});
  const pool_geometry g{1, 3, 3, 1, 2, 2, 1, 1, 0, 0, 2, 2};
  const auto x = on<Dev>(hx);
  Tensor<float, Dev> y(locus::uninitialized, {1, 2, 2, 1});
  Tensor<std::int32_t, Dev> am(locus::uninitialized, {1, 2, 2, 1});
  NB<Dev>::pool2d_forward(pool_kind::max, x.storage(), g, y.storage(), &am.storage());
  const auto hy = host(y);
  const auto ham = host(am);
  EXPECT_EQ(std::vector<float>(hy.begin(), hy.end()), (std::vector<float>{5, 5, 5, 5}));
  // Windows: {1,5,5,4} -> index 1; {5,2,4,0} -> 1; {5,4,3,5} -> 3 (first 5); {4,0,5,1} -> 7.
  EXPECT_EQ(std::vector<std::int32_t>(ham.begin(), ham.end()),
            (std::vector<std::int32_t>{1, 1, 3, 7}));
  const auto dy = on<Dev>(Tensor<float, CPUDev>({1, 2, 4, 8}).reshape({1, 2, 2, 1}));
  Tensor<float, Dev> dx(locus::uninitialized, hx.shape());
  NB<Dev>::pool2d_backward(pool_kind::max, dy.storage(), &am.storage(), g, dx.storage());
  const auto hdx = host(dx);
  EXPECT_EQ(std::vector<float>(hdx.begin(), hdx.end()),
            (std::vector<float>{0, 3, 0, 4, 0, 0, 0, 8, 0}));
}

// ---- gather_rows and one_hot ----------------------------------------------------------------

template <class Dev, class T>
void check_gather(std::uint64_t seed) {
  constexpr std::size_t rows = 10, len = 7;
  const auto hsrc = std::is_integral_v<T> ? random_host<T>({rows, len}, seed, T(-1000), T(1000))
                                          : random_host<T>({rows, len}, seed);
  // Repeated indices, the first and last row, and out-of-range ones (zero rows).
  const std::vector<std::int32_t> index = {3, 3, 0, 9, 5, -1, 3, 10, 9, 1, 0, 1000, 7};
  const auto hidx = Tensor<std::int32_t, CPUDev>::from_data({index.size()}, index.data());
  const std::size_t count = index.size() - 1;  // the last index is not used
  std::vector<double> want(count * len, 0.0);
  for (std::size_t r = 0; r < count; ++r) {
    if (index[r] < 0 || index[r] >= static_cast<std::int32_t>(rows)) continue;
    for (std::size_t j = 0; j < len; ++j) {
      want[r * len + j] =
          static_cast<double>(hsrc.data()[static_cast<std::size_t>(index[r]) * len + j]);
    }
  }
  const auto src = on<Dev>(hsrc);
  const auto idx = on<Dev>(hidx);
  auto dst = Tensor<T, Dev>::full({count, len}, T(7));
  NB<Dev>::gather_rows(src.storage(), len, idx.storage(), count, dst.storage());
  EXPECT_TRUE(near_ref(dst, as_ref(want, dst.shape()), 0, 0));
}

TYPED_TEST(NNKernels, GatherRowsWithRepeatedAndOutOfRangeIndices) {
  using Dev = TypeParam;
  check_gather<Dev, float>(700);
  check_gather<Dev, std::int32_t>(701);
  if (has_fp64<Dev>()) check_gather<Dev, double>(702);
}

// The one-hot rows of `labels` with `classes` columns; a label out of range gives a zero row.
std::vector<double> one_hot_reference(const std::vector<std::int32_t>& labels,
                                      std::size_t classes) {
  std::vector<double> want(labels.size() * classes, 0.0);
  for (std::size_t r = 0; r < labels.size(); ++r) {
    if (labels[r] >= 0 && labels[r] < static_cast<std::int32_t>(classes)) {
      want[r * classes + static_cast<std::size_t>(labels[r])] = 1;
    }
  }
  return want;
}

TYPED_TEST(NNKernels, OneHotWithOutOfRangeLabels) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    constexpr std::size_t classes = 6;
    const std::vector<std::int32_t> labels = {0, 5, 2, -1, 6, 3, 3, 100, 1, 4};
    const auto hl = Tensor<std::int32_t, CPUDev>::from_data({labels.size()}, labels.data());
    const std::vector<double> want = one_hot_reference(labels, classes);
    const auto l = on<Dev>(hl);
    auto dst = Tensor<T, Dev>::full({labels.size(), classes}, T(7));
    NB<Dev>::one_hot(l.storage(), labels.size(), classes, dst.storage());
    EXPECT_TRUE(near_ref(dst, as_ref(want, dst.shape()), 0, 0));
  });
}

// The checked one_hot writes the same rows and records the smallest negative and the largest
// too-large label in its status, lowering or raising it but never resetting it.
TYPED_TEST(NNKernels, CheckedOneHotRecordsOutOfRangeLabels) {
  using Dev = TypeParam;
  for_float_types<Dev>([]<class T>() {
    constexpr std::size_t classes = 6;
    const std::vector<std::int32_t> labels = {0, 5, 2, -1, 6, 3, -7, 100, 1, 4, 7};
    const auto hl = Tensor<std::int32_t, CPUDev>::from_data({labels.size()}, labels.data());
    const std::vector<double> want = one_hot_reference(labels, classes);
    const auto l = on<Dev>(hl);
    auto status = Tensor<std::int32_t, Dev>::zeros({2});
    auto dst = Tensor<T, Dev>::full({labels.size(), classes}, T(7));
    NB<Dev>::one_hot(l.storage(), labels.size(), classes, dst.storage(), status.storage());
    EXPECT_TRUE(near_ref(dst, as_ref(want, dst.shape()), 0, 0));
    EXPECT_TRUE(near_ref(status, Ref{-7, 100}, 0, 0));
    // Milder bad labels and good ones leave the record as it is.
    const auto l2 = on<Dev>(Tensor<std::int32_t, CPUDev>{-2, 6, 0});
    auto dst2 = Tensor<T, Dev>::full({3, classes}, T(7));
    NB<Dev>::one_hot(l2.storage(), 3, classes, dst2.storage(), status.storage());
    EXPECT_TRUE(near_ref(status, Ref{-7, 100}, 0, 0));
    // Good labels only: a fresh record stays {0, 0}; the count limits the rows read.
    auto fresh = Tensor<std::int32_t, Dev>::zeros({2});
    NB<Dev>::one_hot(l.storage(), 3, classes, dst.storage(), fresh.storage());
    EXPECT_TRUE(near_ref(fresh, Ref{0, 0}, 0, 0));
    // Only one side out of range.
    NB<Dev>::one_hot(l2.storage(), 2, classes, dst2.storage(), fresh.storage());
    EXPECT_TRUE(near_ref(fresh, Ref{-2, 6}, 0, 0));
  });
}

// ---- argument checks and launch counting ------------------------------------------------------

TYPED_TEST(NNKernels, MismatchedBuffersAreRefused) {
  using Dev = TypeParam;
  const conv_geometry g = make_conv({2, 7, 9, 1, 3, 3, 1, 1, false});
  Tensor<float, Dev> x(locus::uninitialized, {2, 7, 9, 1});
  Tensor<float, Dev> small(locus::uninitialized, {10});
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::im2col(x.storage(), g, small.storage()); }, "im2col", "column buffer"));
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::col2im(x.storage(), g, small.storage()); }, "col2im", "image buffer"));
  const pool_geometry p = make_pool({2, 7, 9, 1, 2, 2, 2, 2, false});
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::pool2d_forward(pool_kind::max, x.storage(), p, small.storage(), nullptr); },
      "pool2d_forward", "output buffer"));
  Tensor<float, Dev> dy(locus::uninitialized, {2, 3, 4, 1});
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::pool2d_backward(pool_kind::max, dy.storage(), nullptr, p, x.storage()); },
      "pool2d_backward", "argmax"));
  Tensor<std::int32_t, Dev> idx(locus::uninitialized, {3});
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::gather_rows(x.storage(), 9, idx.storage(), 4, small.storage()); },
      "gather_rows", "index buffer"));
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::one_hot(idx.storage(), 3, 10, small.storage()); }, "one_hot", "destination"));
  Tensor<std::int32_t, Dev> status1(locus::uninitialized, {1});
  Tensor<float, Dev> rows(locus::uninitialized, {3, 2});
  EXPECT_TRUE(throws_with<locus::argument_error>(
      [&] { NB<Dev>::one_hot(idx.storage(), 3, 2, rows.storage(), status1.storage()); }, "one_hot",
      "label status buffer holds 1"));
}

// An OpenCL call is exactly one counted kernel launch and no transfer; the host backend
// launches nothing and transfers nothing.
TYPED_TEST(NNKernels, EachCallIsOneKernelLaunchAndNoTransfer) {
  using Dev = TypeParam;
  const pool_case k{2, 6, 6, 3, 2, 2, 2, 2, false};
  const pool_geometry g = make_pool(k);
  const auto x = on<Dev>(random_host<float>({k.n, k.h, k.w, k.c}, 1));
  Tensor<float, Dev> y(locus::uninitialized, {g.n, g.oh, g.ow, g.c});
  Tensor<std::int32_t, Dev> am(locus::uninitialized, {g.n, g.oh, g.ow, g.c});
  Tensor<float, Dev> dx(locus::uninitialized, x.shape());
  const auto labels = on<Dev>(Tensor<std::int32_t, CPUDev>{0, 9, -1});
  auto status = Tensor<std::int32_t, Dev>::zeros({2});
  Tensor<float, Dev> rows(locus::uninitialized, {3, 4});
  const auto before = locus::stats<Dev>();
  NB<Dev>::pool2d_forward(pool_kind::max, x.storage(), g, y.storage(), &am.storage());
  NB<Dev>::pool2d_backward(pool_kind::max, y.storage(), &am.storage(), g, dx.storage());
  // The checked one_hot too, out-of-range labels or not: the record stays on the device.
  const auto mid = locus::stats<Dev>();
  NB<Dev>::one_hot(labels.storage(), 3, 4, rows.storage(), status.storage());
  const auto after = locus::stats<Dev>();
  EXPECT_EQ(mid.kernel_launches - before.kernel_launches, locus::HostDevice<Dev> ? 0u : 2u);
  EXPECT_EQ(after.kernel_launches - mid.kernel_launches, locus::HostDevice<Dev> ? 0u : 1u);
  EXPECT_EQ(after.transfer_calls(), before.transfer_calls());
}

}  // namespace
