// Device tags, device traits and the concepts every other header builds on.
//
// A device is an empty type. Everything placement-related (which backend runs an
// operation, whether the host may touch the memory, whether two operands may meet) is
// decided from these types at compile time. Tags never derive from each other: an
// inheritance relation between devices would be an implicit fallback path, which is
// exactly what locus forbids.
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

namespace locus {

/// Kind tag: the host processor (xtensor storage, xsimd kernels, a thread pool).
struct CPU {};
/// Kind tag: an OpenCL device.
struct GPU {};

/// A concrete device: a kind and, for GPUs, the index of the OpenCL device.
/// `Device<GPU>` is `Device<GPU, 0>`. `Device<CPU>` has exactly one instance (index 0).
template <class Kind, std::size_t N = 0>
struct Device {
  static_assert(std::is_same_v<Kind, CPU> || std::is_same_v<Kind, GPU>,
                "locus: Device<Kind, N> takes locus::CPU or locus::GPU as its kind");
  static_assert(!std::is_same_v<Kind, CPU> || N == 0,
                "locus: there is only one host device; write locus::Device<locus::CPU>");
  using kind = Kind;
  static constexpr std::size_t index = N;
};

template <class T>
struct is_device : std::false_type {};
template <class Kind, std::size_t N>
struct is_device<Device<Kind, N>> : std::true_type {};
template <class T>
inline constexpr bool is_device_v = is_device<T>::value;

/// Any locus device type.
template <class D>
concept AnyDevice = is_device_v<D>;

/// The host device.
template <class D>
concept HostDevice = AnyDevice<D> && std::is_same_v<typename D::kind, CPU>;

/// An OpenCL device, whatever its index.
template <class D>
concept OpenCLDevice = AnyDevice<D> && std::is_same_v<typename D::kind, GPU>;

// Kokkos keeps two ideas apart that are easy to conflate; so do we.
//  - accessible: code running on the host may dereference memory of device D.
//  - assignable: a tensor on S may be assigned/constructed into one on D without a copy
//    across devices. For locus that is true only for identical device types; every other
//    pair needs an explicit locus::to<D>(x).
template <class D>
inline constexpr bool host_accessible_v = HostDevice<D>;

template <class Dst, class Src>
inline constexpr bool assignable_v = AnyDevice<Dst> && AnyDevice<Src> && std::is_same_v<Dst, Src>;

/// Human-readable name, as a user would write it in code ("Device<GPU, 1>").
template <AnyDevice D>
std::string device_name() {
  if constexpr (HostDevice<D>) {
    return "Device<CPU>";
  } else {
    return "Device<GPU, " + std::to_string(D::index) + ">";
  }
}

/// A stable short key used by counters and logs ("cpu", "gpu0", "gpu1").
template <AnyDevice D>
std::string device_key() {
  if constexpr (HostDevice<D>) {
    return "cpu";
  } else {
    return "gpu" + std::to_string(D::index);
  }
}

}  // namespace locus
