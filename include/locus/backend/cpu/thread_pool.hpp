// A small persistent thread pool shared by the whole CPU backend.
//
// Why a pool of our own rather than OpenMP:
//  * locus is header-only; `#pragma omp` only works when every consumer compiles and links
//    with -fopenmp, which a header library cannot impose (without it the pragmas silently
//    vanish and everything runs on one core).
//  * An OpenMP runtime next to OpenBLAS's own pthreads (our benchmarks link both) leads to
//    oversubscription and busy-waiting threads fighting for the same cores.
//  * libgomp is not built with sanitizer instrumentation, so ThreadSanitizer reports false
//    positives in it; a plain std::thread pool is clean under ASan/UBSan/TSan.
//
// Design: workers are started lazily on the first parallel call and kept alive. A job is
// published by bumping one atomic word that holds (sequence number, chunk count); workers
// spin on that word for a few microseconds (dispatch of back-to-back element-wise ops then
// costs well under a microsecond) before blocking on a condition variable so idle programs
// do not burn CPU. Chunking is static and contiguous, so results that depend on the chunk
// boundaries (reductions) are deterministic for a given thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace locus::backend::cpu {

namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

inline std::size_t default_num_threads() noexcept {
  if (const char* env = std::getenv("LOCUS_NUM_THREADS")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1) return static_cast<std::size_t>(v);
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : hc;
}

// Requested thread count; workers are (re)started to match it at the next dispatch.
inline std::atomic<std::size_t>& requested_threads() noexcept {
  static std::atomic<std::size_t> n{default_num_threads()};
  return n;
}

// True while this thread runs a chunk (worker or caller): nested parallel_for runs inline,
// which is what prevents re-entrancy deadlocks.
inline thread_local bool tls_in_parallel = false;

// Set once the pool singleton has been destroyed at exit: later calls (from other static
// destructors) run serially instead of touching a dead object.
inline std::atomic<bool> pool_destroyed{false};

class thread_pool {
 public:
  using task_fn = void (*)(void* ctx, std::size_t begin, std::size_t end);

  thread_pool() = default;
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  ~thread_pool() {
    std::lock_guard<std::mutex> dispatch(dispatch_mutex_);
    stop_workers();
    pool_destroyed.store(true, std::memory_order_release);
  }

  // Runs fn on at most num_threads() contiguous chunks of at least `grain` elements of
  // [0, n). Precondition: n > grain >= 1.
  void run(std::size_t n, std::size_t grain, task_fn fn, void* ctx) {
    // One job at a time: concurrent callers from different user threads are serialised.
    std::unique_lock<std::mutex> dispatch(dispatch_mutex_);
    ensure_workers();
    // Chunk count is decided under the lock from the workers that really exist, so a
    // concurrent set_num_threads cannot make us wait for a worker that is not there.
    const std::size_t chunks =
        std::min({workers_.size() + 1, n / grain, static_cast<std::size_t>(kChunkMask)});
    if (chunks <= 1) {
      dispatch.unlock();
      fn(ctx, 0, n);
      return;
    }

    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    has_error_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    remaining_.store(chunks - 1, std::memory_order_relaxed);
    const std::uint64_t word = ((word_.load(std::memory_order_relaxed) >> kChunkBits) + 1)
                                   << kChunkBits |
                               static_cast<std::uint64_t>(chunks);
    // seq_cst store + seq_cst load of sleepers_ pairs with the worker's seq_cst increment
    // then predicate check: either we see the sleeper and notify, or it sees the new word.
    word_.store(word, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(sleep_mutex_); }
      sleep_cv_.notify_all();
    }

    run_chunk(0, chunks);  // the caller does chunk 0 itself

    // Wait for the workers; they finish within the same time scale as our own chunk, so
    // spinning is cheapest, with a yield fallback for oversubscribed machines.
    for (unsigned spins = 0; remaining_.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins < 4096) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    if (has_error_.load(std::memory_order_acquire)) {
      std::exception_ptr e = std::move(error_);
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  static constexpr unsigned kChunkBits = 16;  // at most 65535 chunks per job
  static constexpr std::uint64_t kChunkMask = (std::uint64_t{1} << kChunkBits) - 1;
  // Workers spin this long after their last job before sleeping.
  static constexpr std::chrono::microseconds kSpinTime{20};

  struct worker_slot {
    std::thread thread;
  };

  void run_chunk(std::size_t index, std::size_t chunks) noexcept {
    // Balanced split: the first n % chunks chunks get one extra element.
    const std::size_t base = n_ / chunks, extra = n_ % chunks;
    const std::size_t begin = index * base + std::min(index, extra);
    const std::size_t end = begin + base + (index < extra ? 1 : 0);
    const bool was = tls_in_parallel;
    tls_in_parallel = true;
    try {
      fn_(ctx_, begin, end);
    } catch (...) {
      if (!has_error_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
    }
    tls_in_parallel = was;
  }

  // `seen` is the job word at creation time, taken by the creator: reading it here instead
  // would miss a job published before this thread got scheduled.
  void worker_loop(std::size_t index, std::uint64_t seen) {
    tls_in_parallel = true;  // anything a worker calls runs inline
    for (;;) {
      std::uint64_t word = wait_for_change(seen);
      if (stop_.load(std::memory_order_acquire)) return;
      seen = word;
      // Workers beyond the chunk count sit this job out; they read nothing but word_, so
      // the caller may start the next job without waiting for them.
      const auto chunks = static_cast<std::size_t>(word & kChunkMask);
      if (index >= chunks) continue;
      run_chunk(index, chunks);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::uint64_t wait_for_change(std::uint64_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
    for (unsigned i = 1;; ++i) {
      const std::uint64_t w = word_.load(std::memory_order_acquire);
      if (w != seen || stop_.load(std::memory_order_relaxed)) return w;
      cpu_relax();
      if ((i & 63) == 0 && std::chrono::steady_clock::now() > deadline) break;
    }
    std::unique_lock<std::mutex> lk(sleep_mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t w = 0;
    sleep_cv_.wait(lk, [&] {
      w = word_.load(std::memory_order_seq_cst);
      return w != seen || stop_.load(std::memory_order_seq_cst);
    });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return w;
  }

  // Called with dispatch_mutex_ held, so no job is in flight.
  void ensure_workers() {
    const std::size_t want = requested_threads().load(std::memory_order_relaxed) - 1;
    if (workers_.size() == want) return;
    stop_workers();
    stop_.store(false, std::memory_order_relaxed);
    workers_.reserve(want);
    // Worker i runs chunk i (chunk 0 is the caller's).
    const std::uint64_t seen = word_.load(std::memory_order_relaxed);
    for (std::size_t i = workers_.size(); i < want; ++i) {
      workers_.push_back(std::make_unique<worker_slot>());
      workers_.back()->thread = std::thread([this, i, seen] { worker_loop(i + 1, seen); });
    }
  }

  void stop_workers() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lk(sleep_mutex_);
      stop_.store(true, std::memory_order_seq_cst);
    }
    sleep_cv_.notify_all();
    for (auto& w : workers_) w->thread.join();
    workers_.clear();
    stop_.store(false, std::memory_order_relaxed);
  }

  std::mutex dispatch_mutex_;
  std::vector<std::unique_ptr<worker_slot>> workers_;

  // Job description, written by the caller before publishing word_.
  task_fn fn_ = nullptr;
  void* ctx_ = nullptr;
  std::size_t n_ = 0;
  std::exception_ptr error_;
  std::atomic<bool> has_error_{false};

  alignas(64) std::atomic<std::uint64_t> word_{0};  // (sequence << 16) | chunk count
  alignas(64) std::atomic<std::size_t> remaining_{0};
  alignas(64) std::atomic<unsigned> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
};

inline thread_pool& pool() {
  // Function-local static: constructed on first use, destroyed (workers joined) at exit.
  static thread_pool p;
  return p;
}

}  // namespace detail

/// Number of threads parallel_for may use (caller included).
inline std::size_t num_threads() noexcept {
  return detail::requested_threads().load(std::memory_order_relaxed);
}

/// Sets the thread count (values below 1 are treated as 1). Takes effect at the next
/// parallel_for; the workers are restarted then.
inline void set_num_threads(std::size_t n) noexcept {
  detail::requested_threads().store(std::max<std::size_t>(n, 1), std::memory_order_relaxed);
}

/// True on a pool worker or inside a parallel_for chunk (where nested calls run inline).
inline bool in_parallel_region() noexcept {
  return detail::tls_in_parallel;
}

/// Calls f(begin, end) on disjoint contiguous chunks covering [0, n): at most num_threads()
/// chunks, each (except when inline) of at least `grain` elements, statically assigned.
/// Runs inline as f(0, n) when n <= grain, with one thread, or from inside another
/// parallel_for. The caller executes chunk 0. An exception thrown by f is rethrown here
/// (the first one, if several chunks throw) after every chunk has finished.
template <class F>
void parallel_for(std::size_t n, std::size_t grain, F&& f) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  if (n <= grain || num_threads() <= 1 || n / grain <= 1 || detail::tls_in_parallel ||
      detail::pool_destroyed.load(std::memory_order_acquire)) {
    f(std::size_t{0}, n);
    return;
  }
  using fn_type = std::remove_reference_t<F>;
  detail::pool().run(
      n, grain,
      [](void* ctx, std::size_t b, std::size_t e) { (*static_cast<fn_type*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(std::addressof(f))));
}

}  // namespace locus::backend::cpu
