// Host storage: one 64-byte aligned allocation (a cache line, and the width of an
// AVX-512 register), so SIMD loops may start aligned and rows can be packed for GEMM.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "../../error.hpp"

namespace locus::backend::cpu {

inline constexpr std::size_t buffer_alignment = 64;

template <class T>
class host_buffer {
 public:
  host_buffer() = default;
  explicit host_buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    const std::size_t bytes = (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
    void* p = std::aligned_alloc(buffer_alignment, bytes);
    if (!p) {
      throw out_of_memory_error("locus: host allocation of " + std::to_string(bytes) +
                                    " bytes failed",
                                bytes, 0);
    }
    data_.reset(static_cast<T*>(p));
  }
  host_buffer(host_buffer&& o) noexcept : data_(std::move(o.data_)), size_(o.size_) { o.size_ = 0; }
  host_buffer& operator=(host_buffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = o.size_;
    o.size_ = 0;
    return *this;
  }
  host_buffer(const host_buffer&) = delete;
  host_buffer& operator=(const host_buffer&) = delete;

  std::size_t size() const noexcept { return size_; }
  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }

 private:
  struct free_deleter {
    void operator()(T* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<T, free_deleter> data_;
  std::size_t size_ = 0;
};

}  // namespace locus::backend::cpu
