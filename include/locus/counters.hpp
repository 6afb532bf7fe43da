// Per-device counters of transfers and kernel launches.
//
// Rule 4 of the contract: transfers are explicit and counted, so a test can prove that a
// GPU training step makes no hidden round trip. Counters are process-wide atomics, one
// set per device type, bumped by locus::to<>() and by the OpenCL backend's launcher.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "device.hpp"

namespace locus {

/// A plain copy of one device's counters at one moment.
struct transfer_stats {
  std::uint64_t host_to_device_bytes = 0;  ///< host -> this device
  std::uint64_t host_to_device_calls = 0;
  std::uint64_t device_to_host_bytes = 0;  ///< this device -> host
  std::uint64_t device_to_host_calls = 0;
  std::uint64_t device_to_device_bytes = 0;  ///< this device -> another non-host device
  std::uint64_t device_to_device_calls = 0;
  std::uint64_t kernel_launches = 0;  ///< kernels enqueued on this device

  std::uint64_t transfer_calls() const {
    return host_to_device_calls + device_to_host_calls + device_to_device_calls;
  }
};

namespace detail {
struct device_counters {
  std::atomic<std::uint64_t> h2d_bytes{0}, h2d_calls{0}, d2h_bytes{0}, d2h_calls{0},
      d2d_bytes{0}, d2d_calls{0}, launches{0};

  void reset() {
    for (auto* c : {&h2d_bytes, &h2d_calls, &d2h_bytes, &d2h_calls, &d2d_bytes, &d2d_calls,
                    &launches}) {
      c->store(0, std::memory_order_relaxed);
    }
  }
  transfer_stats read() const {
    transfer_stats s;
    s.host_to_device_bytes = h2d_bytes.load(std::memory_order_relaxed);
    s.host_to_device_calls = h2d_calls.load(std::memory_order_relaxed);
    s.device_to_host_bytes = d2h_bytes.load(std::memory_order_relaxed);
    s.device_to_host_calls = d2h_calls.load(std::memory_order_relaxed);
    s.device_to_device_bytes = d2d_bytes.load(std::memory_order_relaxed);
    s.device_to_device_calls = d2d_calls.load(std::memory_order_relaxed);
    s.kernel_launches = launches.load(std::memory_order_relaxed);
    return s;
  }
};

/// The counters of device D (one instance per device type per program).
template <AnyDevice D>
device_counters& counters_of() {
  static device_counters c;
  return c;
}
}  // namespace detail

/// Reads the counters of device D.
template <AnyDevice D>
transfer_stats stats() {
  return detail::counters_of<D>().read();
}

/// Resets the counters of device D to zero.
template <AnyDevice D>
void reset_stats() {
  detail::counters_of<D>().reset();
}

}  // namespace locus
