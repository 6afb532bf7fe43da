// Ring all-reduce over the devices of in-process replicas (the algorithm of Baidu's ring,
// Horovod and NCCL), on locus's typed tensors.
//
// Each replica holds the same list of tensors (its gradients, say) on its own device. Their
// concatenation is cut into N chunks. In N-1 reduce-scatter steps replica i adds the chunk
// its predecessor passes on into its own copy; then replica i holds the finished sum of one
// chunk. In N-1 all-gather steps the finished chunks travel once more round the ring,
// copied, not added. Every replica sends 2(N-1) chunks, 2(N-1)/N of the list's bytes,
// whatever N is; every chunk is summed on one device and copied verbatim to the others, so
// the replicas end with bitwise equal results. The copies are locus::to<> and so counted as
// device-to-device transfers (counters.hpp), which is how the tests and the benchmark
// measure the volume.
#pragma once

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "../device.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"

namespace locus::parallel {

/// Thrown in a replica's thread when another replica failed: it stops waiting for it.
struct replica_aborted : error {
  replica_aborted() : error("locus: another replica failed; this one stopped with it") {}
};

/// A barrier of N threads that any of them can break (std::barrier cannot be): once abort()
/// is called, every waiting and every later arrive_and_wait() throws replica_aborted, so no
/// replica waits forever for one that has failed.
class abortable_barrier {
 public:
  explicit abortable_barrier(std::size_t n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock lock(m_);
    if (aborted_) throw replica_aborted();
    const std::size_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation) throw replica_aborted();
  }
  void abort() {
    std::lock_guard lock(m_);
    aborted_ = true;
    cv_.notify_all();
  }
  void reset() {
    std::lock_guard lock(m_);
    aborted_ = false;
    arrived_ = 0;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::size_t n_, arrived_ = 0, generation_ = 0;
  bool aborted_ = false;
};

/// Where the elements of a list of tensors fall in n near-equal chunks of their
/// concatenation (chunk j is [bounds[j], bounds[j+1])).
class chunk_plan {
 public:
  chunk_plan(std::vector<std::size_t> sizes, std::size_t n) : sizes_(std::move(sizes)) {
    for (std::size_t s : sizes_) total_ += s;
    for (std::size_t j = 0; j <= n; ++j) bounds_.push_back(total_ * j / n);
  }
  std::size_t total() const { return total_; }
  std::size_t chunk_size(std::size_t j) const { return bounds_[j + 1] - bounds_[j]; }
  std::size_t chunks() const { return bounds_.size() - 1; }
  /// f(tensor k, offset in tensor k, offset in chunk j, count) for each piece of chunk j.
  template <class F>
  void for_each_piece(std::size_t j, F&& f) const {
    std::size_t start = 0;
    for (std::size_t k = 0; k < sizes_.size(); ++k) {
      const std::size_t lo = std::max(start, bounds_[j]);
      const std::size_t hi = std::min(start + sizes_[k], bounds_[j + 1]);
      if (lo < hi) f(k, lo - start, lo - bounds_[j], hi - lo);
      start += sizes_[k];
    }
  }

 private:
  std::vector<std::size_t> sizes_;
  std::size_t total_ = 0;
  std::vector<std::size_t> bounds_;
};

template <class T, AnyDevice Dev>
std::vector<std::size_t> sizes_of(const std::vector<Tensor<T, Dev>*>& ts) {
  std::vector<std::size_t> s;
  for (const auto* t : ts) s.push_back(t->size());
  return s;
}

/// The tensors' elements cut into the plan's chunks (on their device), each times `scale`.
template <class T, AnyDevice Dev>
void cut_into_chunks(const chunk_plan& plan, const std::vector<Tensor<T, Dev>*>& ts, T scale,
                     std::vector<Tensor<T, Dev>>& chunks) {
  chunks.clear();
  for (std::size_t j = 0; j < plan.chunks(); ++j) {
    Tensor<T, Dev> c(uninitialized, Shape{plan.chunk_size(j)});
    plan.for_each_piece(j, [&](std::size_t k, std::size_t from, std::size_t to_off, std::size_t n) {
      backend_t<Dev>::copy(ts[k]->storage(), from, c.storage(), to_off, n);
    });
    if (scale != T(1)) c *= scale;
    chunks.push_back(std::move(c));
  }
}

/// The chunks' elements back into the tensors they were cut from.
template <class T, AnyDevice Dev>
void paste_chunks(const chunk_plan& plan, const std::vector<Tensor<T, Dev>>& chunks,
                  const std::vector<Tensor<T, Dev>*>& ts) {
  for (std::size_t j = 0; j < plan.chunks(); ++j) {
    plan.for_each_piece(j, [&](std::size_t k, std::size_t from, std::size_t to_off, std::size_t n) {
      backend_t<Dev>::copy(chunks[j].storage(), to_off, ts[k]->storage(), from, n);
    });
  }
}

/// The ring of replicas on Devs... (replica i on the i-th device; its successor is i+1 mod N).
/// Either every replica's thread calls run<I>() with its own tensors at once (the steps
/// meet at a barrier), or one thread calls run_all() with everyone's.
template <class T, AnyDevice... Devs>
class ring_allreduce {
 public:
  static constexpr std::size_t replicas = sizeof...(Devs);
  template <std::size_t I>
  using device = std::tuple_element_t<I, std::tuple<Devs...>>;

  ring_allreduce() : barrier_(replicas) {}

  /// Replica I's part: its tensors become the sum over the replicas of each one's tensors
  /// times its scale. The lists must agree in length and sizes on every replica.
  template <std::size_t I>
  void run(const std::vector<Tensor<T, device<I>>*>& ts, T scale) {
    const chunk_plan plan(sizes_of(ts), replicas);
    cut_into_chunks(plan, ts, scale, std::get<I>(chunks_));
    barrier_.arrive_and_wait();
    for (std::size_t s = 0; s + 1 < replicas; ++s) {
      reduce_step<I>(s);
      barrier_.arrive_and_wait();
    }
    for (std::size_t s = 0; s + 1 < replicas; ++s) {
      gather_step<I>(s);
      barrier_.arrive_and_wait();
    }
    paste_chunks(plan, std::get<I>(chunks_), ts);
  }

  /// Every replica's part from one thread.
  void run_all(const std::tuple<std::vector<Tensor<T, Devs>*>...>& ts,
               const std::array<T, replicas>& scales) {
    const chunk_plan plan(sizes_of(std::get<0>(ts)), replicas);
    each([&]<std::size_t I>() {
      cut_into_chunks(plan, std::get<I>(ts), scales[I], std::get<I>(chunks_));
    });
    for (std::size_t s = 0; s + 1 < replicas; ++s)
      each([&]<std::size_t I>() { reduce_step<I>(s); });
    for (std::size_t s = 0; s + 1 < replicas; ++s)
      each([&]<std::size_t I>() { gather_step<I>(s); });
    each([&]<std::size_t I>() { paste_chunks(plan, std::get<I>(chunks_), std::get<I>(ts)); });
  }

  /// Every waiting replica (and every later one) throws replica_aborted.
  void abort() { barrier_.abort(); }
  /// A new round after an abort.
  void reset() { barrier_.reset(); }
  /// The barrier itself, for the replicas' other meeting points.
  abortable_barrier& barrier() { return barrier_; }

  /// Bytes each replica sends per run for `elements` elements: 2(N-1)/N of them, chunk by
  /// chunk (the ring's bound; chunks differ by at most one element).
  static std::size_t bytes_per_replica(std::size_t elements) {
    return 2 * (replicas - 1) * ((elements + replicas - 1) / replicas) * sizeof(T);
  }

 private:
  template <class F>
  static void each(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f.template operator()<I>(), ...);
    }
    (std::index_sequence_for<Devs...>{});
  }

  // Step s of reduce-scatter: replica I adds in the chunk its predecessor has summed over
  // s + 1 replicas (chunk I - 1 - s), making it s + 2 replicas' sum.
  template <std::size_t I>
  void reduce_step(std::size_t s) {
    constexpr std::size_t P = (I + replicas - 1) % replicas;
    const std::size_t c = (I + 2 * replicas - 1 - s) % replicas;
    std::get<I>(chunks_)[c] += locus::to<device<I>>(std::get<P>(chunks_)[c]);
  }
  // Step s of all-gather: replica I copies the finished chunk I - s from its predecessor.
  template <std::size_t I>
  void gather_step(std::size_t s) {
    constexpr std::size_t P = (I + replicas - 1) % replicas;
    const std::size_t c = (I + replicas - s) % replicas;
    std::get<I>(chunks_)[c] = locus::to<device<I>>(std::get<P>(chunks_)[c]);
  }

  std::tuple<std::vector<Tensor<T, Devs>>...> chunks_;
  abortable_barrier barrier_;
};

}  // namespace locus::parallel
