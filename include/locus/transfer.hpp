// locus::to<Dev>(x): the one way across devices (rule 4 of the contract).
//
// Every crossing is counted per device and direction (see counters.hpp). Copies between
// two OpenCL devices go through a host staging buffer, because each device has its own
// context; they count as device-to-device on the source and host-to-device on the target,
// so the host hop is visible too.
#pragma once

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "counters.hpp"
#include "device.hpp"
#include "expr.hpp"
#include "tensor.hpp"

namespace locus {

/// A copy of `x` on device Dst. On the same device it is a plain (uncounted) copy.
template <AnyDevice Dst, class T, AnyDevice Src>
Tensor<T, Dst> to(const Tensor<T, Src>& x) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return x;
  } else {
    const std::size_t n = x.size();
    const auto bytes = static_cast<std::uint64_t>(n * sizeof(T));
    Tensor<T, Dst> out(uninitialized, x.shape());
    if constexpr (HostDevice<Src>) {
      backend_t<Dst>::upload(out.storage(), x.storage().data(), n);
      auto& c = detail::counters_of<Dst>();
      c.h2d_bytes += bytes;
      c.h2d_calls += 1;
    } else if constexpr (HostDevice<Dst>) {
      backend_t<Src>::download(x.storage(), out.storage().data(), n);
      auto& c = detail::counters_of<Src>();
      c.d2h_bytes += bytes;
      c.d2h_calls += 1;
    } else {
      std::vector<T> staging(n);
      backend_t<Src>::download(x.storage(), staging.data(), n);
      backend_t<Dst>::upload(out.storage(), staging.data(), n);
      auto& s = detail::counters_of<Src>();
      s.d2d_bytes += bytes;
      s.d2d_calls += 1;
      auto& d = detail::counters_of<Dst>();
      d.h2d_bytes += bytes;
      d.h2d_calls += 1;
    }
    return out;
  }
}

/// A tensor on Dst holding shape.size() values read from host memory at `data`: one
/// counted upload on a device, a copy on the host. This is how a loader puts a weight from
/// a file's buffer straight into a device's memory, with no host tensor in between.
template <AnyDevice Dst, class T>
Tensor<T, Dst> from_host(const Shape& shape, const T* data) {
  Tensor<T, Dst> out(uninitialized, shape);
  const std::size_t n = shape.size();
  if constexpr (HostDevice<Dst>) {
    std::copy(data, data + n, out.storage().data());
  } else {
    backend_t<Dst>::upload(out.storage(), data, n);
    auto& c = detail::counters_of<Dst>();
    c.h2d_bytes += static_cast<std::uint64_t>(n * sizeof(T));
    c.h2d_calls += 1;
  }
  return out;
}

/// Moving overload: on the same device the tensor is moved, not copied.
template <AnyDevice Dst, class T, AnyDevice Src>
Tensor<T, Dst> to(Tensor<T, Src>&& x) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return std::move(x);
  } else {
    return to<Dst>(static_cast<const Tensor<T, Src>&>(x));
  }
}

/// An expression is evaluated on its own device, then copied.
template <AnyDevice Dst, class Op, class... Args>
auto to(const Expr<Op, Args...>& e) {
  return to<Dst>(eval(e));
}

}  // namespace locus
