// Comparing tensors on the host.
#pragma once

#include <cmath>

#include "../detail/contract.hpp"
#include "../expr.hpp"
#include "../tensor.hpp"

namespace locus {

/// NumPy's allclose: |a - b| <= atol + rtol * |b| everywhere (broadcasting; NaN is never
/// close). It reads values, so it takes host tensors: copy device results first with
/// locus::to<locus::Device<locus::CPU>>(x).
template <class T, class DA, class DB>
bool allclose(const Tensor<T, DA>& a, const Tensor<T, DB>& b, double rtol = 1e-5, double atol = 1e-8) {
  (void)sizeof(detail::require_same_device<DA, DB>);
  (void)sizeof(detail::host_access_denied<DA>);
  if constexpr (HostDevice<DA> && std::is_same_v<DA, DB>) {
    const Shape s = broadcast_shapes(a.shape(), b.shape(), "allclose");
    const auto sa = broadcast_strides(a.shape(), s), sb = broadcast_strides(b.shape(), s);
    const auto strides = row_major_strides(s);
    for (std::size_t i = 0; i < s.size(); ++i) {
      std::size_t ia = 0, ib = 0;
      for (std::size_t d = 0; d < s.rank(); ++d) {
        const std::size_t k = (i / strides[d]) % s[d];
        ia += k * sa[d];
        ib += k * sb[d];
      }
      const double x = static_cast<double>(a.data()[ia]), y = static_cast<double>(b.data()[ib]);
      // As in NumPy, an infinity is close only to the same infinity (the formula alone
      // would call inf close to -inf, and inf - inf is NaN).
      const bool finite = std::isfinite(x) && std::isfinite(y);
      if (!(x == y || (finite && std::abs(x - y) <= atol + rtol * std::abs(y)))) return false;
    }
    return true;
  } else {
    return false;
  }
}

}  // namespace locus
