// Dataset<Dev, T, L>: an input pipeline in the spirit of tf.data, typed by the device its
// elements arrive on.
//
//   auto train = data::Dataset<>::from_idx(images, labels)       // streamed from disk
//                    .cache()                                    // decoded once, kept
//                    .shuffle(60000, /*seed=*/1)                 // reshuffled every epoch
//                    .batch(256)
//                    .map(data::Normalize(0.286, 0.353), {.num_parallel_calls = 2});
//   model.fit(locus::to<Device<GPU>>(train).prefetch(2), {.epochs = 5});
//
// A Dataset is an immutable description (copies share it); each pass (epoch) opens fresh
// iterators, so the same dataset can be iterated again and from several threads. Sources
// live on the host (Dataset<Device<CPU>>); locus::to<Dev>(ds) is the one way to another
// device, and a model accepts only datasets of its own device (a compile error otherwise).
// prefetch(k) runs everything before it on a background thread, k elements ahead: after
// to<Device<GPU, N>>, that includes the non-blocking upload of the next batches.
//
// Determinism: shuffles are seeded by (seed, epoch), elements' random keys by (epoch,
// record), and map keeps the input order unless told otherwise, so the same seed gives the
// same batches in the same order whatever the number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "../detail/contract.hpp"
#include "../device.hpp"
#include "../tensor.hpp"
#include "example.hpp"
#include "pipeline/node.hpp"
#include "pipeline/sources.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/transfer.hpp"

namespace locus::data {

using detail::autotune;
using detail::MapOptions;

template <AnyDevice Dev = Device<CPU>, Element T = float, Element L = std::int32_t>
class Dataset {
 public:
  using device_type = Dev;
  using value_type = T;
  using label_type = L;
  using element_type = Example<Dev, T, L>;

  // ---- sources (on the host) ------------------------------------------------------------------

  /// One element per row of x and y (the tensors are shared, not copied).
  static Dataset from_tensors(Tensor<T, Device<CPU>> x,
                              Tensor<L, Device<CPU>> y) requires HostDevice<Dev> {
    return Dataset(std::make_shared<detail::tensor_source<T, L>>(std::move(x), std::move(y)));
  }

  /// Images and labels streamed from two IDX files (plain or gzip), one block of records at
  /// a time: images [N, rows, cols] become [rows, cols, 1] (NHWC) times `scale`, labels
  /// [N] become scalars. Headers are checked now; a truncated or corrupt record is a
  /// format_error naming the file and the record when the pass reaches it.
  static Dataset from_idx(const std::filesystem::path& images, const std::filesystem::path& labels,
                          T scale = T(1) / T(255)) requires HostDevice<Dev> {
    return Dataset(std::make_shared<detail::idx_stream_source<T, L>>(images, labels, scale));
  }

  /// Element i = f(i) for i in [0, count); f returns an Example<Device<CPU>, T, L> (its
  /// record and key are set by the dataset). What f throws becomes a record_error.
  template <class F>
  requires HostDevice<Dev> && std::is_invocable_r_v<element_type, const F&, std::size_t>
  static Dataset from_function(std::size_t count, F f) {
    return Dataset(std::make_shared<detail::function_source<T, L, F>>(count, std::move(f)));
  }

  /// make() is called at the start of every pass and returns a generator: a callable
  /// returning std::optional<Example<Device<CPU>, T, L>>, empty at the end of the pass.
  template <class Make>
  requires HostDevice<Dev>
  static Dataset from_generator(Make make) {
    return Dataset(std::make_shared<detail::generator_source<T, L, Make>>(std::move(make)));
  }

  // ---- transformations (each returns a new dataset; this one is unchanged) --------------------

  /// f(Example<Dev, T, L>) -> Example<Dev, T, L> on every element. With
  /// num_parallel_calls > 0, that many threads of the pipeline call f, several elements in
  /// flight; outputs keep the input order unless deterministic is false. f must be safe to
  /// call from several threads at once (the augmentations of augment.hpp are).
  template <class F>
  requires std::is_invocable_r_v<element_type, const F&, element_type> Dataset
  map(F f, MapOptions o = {})
  const {
    return then<detail::map_node<element_type>>(
        typename detail::map_node<element_type>::function(std::move(f)), o);
  }
  /// A buffer of `buffer_size` elements shuffled with `seed` (anew each epoch unless
  /// reshuffle_each_iteration is false); as large as the dataset, a full permutation.
  Dataset shuffle(std::size_t buffer_size, std::uint64_t seed = 0,
                  bool reshuffle_each_iteration = true) const {
    return then<detail::shuffle_node<element_type>>(buffer_size, seed, reshuffle_each_iteration);
  }
  /// Consecutive elements stacked along a new first axis; the last batch is smaller unless
  /// drop_remainder.
  Dataset batch(std::size_t batch_size, bool drop_remainder = false) const {
    return then<detail::batch_node<element_type>>(batch_size, drop_remainder);
  }
  /// `count` passes (without a count: forever), each shuffled anew.
  Dataset repeat(std::size_t count = infinite_cardinality) const {
    return then<detail::repeat_node<element_type>>(count);
  }
  /// The first `count` elements.
  Dataset take(std::size_t count) const { return then<detail::slice_node<element_type>>(0, count); }
  /// All but the first `count` elements.
  Dataset skip(std::size_t count) const {
    return then<detail::slice_node<element_type>>(count, infinite_cardinality);
  }
  /// Every `count`-th element, starting at `index` (tf.data's shard): shard i of n for
  /// replica or rank i. Shard before batching, after a seeded shuffle, so that the shards of
  /// one pass partition it.
  Dataset shard(std::size_t count, std::size_t index) const {
    if (count == 0 || index >= count) {
      throw argument_error("locus::data::Dataset::shard: index " + std::to_string(index) + " of " +
                           std::to_string(count) + " shards");
    }
    return then<detail::shard_node<element_type>>(count, index);
  }
  /// Keeps the elements of the first whole pass in memory and replays them in later passes
  /// (the reads, decoding and maps before it run once; memory grows by the whole dataset).
  /// Put it after the expensive stages and before shuffle.
  Dataset cache() const { return then<detail::cache_node<element_type>>(); }
  /// Everything before this point runs on a background thread, up to `depth` elements
  /// ahead of the consumer (after to<Device<GPU, N>>, the uploads too).
  Dataset prefetch(std::size_t depth = 2) const {
    return then<detail::prefetch_node<element_type>>(depth);
  }

  /// Elements per pass: a count, unknown_cardinality or infinite_cardinality.
  std::size_t cardinality() const { return node_->cardinality(); }

  // ---- iteration ------------------------------------------------------------------------------

  /// One pass over the dataset. Destroying it stops the pipeline's threads (joined).
  class pass {
   public:
    /// The next element, or nothing at the end of the pass; errors of the pipeline are
    /// thrown here, in element order.
    std::optional<element_type> next() { return it_->next(); }

    class iterator {
     public:
      using value_type = element_type;
      using difference_type = std::ptrdiff_t;
      iterator() = default;
      explicit iterator(pass* p) : p_(p) { ++*this; }
      element_type& operator*() const { return *cur_; }
      element_type* operator->() const { return &*cur_; }
      iterator& operator++() {
        cur_ = p_->next();
        if (!cur_) p_ = nullptr;
        return *this;
      }
      void operator++(int) { ++*this; }
      bool operator==(std::default_sentinel_t) const { return p_ == nullptr; }

     private:
      pass* p_ = nullptr;
      mutable std::optional<element_type> cur_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

   private:
    friend class Dataset;
    pass(std::shared_ptr<const detail::node<element_type>> n, const detail::pass_context& ctx)
        : node_(std::move(n)), it_(node_->open(ctx)) {}
    std::shared_ptr<const detail::node<element_type>> node_;  // outlives the iterators
    std::unique_ptr<detail::element_iterator<element_type>> it_;
  };

  /// A pass for epoch `epoch` (which seeds the shuffles and the elements' random keys).
  /// `label_classes` > 0 checks sparse labels against [0, label_classes) where they are
  /// still on the host (fit and evaluate pass the model's class count).
  pass open(std::uint64_t epoch = 0, std::size_t label_classes = 0) const {
    return pass(node_, detail::pass_context{epoch, label_classes});
  }

  /// The underlying graph (locus::to<Dev>(dataset) builds on it).
  const std::shared_ptr<const detail::node<element_type>>& graph() const { return node_; }
  explicit Dataset(std::shared_ptr<const detail::node<element_type>> n) : node_(std::move(n)) {}

 private:
  template <class Node, class... Args>
  Dataset then(Args&&... args) const {
    return Dataset(std::make_shared<Node>(node_, std::forward<Args>(args)...));
  }

  std::shared_ptr<const detail::node<element_type>> node_;
};

}  // namespace locus::data

namespace locus {

/// The dataset with every element moved to device Dst: the explicit way to retarget a
/// pipeline (from the host to an OpenCL device, non-blocking through pinned memory).
template <AnyDevice Dst, AnyDevice Src, class T, class L>
data::Dataset<Dst, T, L> to(const data::Dataset<Src, T, L>& ds) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return ds;
  } else {
    return data::Dataset<Dst, T, L>(
        std::make_shared<data::detail::transfer_node<Dst, Src, T, L>>(ds.graph()));
  }
}

}  // namespace locus
