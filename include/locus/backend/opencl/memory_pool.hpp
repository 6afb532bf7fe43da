// A caching allocator of cl_mem buffers, one per physical device.
//
// Tensors are created and destroyed at a high rate (every temporary of a training step);
// clCreateBuffer/clReleaseMemObject per tensor would dominate small workloads. Freed
// buffers go to a free list bucketed by size class (at most 25% over the request) and are
// reused by the next request of the same class. Reuse is safe without events because each
// device has one in-order queue: a kernel that still reads a freed buffer runs before any
// command that writes its next owner.
//
// The limit is checked before clCreateBuffer (which many drivers implement lazily, so it
// may succeed and fail on first use instead). On failure the cache is released and the
// allocation retried once; only then does out_of_memory_error reach the caller, and the
// pool is left consistent so the device remains usable.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "error.hpp"
#include "platform.hpp"

namespace locus::backend::opencl {

/// Snapshot of a device's memory accounting (bytes).
struct memory_stats {
  std::size_t in_use = 0;         // held by live buffers (size-class rounded)
  std::size_t cached = 0;         // freed buffers kept for reuse
  std::size_t limit = 0;          // cap on in_use + cached (defaults to device memory)
  std::size_t device_memory = 0;  // CL_DEVICE_GLOBAL_MEM_SIZE
  std::size_t peak = 0;           // highest in_use seen
  std::size_t live_buffers = 0;   // number of buffers in use
  std::size_t allocations = 0;    // buffers handed out so far (from the cache or new)
};

class memory_pool {
 public:
  memory_pool(cl_context ctx, const device_info& dev)
      : ctx_(ctx), dev_(dev), limit_(static_cast<std::size_t>(dev.global_memory)) {}
  ~memory_pool() { release_cached(); }
  memory_pool(const memory_pool&) = delete;
  memory_pool& operator=(const memory_pool&) = delete;

  /// Size class of a request: multiples of 256 bytes up to 4 KiB, then four classes per
  /// power of two (waste <= 25%), so freed buffers are reusable by similar requests.
  static std::size_t size_class(std::size_t bytes) {
    if (bytes <= 4096) return std::max<std::size_t>(256, (bytes + 255) / 256 * 256);
    std::size_t p = 1;
    while (p * 2 <= bytes) p *= 2;
    const std::size_t step = p / 4;
    return (bytes + step - 1) / step * step;
  }

  cl_mem allocate(std::size_t bytes) {
    const std::size_t cls = size_class(bytes);
    std::lock_guard lk(mutex_);
    ++allocations_;
    if (auto it = free_.find(cls); it != free_.end() && !it->second.empty()) {
      cl_mem m = it->second.back();
      it->second.pop_back();
      cached_ -= cls;
      account(cls);
      return m;
    }
    if (in_use_ + cached_ + cls > limit_) release_cached_locked();
    if (in_use_ + cls > limit_)
      throw oom(bytes, "the memory limit of this device would be exceeded");
    if (dev_.max_allocation && cls > dev_.max_allocation) {
      throw out_of_memory_error(
          "locus: out of memory on OpenCL device " + dev_.name + ": " + std::to_string(bytes) +
              " bytes requested in one buffer, but the device allows at most " +
              std::to_string(dev_.max_allocation) +
              " bytes per buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)",
          bytes, static_cast<std::size_t>(dev_.max_allocation));
    }
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(ctx_, CL_MEM_READ_WRITE, cls, nullptr, &err);
    if (is_out_of_memory(err)) {
      release_cached_locked();
      m = clCreateBuffer(ctx_, CL_MEM_READ_WRITE, cls, nullptr, &err);
    }
    if (is_out_of_memory(err)) throw oom(bytes, "the driver reported " + error_name(err));
    check(err, "clCreateBuffer", std::to_string(cls) + " bytes");
    account(cls);
    return m;
  }

  /// Returns a buffer of `bytes` (as requested from allocate) to the cache.
  void release(cl_mem m, std::size_t bytes) noexcept {
    const std::size_t cls = size_class(bytes);
    std::lock_guard lk(mutex_);
    in_use_ -= cls;
    --live_;
    // Above the limit (it was lowered) the buffer is freed rather than cached.
    if (in_use_ + cached_ + cls > limit_) {
      clReleaseMemObject(m);
      return;
    }
    try {
      free_[cls].push_back(m);
      cached_ += cls;
    } catch (...) {
      clReleaseMemObject(m);
    }
  }

  /// Frees every cached buffer (first response to memory pressure).
  void release_cached() noexcept {
    std::lock_guard lk(mutex_);
    release_cached_locked();
  }

  /// Caps in_use + cached; 0 restores the default (the device's global memory).
  void set_limit(std::size_t bytes) {
    std::lock_guard lk(mutex_);
    limit_ = bytes ? bytes : static_cast<std::size_t>(dev_.global_memory);
    if (in_use_ + cached_ > limit_) release_cached_locked();
  }

  memory_stats stats() const {
    std::lock_guard lk(mutex_);
    memory_stats s;
    s.in_use = in_use_;
    s.cached = cached_;
    s.limit = limit_;
    s.device_memory = static_cast<std::size_t>(dev_.global_memory);
    s.peak = peak_;
    s.live_buffers = live_;
    s.allocations = allocations_;
    return s;
  }

  /// For the launcher: an enqueue failed for lack of memory (lazy allocation).
  out_of_memory_error launch_oom(std::size_t bytes, const std::string& what) const {
    std::lock_guard lk(mutex_);
    return oom(bytes, what);
  }

 private:
  void account(std::size_t cls) {
    in_use_ += cls;
    ++live_;
    peak_ = std::max(peak_, in_use_);
  }

  void release_cached_locked() noexcept {
    for (auto& [cls, list] : free_) {
      for (cl_mem m : list) clReleaseMemObject(m);
    }
    free_.clear();
    cached_ = 0;
  }

  out_of_memory_error oom(std::size_t bytes, const std::string& why) const {
    const std::size_t available = limit_ > in_use_ ? limit_ - in_use_ : 0;
    return out_of_memory_error(
        "locus: out of memory on OpenCL device [" + std::to_string(dev_.index) + "] " + dev_.name +
            ": " + std::to_string(bytes) + " bytes requested, " + std::to_string(available) +
            " bytes available (limit " + std::to_string(limit_) + ", in use " +
            std::to_string(in_use_) + "); " + why,
        bytes, available);
  }

  cl_context ctx_;
  const device_info& dev_;
  mutable std::mutex mutex_;
  std::map<std::size_t, std::vector<cl_mem>> free_;
  std::size_t in_use_ = 0, cached_ = 0, limit_, peak_ = 0, live_ = 0, allocations_ = 0;
};

}  // namespace locus::backend::opencl
