// buffer<T, N>: owning, movable storage of n elements on Device<GPU, N>.
//
// The logical index is part of the type, so buffers of two devices never mix, even when
// both map to the same physical device. Memory comes from the device's caching pool and
// returns to it on destruction. An empty buffer touches no device at all: an empty tensor
// is not a reason to open a GPU.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "runtime.hpp"

namespace locus::backend::opencl {

/// Thrown for double tensors on a device without cl_khr_fp64.
class fp64_unsupported_error : public device_error {
 public:
  using device_error::device_error;
};

template <class T, std::size_t N>
class buffer {
 public:
  using value_type = T;
  static constexpr std::size_t device_index = N;

  buffer() noexcept = default;
  explicit buffer(std::size_t n) : n_(n) {
    if (n == 0) return;
    dc_ = &device_of<N>();
    if constexpr (std::is_same_v<T, double>) {
      if (!dc_->info.fp64) {
        throw fp64_unsupported_error(
            "locus: Device<GPU, " + std::to_string(N) + "> (" + dc_->info.name +
            ") does not support double precision (no cl_khr_fp64); use float tensors on it");
      }
    }
    mem_ = dc_->pool->allocate(n * sizeof(T));
  }
  buffer(buffer&& o) noexcept
      : dc_(std::exchange(o.dc_, nullptr)),
        mem_(std::exchange(o.mem_, nullptr)),
        n_(std::exchange(o.n_, 0)) {}
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      reset();
      dc_ = std::exchange(o.dc_, nullptr);
      mem_ = std::exchange(o.mem_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  std::size_t size() const noexcept { return n_; }
  std::size_t bytes() const noexcept { return n_ * sizeof(T); }
  bool empty() const noexcept { return n_ == 0; }
  /// The cl_mem (nullptr when empty).
  cl_mem handle() const noexcept { return mem_; }

 private:
  void reset() noexcept {
    if (mem_) dc_->pool->release(mem_, n_ * sizeof(T));
    mem_ = nullptr;
    n_ = 0;
  }

  device_context* dc_ = nullptr;
  cl_mem mem_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace locus::backend::opencl
