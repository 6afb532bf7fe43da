// Host storage: one 64-byte aligned allocation (a cache line, and the width of an
// AVX-512 register), so SIMD loops may start aligned and rows can be packed for GEMM.
//
// Large blocks are recycled through a small caching allocator. A training step creates
// and drops the same few multi-megabyte temporaries every step; handing them back to the
// C library returns them to the kernel, and touching them again next step costs a page
// fault per 4 KiB (measured at about a fifth of a CNN training step). Blocks are kept in
// size classes of a quarter octave, up to a cap, and reused first-fit within a class.
#pragma once

#include <array>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "../../error.hpp"

namespace locus::backend::cpu {

inline constexpr std::size_t buffer_alignment = 64;

namespace detail {

class host_block_cache {
 public:
  // Blocks below this go straight to the C library, which recycles small blocks well.
  static constexpr std::size_t min_cached = std::size_t(1) << 16;
  static constexpr std::size_t max_cached_total = std::size_t(512) << 20;

  /// The process-wide cache. Deliberately never destroyed: tensors with static storage
  /// may be freed after any static destructor, and the cached blocks stay reachable.
  static host_block_cache& instance() {
    static host_block_cache* cache = new host_block_cache;
    return *cache;
  }

  /// Rounds up to the block size actually allocated for `bytes`.
  static std::size_t block_size(std::size_t bytes) {
    bytes = (bytes + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
    if (bytes < min_cached) return bytes;
    // Quarter-octave classes: at most 19% over the request.
    std::size_t top = std::size_t(1) << (8 * sizeof(std::size_t) - 1 - __builtin_clzll(bytes));
    const std::size_t step = top / 4;
    return (bytes + step - 1) / step * step;
  }

  void* allocate(std::size_t block) {
    if (block >= min_cached) {
      std::lock_guard lk(mutex_);
      auto& list = free_[slot(block)];
      for (std::size_t i = list.size(); i-- > 0;) {
        if (list[i].size == block) {
          void* p = list[i].ptr;
          list[i] = list.back();
          list.pop_back();
          cached_ -= block;
          return p;
        }
      }
    }
    void* p = std::aligned_alloc(buffer_alignment, block);
    if (!p && block >= min_cached) {
      release_all();  // give the cache back and try once more before failing
      p = std::aligned_alloc(buffer_alignment, block);
    }
    return p;
  }

  void deallocate(void* p, std::size_t block) noexcept {
    if (block >= min_cached) {
      std::lock_guard lk(mutex_);
      if (cached_ + block <= max_cached_total) {
        try {
          free_[slot(block)].push_back({p, block});
          cached_ += block;
          return;
        } catch (...) {  // no room to remember it: free it instead
        }
      }
    }
    std::free(p);
  }

  /// Frees every cached block.
  void release_all() noexcept {
    std::lock_guard lk(mutex_);
    for (auto& list : free_) {
      for (auto& b : list) std::free(b.ptr);
      list.clear();
    }
    cached_ = 0;
  }

  std::size_t cached_bytes() {
    std::lock_guard lk(mutex_);
    return cached_;
  }

 private:
  struct block {
    void* ptr;
    std::size_t size;
  };
  static std::size_t slot(std::size_t block) {
    return static_cast<std::size_t>(8 * sizeof(std::size_t) - 1 - __builtin_clzll(block)) % 64;
  }
  std::mutex mutex_;
  std::array<std::vector<block>, 64> free_{};
  std::size_t cached_ = 0;
};

}  // namespace detail

/// Frees the host blocks locus keeps for reuse (e.g. before a memory-hungry phase).
inline void release_cached_host_memory() { detail::host_block_cache::instance().release_all(); }

template <class T>
class host_buffer {
 public:
  host_buffer() = default;
  explicit host_buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    if (n > (std::size_t(-1) - buffer_alignment) / sizeof(T)) {
      throw out_of_memory_error("locus: host allocation of " + std::to_string(n) + " elements overflows", n, 0);
    }
    const std::size_t block = detail::host_block_cache::block_size(n * sizeof(T));
    void* p = detail::host_block_cache::instance().allocate(block);
    if (!p) {
      throw out_of_memory_error("locus: host allocation of " + std::to_string(block) + " bytes failed", block, 0);
    }
    data_.reset(static_cast<T*>(p));
    data_.get_deleter().block = block;
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
  struct cache_deleter {
    std::size_t block = 0;
    void operator()(T* p) const noexcept { detail::host_block_cache::instance().deallocate(p, block); }
  };
  std::unique_ptr<T, cache_deleter> data_;
  std::size_t size_ = 0;
};

}  // namespace locus::backend::cpu
