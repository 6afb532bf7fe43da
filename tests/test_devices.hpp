// Shared helpers of the typed operation tests: the device list, transfers to and from the
// host, a float64 reference and comparisons against it.
//
// Every typed test runs once per device in TestDevices. Device<GPU> is in the list
// unconditionally: a machine without a usable OpenCL device (or without the
// LOCUS_OPENCL_ALLOW_CPU=1 opt-in for PoCL) makes the GPU half of the suite fail with the
// device error, never skip.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <locus/locus.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbroadcast.hpp>

namespace locus_test {

using CPUDev = locus::Device<locus::CPU>;
using GPUDev = locus::Device<locus::GPU>;

using TestDevices = ::testing::Types<locus::Device<locus::CPU>, locus::Device<locus::GPU>>;

/// Test names "CPU" and "GPU0" instead of "0" and "1".
struct DeviceNames {
  template <class Dev>
  static std::string GetName(int) {
    if constexpr (locus::HostDevice<Dev>) {
      return "CPU";
    } else {
      return "GPU" + std::to_string(Dev::index);
    }
  }
};

/// The device a typed test compares its results with: the GPU for the CPU and vice versa.
template <class Dev>
using OtherDev = std::conditional_t<locus::HostDevice<Dev>, GPUDev, CPUDev>;

/// A host tensor copied to Dev (locus::to<Dev>).
template <class Dev, class T>
locus::Tensor<T, Dev> on(const locus::Tensor<T, CPUDev>& x) {
  return locus::to<Dev>(x);
}

/// A copy of x on the host (locus::to<Device<CPU>>); expressions are evaluated first.
template <class T, class Dev>
locus::Tensor<T, CPUDev> host(const locus::Tensor<T, Dev>& x) {
  return locus::to<CPUDev>(x);
}
template <class Op, class... Args>
auto host(const locus::Expr<Op, Args...>& e) {
  return locus::to<CPUDev>(e);
}

/// The float64 reference type.
using Ref = xt::xarray<double>;

/// The elements of a tensor (on any device) as a float64 xtensor array.
template <class T, class Dev>
Ref ref(const locus::Tensor<T, Dev>& x) {
  const auto h = host(x);
  Ref r = Ref::from_shape(h.shape().to_vector());
  for (std::size_t i = 0; i < h.size(); ++i) r.data()[i] = static_cast<double>(h.data()[i]);
  return r;
}

/// Tolerances appropriate to an element type (relative, absolute).
template <class T>
struct tol {
  static constexpr double rtol = std::is_same_v<T, float>    ? 1e-5
                                 : std::is_same_v<T, double> ? 1e-12
                                                             : 0;
  static constexpr double atol = std::is_same_v<T, float>    ? 1e-6
                                 : std::is_same_v<T, double> ? 1e-13
                                                             : 0;
};

inline std::string shape_string(const std::vector<std::size_t>& s) {
  return locus::to_string(locus::Shape(s));
}

/// got (any device, any element type) against a float64 reference, element by element:
/// |got - want| <= atol + rtol * |want|; NaN matches only NaN, infinities match exactly.
template <class T, class Dev>
::testing::AssertionResult near_ref(const locus::Tensor<T, Dev>& got, const Ref& want,
                                    double rtol = tol<T>::rtol, double atol = tol<T>::atol) {
  const auto h = host(got);
  const std::vector<std::size_t> ws(want.shape().begin(), want.shape().end());
  if (h.shape().to_vector() != ws) {
    return ::testing::AssertionFailure()
           << "shape " << locus::to_string(h.shape()) << " differs from the reference shape "
           << shape_string(ws);
  }
  std::size_t bad = 0, first = 0;
  double worst = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double g = static_cast<double>(h.data()[i]), w = want.data()[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
    } else if (std::isinf(w) || std::isinf(g)) {
      ok = g == w;
    } else {
      ok = std::abs(g - w) <= atol + rtol * std::abs(w);
    }
    if (!ok) {
      if (!bad) first = i;
      ++bad;
    }
    if (!std::isnan(g) && !std::isnan(w) && !std::isinf(g - w))
      worst = std::max(worst, std::abs(g - w));
  }
  if (bad) {
    return ::testing::AssertionFailure()
           << bad << " of " << h.size() << " elements differ from the float64 reference (rtol "
           << rtol << ", atol " << atol << "); first at flat index " << first << ": got "
           << static_cast<double>(h.data()[first]) << ", want " << want.data()[first]
           << "; largest difference " << worst;
  }
  return ::testing::AssertionSuccess();
}

/// Two tensors (any devices) hold the same values within the tolerances (exactly for int).
template <class T, class DA, class DB>
::testing::AssertionResult same_values(const locus::Tensor<T, DA>& a, const locus::Tensor<T, DB>& b,
                                       double rtol = tol<T>::rtol, double atol = tol<T>::atol) {
  return near_ref(a, ref(b), rtol, atol);
}

/// Bitwise equality of two tensors (any devices).
template <class T, class DA, class DB>
::testing::AssertionResult bitwise_equal(const locus::Tensor<T, DA>& a,
                                         const locus::Tensor<T, DB>& b) {
  const auto ha = host(a), hb = host(b);
  if (!(ha.shape() == hb.shape())) {
    return ::testing::AssertionFailure() << "shapes " << locus::to_string(ha.shape()) << " and "
                                         << locus::to_string(hb.shape()) << " differ";
  }
  for (std::size_t i = 0; i < ha.size(); ++i) {
    if (std::memcmp(ha.data() + i, hb.data() + i, sizeof(T)) != 0) {
      return ::testing::AssertionFailure()
             << "element " << i << " differs: " << +ha.data()[i] << " vs " << +hb.data()[i];
    }
  }
  return ::testing::AssertionSuccess();
}

/// A host tensor with deterministic, non-trivial values (uniform in [lo, hi)).
template <class T>
locus::Tensor<T, CPUDev> random_host(const locus::Shape& s, std::uint64_t seed, T lo = T(-1),
                                     T hi = T(1)) {
  return locus::Tensor<T, CPUDev>::uniform(s, seed, lo, hi);
}

/// Runs f and checks that it throws E whose what() contains every one of `parts`.
template <class E, class F, class... S>
::testing::AssertionResult throws_with(F&& f, const S&... parts) {
  try {
    f();
  } catch (const E& e) {
    const std::string what = e.what();
    for (const std::string& p : {std::string(parts)...}) {
      if (what.find(p) == std::string::npos) {
        return ::testing::AssertionFailure() << "message \"" << what << "\" lacks \"" << p << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw another exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// ---- float64 references ----------------------------------------------------------------

/// Element-wise binary reference with NumPy broadcasting (xtensor broadcasts like NumPy).
template <class F>
Ref ref_binary(const Ref& a, const Ref& b, F f) {
  const Ref shaped = a + b;  // xtensor broadcasts like NumPy; this fixes the result shape
  const Ref aa = xt::broadcast(a, shaped.shape()), bb = xt::broadcast(b, shaped.shape());
  Ref out = Ref::from_shape(shaped.shape());
  for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = f(aa.data()[i], bb.data()[i]);
  return out;
}

/// Element-wise unary reference.
template <class F>
Ref ref_unary(const Ref& a, F f) {
  Ref out = Ref::from_shape(a.shape());
  for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = f(a.data()[i]);
  return out;
}

/// Reference matmul in float64 for [m,k]x[k,n] or batched 3-D operands.
inline Ref ref_matmul(const Ref& a, const Ref& b, bool ta = false, bool tb = false) {
  const std::size_t ra = a.dimension(), rb = b.dimension();
  const std::size_t ar = a.shape()[ra - 2], ac = a.shape()[ra - 1];
  const std::size_t br = b.shape()[rb - 2], bc = b.shape()[rb - 1];
  const std::size_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  const std::size_t batch = ra == 3 ? a.shape()[0] : rb == 3 ? b.shape()[0] : 1;
  Ref c = ra == 3 || rb == 3 ? Ref::from_shape({batch, m, n}) : Ref::from_shape({m, n});
  for (std::size_t bi = 0; bi < batch; ++bi) {
    const double* pa = a.data() + (ra == 3 ? bi * ar * ac : 0);
    const double* pb = b.data() + (rb == 3 ? bi * br * bc : 0);
    double* pc = c.data() + bi * m * n;
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::size_t l = 0; l < k; ++l) {
          const double x = ta ? pa[l * ac + i] : pa[i * ac + l];
          const double y = tb ? pb[j * bc + l] : pb[l * bc + j];
          s += x * y;
        }
        pc[i * n + j] = s;
      }
    }
  }
  return c;
}

}  // namespace locus_test
