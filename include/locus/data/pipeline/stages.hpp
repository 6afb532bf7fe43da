// The stages between a source and its consumer: shuffle, batch, repeat, take and skip run
// in the thread that pulls from them; map and prefetch run work on threads of their own.
// Every stage reads its input through one iterator, one call at a time, and keeps the
// order of the elements (map may be told not to).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../../backend/backend.hpp"
#include "../../error.hpp"
#include "../../shape.hpp"
#include "../../tensor.hpp"
#include "../example.hpp"
#include "node.hpp"
#include "sources.hpp"

namespace locus::data::detail {

template <class E>
using node_ptr = std::shared_ptr<const node<E>>;

// ---- shuffle --------------------------------------------------------------------------------

/// tf.data's shuffle: a buffer of `size` elements; each output is a uniformly chosen element
/// of the buffer, replaced by the next input. A buffer as large as the pass gives a uniform
/// permutation; a smaller one shuffles within a sliding window.
template <class E>
class shuffle_node final : public node<E> {
 public:
  shuffle_node(node_ptr<E> in, std::size_t size, std::uint64_t seed, bool each_epoch)
      : in_(std::move(in)), size_(size), seed_(seed), each_epoch_(each_epoch) {
    if (size_ == 0)
      throw argument_error("locus::data::Dataset::shuffle: the buffer size must be positive");
  }
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    const std::uint64_t epoch = each_epoch_ ? ctx.epoch : 0;
    return std::make_unique<iterator>(in_->open(ctx), size_, mix_keys(seed_, epoch));
  }
  std::size_t cardinality() const override { return in_->cardinality(); }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(std::unique_ptr<element_iterator<E>> in, std::size_t size, std::uint64_t seed)
        : in_(std::move(in)), size_(size), rng_(seed) {}
    std::optional<E> next() override {
      while (!done_ && buf_.size() < size_) {
        std::optional<E> e = in_->next();
        if (!e) {
          done_ = true;
          break;
        }
        buf_.push_back(std::move(*e));
      }
      if (buf_.empty()) return std::nullopt;
      const std::size_t j = std::uniform_int_distribution<std::size_t>(0, buf_.size() - 1)(rng_);
      E out = std::move(buf_[j]);
      std::optional<E> e = done_ ? std::nullopt : in_->next();
      if (e) {
        buf_[j] = std::move(*e);
      } else {
        done_ = true;
        buf_[j] = std::move(buf_.back());
        buf_.pop_back();
      }
      return out;
    }

   private:
    std::unique_ptr<element_iterator<E>> in_;
    std::size_t size_;
    std::mt19937_64 rng_;
    std::vector<E> buf_;
    bool done_ = false;
  };

  node_ptr<E> in_;
  std::size_t size_;
  std::uint64_t seed_;
  bool each_epoch_;
};

// ---- batch ----------------------------------------------------------------------------------

/// Stacks `n` consecutive elements into one of leading dimension n (the last one smaller
/// unless drop_remainder). The batch keeps its first element's record and key.
template <class E>
class batch_node final : public node<E> {
  using Dev = typename E::device_type;

 public:
  batch_node(node_ptr<E> in, std::size_t n, bool drop_remainder)
      : in_(std::move(in)), n_(n), drop_(drop_remainder) {
    if (n_ == 0)
      throw argument_error("locus::data::Dataset::batch: the batch size must be positive");
  }
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(in_->open(ctx), n_, drop_);
  }
  std::size_t cardinality() const override {
    const std::size_t c = in_->cardinality();
    if (c == unknown_cardinality || c == infinite_cardinality) return c;
    return drop_ ? c / n_ : (c + n_ - 1) / n_;
  }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(std::unique_ptr<element_iterator<E>> in, std::size_t n, bool drop)
        : in_(std::move(in)), n_(n), drop_(drop) {}
    std::optional<E> next() override {
      std::vector<E> parts;
      parts.reserve(n_);
      while (parts.size() < n_) {
        std::optional<E> e = in_->next();
        if (!e) break;
        parts.push_back(std::move(*e));
      }
      if (parts.empty() || (drop_ && parts.size() < n_)) return std::nullopt;
      E out;
      out.x = stack(
          parts, [](E & e) -> auto& { return e.x; }, "features");
      out.y = stack(
          parts, [](E & e) -> auto& { return e.y; }, "labels");
      out.record = parts.front().record;
      out.key = parts.front().key;
      return out;
    }

   private:
    template <class Get>
    static auto stack(std::vector<E>& parts, Get get, const char* what) {
      using Tn = std::remove_cvref_t<decltype(get(parts.front()))>;
      const Shape one = get(parts.front()).shape();
      Shape shape{parts.size()};
      for (auto d : one) shape.push_back(d);
      Tn out(uninitialized, shape);
      const std::size_t row = one.size();
      for (std::size_t i = 0; i < parts.size(); ++i) {
        const Tn& t = get(parts[i]);
        if (t.shape() != one) {
          throw shape_error("locus::data::Dataset::batch: the " + std::string(what) +
                            " of record " + std::to_string(parts[i].record) + " have shape " +
                            to_string(t.shape()) + ", those of record " +
                            std::to_string(parts.front().record) + " " + to_string(one) +
                            "; a batch stacks elements of one shape");
        }
        backend_t<Dev>::copy(t.storage(), 0, out.storage(), i * row, row);
      }
      return out;
    }
    std::unique_ptr<element_iterator<E>> in_;
    std::size_t n_;
    bool drop_;
  };

  node_ptr<E> in_;
  std::size_t n_;
  bool drop_;
};

// ---- repeat, take, skip ---------------------------------------------------------------------

/// `count` passes over the input (infinite_cardinality: without end). Pass r of epoch e
/// opens the input as its own epoch, so each repetition is shuffled anew.
template <class E>
class repeat_node final : public node<E> {
 public:
  repeat_node(node_ptr<E> in, std::size_t count) : in_(std::move(in)), count_(count) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(*this, ctx);
  }
  std::size_t cardinality() const override { return scale_cardinality(in_->cardinality(), count_); }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(const repeat_node& n, const pass_context& ctx) : n_(n), ctx_(ctx) {}
    std::optional<E> next() override {
      while (r_ < n_.count_) {
        if (!cur_) {
          pass_context inner = ctx_;
          inner.epoch = r_ == 0 ? ctx_.epoch : mix_keys(ctx_.epoch, r_);
          cur_ = n_.in_->open(inner);
          empty_ = true;
        }
        if (std::optional<E> e = cur_->next()) {
          empty_ = false;
          return e;
        }
        cur_.reset();
        ++r_;
        if (empty_) break;  // an empty input repeated forever is still empty
      }
      return std::nullopt;
    }

   private:
    const repeat_node& n_;
    pass_context ctx_;
    std::unique_ptr<element_iterator<E>> cur_;
    std::size_t r_ = 0;
    bool empty_ = true;
  };

  node_ptr<E> in_;
  std::size_t count_;
};

/// The first `take` elements after skipping `skip` (take() and skip()).
template <class E>
class slice_node final : public node<E> {
 public:
  slice_node(node_ptr<E> in, std::size_t skip, std::size_t take)
      : in_(std::move(in)), skip_(skip), take_(take) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(in_->open(ctx), skip_, take_);
  }
  std::size_t cardinality() const override {
    const std::size_t c = in_->cardinality();
    if (c == unknown_cardinality) return take_ == 0 ? 0 : c;
    if (c == infinite_cardinality) return take_ == infinite_cardinality ? c : take_;
    const std::size_t left = c > skip_ ? c - skip_ : 0;
    return std::min(left, take_);
  }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(std::unique_ptr<element_iterator<E>> in, std::size_t skip, std::size_t take)
        : in_(std::move(in)), skip_(skip), take_(take) {}
    std::optional<E> next() override {
      for (; skip_ > 0; --skip_) {
        if (!in_->next()) return std::nullopt;
      }
      if (taken_ == take_) return std::nullopt;
      std::optional<E> e = in_->next();
      if (e) ++taken_;
      return e;
    }

   private:
    std::unique_ptr<element_iterator<E>> in_;
    std::size_t skip_, take_, taken_ = 0;
  };

  node_ptr<E> in_;
  std::size_t skip_, take_;
};

// ---- shard ----------------------------------------------------------------------------------

/// tf.data's shard(n, index): the elements whose position in the pass is index mod n. Every
/// shard reads the whole input (and drops the rest), so the n shards of one pass, shuffled
/// with one seed, partition it exactly: data-parallel replicas and MPI ranks each take one.
template <class E>
class shard_node final : public node<E> {
 public:
  shard_node(node_ptr<E> in, std::size_t count, std::size_t index)
      : in_(std::move(in)), count_(count), index_(index) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(in_->open(ctx), count_, index_);
  }
  std::size_t cardinality() const override {
    const std::size_t c = in_->cardinality();
    if (c == unknown_cardinality || c == infinite_cardinality) return c;
    return c / count_ + (index_ < c % count_ ? 1 : 0);
  }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(std::unique_ptr<element_iterator<E>> in, std::size_t count, std::size_t index)
        : in_(std::move(in)), count_(count), skip_(index) {}
    std::optional<E> next() override {
      for (; skip_ > 0; --skip_) {
        if (!in_->next()) return std::nullopt;
      }
      std::optional<E> e = in_->next();
      if (e) skip_ = count_ - 1;
      return e;
    }

   private:
    std::unique_ptr<element_iterator<E>> in_;
    std::size_t count_, skip_;
  };

  node_ptr<E> in_;
  std::size_t count_, index_;
};

// ---- cache ----------------------------------------------------------------------------------

/// tf.data's cache(): the first pass that reaches its end keeps a copy of every element in
/// memory, and later passes replay the copies instead of reading the input again, so the
/// disk reads, decoding and maps before it run once. A pass abandoned before its end keeps
/// nothing. A replayed element gets the random key a source gives its record in the new
/// epoch, so random augmentation after the cache still differs between epochs.
template <class E>
class cache_node final : public node<E> {
 public:
  explicit cache_node(node_ptr<E> in) : in_(std::move(in)), store_(std::make_shared<store>()) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    {
      std::lock_guard lk(store_->mutex);
      if (store_->elements) return std::make_unique<replay_iterator>(store_->elements, ctx.epoch);
    }
    return std::make_unique<filling_iterator>(in_->open(ctx), store_);
  }
  std::size_t cardinality() const override { return in_->cardinality(); }

 private:
  // Shared by every copy of the dataset, filled once.
  struct store {
    std::mutex mutex;
    std::shared_ptr<const std::vector<E>> elements;  // guarded by mutex
  };

  class filling_iterator final : public element_iterator<E> {
   public:
    filling_iterator(std::unique_ptr<element_iterator<E>> in, std::shared_ptr<store> s)
        : in_(std::move(in)), store_(std::move(s)) {}
    std::optional<E> next() override {
      std::optional<E> e = in_->next();
      if (e) {
        kept_.push_back(*e);
      } else if (!published_) {
        published_ = true;
        auto all = std::make_shared<const std::vector<E>>(std::move(kept_));
        std::lock_guard lk(store_->mutex);
        if (!store_->elements) store_->elements = std::move(all);
      }
      return e;
    }

   private:
    std::unique_ptr<element_iterator<E>> in_;
    std::shared_ptr<store> store_;
    std::vector<E> kept_;
    bool published_ = false;
  };

  class replay_iterator final : public element_iterator<E> {
   public:
    replay_iterator(std::shared_ptr<const std::vector<E>> elements, std::uint64_t epoch)
        : elements_(std::move(elements)), epoch_(epoch) {}
    std::optional<E> next() override {
      if (i_ == elements_->size()) return std::nullopt;
      E e = (*elements_)[i_++];
      e.key = mix_keys(epoch_, e.record);
      return e;
    }

   private:
    std::shared_ptr<const std::vector<E>> elements_;
    std::uint64_t epoch_;
    std::size_t i_ = 0;
  };

  node_ptr<E> in_;
  std::shared_ptr<store> store_;
};

// ---- map ------------------------------------------------------------------------------------

/// num_parallel_calls = autotune: one thread per hardware thread (tf.data.AUTOTUNE).
inline constexpr std::size_t autotune = std::numeric_limits<std::size_t>::max();

/// How map runs its function.
struct MapOptions {
  /// Threads calling the function at once; 0 calls it in the thread that pulls the
  /// elements. Every element still has one call, so results do not depend on it.
  std::size_t num_parallel_calls = 0;
  /// Elements come out in input order (true) or as soon as each is done (false).
  bool deterministic = true;
};

/// f(element) -> element, on the pipeline's own threads with several elements in flight.
/// An exception thrown by f is a record_error naming the element's record (the original
/// nested), raised at that element's place in the output order.
template <class E>
class map_node final : public node<E> {
 public:
  using function = std::function<E(E)>;

  map_node(node_ptr<E> in, function f, MapOptions o) : in_(std::move(in)), f_(std::move(f)), o_(o) {
    if (o_.num_parallel_calls == autotune)
      o_.num_parallel_calls = std::max(1u, std::thread::hardware_concurrency());
  }
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    if (o_.num_parallel_calls == 0) return std::make_unique<serial_iterator>(in_->open(ctx), f_);
    return std::make_unique<parallel_iterator>(in_->open(ctx), f_, o_);
  }
  std::size_t cardinality() const override { return in_->cardinality(); }

 private:
  static E apply(const function& f, E e) {
    const std::uint64_t record = e.record, key = e.key;
    E out = call_user([&] { return f(std::move(e)); }, record, "map function");
    out.record = record;
    out.key = key;
    return out;
  }

  class serial_iterator final : public element_iterator<E> {
   public:
    serial_iterator(std::unique_ptr<element_iterator<E>> in, const function& f)
        : in_(std::move(in)), f_(f) {}
    std::optional<E> next() override {
      std::optional<E> e = in_->next();
      if (!e) return e;
      return apply(f_, std::move(*e));
    }

   private:
    std::unique_ptr<element_iterator<E>> in_;
    const function& f_;
  };

  // Workers take a sequence number and an input element (one at a time, under in_mutex_),
  // apply f outside every lock, and file the result (or the exception) under its number;
  // next() hands results out in number order (or in completion order). At most 2 results
  // per worker are in flight, so memory stays bounded when the consumer is slow.
  class parallel_iterator final : public element_iterator<E> {
   public:
    parallel_iterator(std::unique_ptr<element_iterator<E>> in, const function& f, MapOptions o)
        : in_(std::move(in)),
          f_(f),
          ordered_(o.deterministic),
          capacity_(2 * o.num_parallel_calls) {
      workers_.reserve(o.num_parallel_calls);
      try {
        for (std::size_t i = 0; i < o.num_parallel_calls; ++i)
          workers_.emplace_back([this] { work(); });
      } catch (...) {
        stop();
        throw;
      }
    }
    ~parallel_iterator() override { stop(); }

    std::optional<E> next() override {
      std::unique_lock lk(mutex_);
      for (;;) {
        auto it = ordered_ ? results_.find(emit_) : results_.begin();
        if (it != results_.end()) {
          result r = std::move(it->second);
          results_.erase(it);
          ++emit_;
          --in_flight_;
          lk.unlock();
          space_.notify_one();
          if (r.error) std::rethrow_exception(r.error);
          return std::move(r.element);
        }
        if (input_done_ && in_flight_ == 0) return std::nullopt;
        ready_.wait(lk);
      }
    }

   private:
    struct result {
      std::optional<E> element;
      std::exception_ptr error;
    };

    void work() {
      for (;;) {
        {
          std::unique_lock lk(mutex_);
          space_.wait(lk, [&] { return stopping_ || input_done_ || in_flight_ < capacity_; });
          if (stopping_ || input_done_) return;
          ++in_flight_;
        }
        std::uint64_t seq = 0;
        result r;
        bool last = false;
        {
          std::lock_guard in_lk(in_mutex_);
          seq = taken_++;
          try {
            std::optional<E> e;
            if (!input_ended_) e = in_->next();
            if (e) {
              r.element = std::move(e);
            } else {
              input_ended_ = true;
              last = true;
            }
          } catch (...) {
            r.error = std::current_exception();
            input_ended_ = true;  // an input that failed is not read again
          }
        }
        if (last) {
          std::lock_guard lk(mutex_);
          --in_flight_;
          input_done_ = true;
          ready_.notify_all();
          space_.notify_all();
          return;
        }
        if (!r.error) {
          try {
            r.element = apply(f_, std::move(*r.element));
          } catch (...) {
            r.element.reset();
            r.error = std::current_exception();
          }
        }
        {
          std::lock_guard lk(mutex_);
          if (r.error) input_done_ = true;  // no new work after a failure
          results_.emplace(seq, std::move(r));
        }
        ready_.notify_all();
      }
    }

    void stop() noexcept {
      {
        std::lock_guard lk(mutex_);
        stopping_ = true;
      }
      space_.notify_all();
      for (auto& t : workers_) {
        if (t.joinable()) t.join();
      }
    }

    std::unique_ptr<element_iterator<E>> in_;
    const function& f_;
    const bool ordered_;
    const std::size_t capacity_;
    std::mutex mutex_, in_mutex_;
    std::condition_variable ready_, space_;
    std::map<std::uint64_t, result> results_;
    std::uint64_t taken_ = 0;   // guarded by in_mutex_
    bool input_ended_ = false;  // guarded by in_mutex_
    std::uint64_t emit_ = 0;
    std::size_t in_flight_ = 0;
    bool input_done_ = false, stopping_ = false;
    std::vector<std::thread> workers_;
  };

  node_ptr<E> in_;
  function f_;
  MapOptions o_;
};

// ---- prefetch -------------------------------------------------------------------------------

/// Up to `depth` elements made ahead by a background thread while the consumer works. An
/// error is raised in order, after the elements made before it; the thread is joined
/// when the pass ends or is abandoned.
template <class E>
class prefetch_node final : public node<E> {
 public:
  prefetch_node(node_ptr<E> in, std::size_t depth) : in_(std::move(in)), depth_(depth) {
    if (depth_ == 0)
      throw argument_error("locus::data::Dataset::prefetch: the depth must be positive");
  }
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(in_->open(ctx), depth_);
  }
  std::size_t cardinality() const override { return in_->cardinality(); }

 private:
  class iterator final : public element_iterator<E> {
   public:
    iterator(std::unique_ptr<element_iterator<E>> in, std::size_t depth)
        : in_(std::move(in)), depth_(depth), thread_([this] { produce(); }) {}
    ~iterator() override {
      {
        std::lock_guard lk(mutex_);
        stopping_ = true;
      }
      space_.notify_all();
      thread_.join();
    }
    std::optional<E> next() override {
      std::unique_lock lk(mutex_);
      ready_.wait(lk, [&] { return !queue_.empty() || done_; });
      if (queue_.empty()) {
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
        return std::nullopt;
      }
      E e = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      space_.notify_one();
      return e;
    }

   private:
    void produce() {
      try {
        for (;;) {
          {
            std::unique_lock lk(mutex_);
            space_.wait(lk, [&] { return stopping_ || queue_.size() < depth_; });
            if (stopping_) break;
          }
          std::optional<E> e = in_->next();
          std::lock_guard lk(mutex_);
          if (!e) break;
          queue_.push_back(std::move(*e));
          ready_.notify_one();
        }
      } catch (...) {
        std::lock_guard lk(mutex_);
        error_ = std::current_exception();
      }
      std::lock_guard lk(mutex_);
      done_ = true;
      ready_.notify_all();
    }

    std::unique_ptr<element_iterator<E>> in_;
    const std::size_t depth_;
    std::mutex mutex_;
    std::condition_variable ready_, space_;
    std::deque<E> queue_;
    std::exception_ptr error_;
    bool done_ = false, stopping_ = false;
    std::thread thread_;  // last: started once everything it uses exists
  };

  node_ptr<E> in_;
  std::size_t depth_;
};

}  // namespace locus::data::detail
