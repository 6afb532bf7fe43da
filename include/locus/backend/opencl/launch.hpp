// Setting kernel arguments and enqueuing kernels, under the device mutex.
//
// clSetKernelArg mutates a cl_kernel shared by every thread that uses the device, so
// set-arguments + enqueue is one critical section per device. Every enqueue bumps the
// launch counter of the logical device, and an enqueue that fails for lack of memory
// (drivers often allocate buffers lazily, on first use) releases the pool's cache and
// retries once before reporting out_of_memory_error.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>

#include "error.hpp"
#include "program_cache.hpp"
#include "runtime.hpp"

namespace locus::backend::opencl {

/// A __local kernel argument of `bytes` bytes.
struct local_mem {
  std::size_t bytes;
};

/// A buffer argument; `bytes` is reported if the launch runs out of memory.
struct mem_arg {
  cl_mem mem;
  std::size_t bytes;
};

template <class B>
mem_arg arg(const B& b) {
  return mem_arg{b.handle(), b.bytes()};
}

/// One kernel argument, type-erased so generated kernels can pass a run-time list.
struct raw_arg {
  enum class kind { value, mem, local } k = kind::value;
  std::size_t size = 0;
  alignas(8) unsigned char bytes[8] = {};
  cl_mem mem = nullptr;

  template <class A>
  static raw_arg value(const A& a) {
    // Only fixed-width OpenCL scalar types: size_t or long would silently differ in
    // width between host platforms.
    static_assert(std::is_same_v<A, cl_int> || std::is_same_v<A, cl_uint> ||
                      std::is_same_v<A, cl_ulong> || std::is_same_v<A, cl_long> ||
                      std::is_same_v<A, cl_float> || std::is_same_v<A, cl_double>,
                  "locus internal: kernel scalar arguments must be cl_int, cl_uint, cl_long, "
                  "cl_ulong, cl_float or cl_double");
    raw_arg r;
    r.size = sizeof(A);
    std::memcpy(r.bytes, &a, sizeof(A));
    return r;
  }
  static raw_arg from(const mem_arg& m) {
    raw_arg r;
    r.k = kind::mem;
    r.mem = m.mem;
    r.size = m.bytes;
    return r;
  }
  static raw_arg from(const local_mem& l) {
    raw_arg r;
    r.k = kind::local;
    r.size = l.bytes;
    return r;
  }
  template <class A>
  static raw_arg from(const A& a) {
    return value(a);
  }
};

/// The kernel object (building its program on first use).
inline kernel_handle lookup(device_context& dc, const program_source& src, const char* kernel) {
  std::lock_guard lk(dc.mutex);
  return dc.programs->kernel(src, kernel);
}

/// Enqueues `kernel` of `src` over an NDRange with `count` arguments; `local` may be null.
inline void launch_raw(device_context& dc, std::atomic<std::uint64_t>& launches,
                       const program_source& src, const char* kernel, cl_uint dims,
                       const std::size_t* global, const std::size_t* local, const raw_arg* args,
                       std::size_t count) {
  std::lock_guard lk(dc.mutex);
  const kernel_handle h = dc.programs->kernel(src, kernel);
  std::size_t mem_bytes = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const raw_arg& a = args[i];
    cl_int err = CL_SUCCESS;
    const auto idx = static_cast<cl_uint>(i);
    switch (a.k) {
      case raw_arg::kind::mem:
        err = clSetKernelArg(h.kernel, idx, sizeof(cl_mem), &a.mem);
        mem_bytes += a.size;
        break;
      case raw_arg::kind::local:
        err = clSetKernelArg(h.kernel, idx, a.size, nullptr);
        break;
      default:
        err = clSetKernelArg(h.kernel, idx, a.size, a.bytes);
    }
    // The message is built only on failure: a launch allocates nothing on the host.
    if (err != CL_SUCCESS)
      check(err, "clSetKernelArg", std::string(kernel) + " argument " + std::to_string(i));
  }
  cl_int err =
      clEnqueueNDRangeKernel(dc.queue, h.kernel, dims, nullptr, global, local, 0, nullptr, nullptr);
  if (is_out_of_memory(err)) {
    dc.pool->release_cached();
    clFinish(dc.queue);
    err = clEnqueueNDRangeKernel(dc.queue, h.kernel, dims, nullptr, global, local, 0, nullptr,
                                 nullptr);
    if (is_out_of_memory(err)) {
      throw dc.pool->launch_oom(
          mem_bytes, "kernel " + std::string(kernel) + " failed with " + error_name(err));
    }
  }
  if (err != CL_SUCCESS)
    check(err, "clEnqueueNDRangeKernel",
          std::string(kernel) + " of " + src.name + " on " + dc.info.name);
  launches.fetch_add(1, std::memory_order_relaxed);
  // Some drivers (NVIDIA's) submit only on flush: flush now and then so the device works
  // while the host keeps enqueuing, without paying a flush per launch.
  if (++dc.unflushed >= 8) {
    clFlush(dc.queue);
    dc.unflushed = 0;
  }
}

/// Enqueues `kernel` of `src` with the given arguments (mem_arg, local_mem, cl scalars).
template <class... A>
void launch(device_context& dc, std::atomic<std::uint64_t>& launches, const program_source& src,
            const char* kernel, cl_uint dims, const std::size_t* global, const std::size_t* local,
            const A&... args) {
  const raw_arg list[] = {raw_arg::from(args)..., raw_arg{}};
  launch_raw(dc, launches, src, kernel, dims, global, local, list, sizeof...(A));
}

inline std::size_t round_up(std::size_t v, std::size_t to) {
  return (v + to - 1) / to * to;
}

/// The largest power of two <= min(want, allowed).
inline std::size_t pow2_floor(std::size_t want, std::size_t allowed) {
  const std::size_t m = want < allowed ? want : allowed;
  std::size_t p = 1;
  while (p * 2 <= m) p *= 2;
  return p;
}

}  // namespace locus::backend::opencl
