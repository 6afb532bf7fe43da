// The pieces a Dataset is made of: an immutable graph of nodes, each of which opens an
// iterator for one pass over the data (as tf.data's datasets and iterators).
//
// A node is shared by every Dataset value that holds it and never changes, so copying a
// Dataset is cheap and a pass can be opened from any thread. An iterator belongs to one
// pass and is used by one thread at a time (a stage that runs work on threads of its own
// serialises its calls to the iterator it reads from).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>

namespace locus::data {

/// Cardinality of a dataset whose length is not known before a pass (a generator, a
/// filter of the data).
inline constexpr std::size_t unknown_cardinality = std::numeric_limits<std::size_t>::max() - 1;
/// Cardinality of a dataset that never ends (repeat() without a count).
inline constexpr std::size_t infinite_cardinality = std::numeric_limits<std::size_t>::max();

namespace detail {

/// What a pass is opened with.
struct pass_context {
  /// The pass number: seeds shuffles and elements' random keys, so each epoch differs and
  /// the same epoch is the same every time.
  std::uint64_t epoch = 0;
  /// When not 0, sparse labels are checked against [0, label_classes) where they are still
  /// on the host (at the transfer to a device), naming the record of a bad one.
  std::size_t label_classes = 0;
};

template <class E>
class element_iterator {
 public:
  virtual ~element_iterator() = default;
  /// The next element, or nothing at the end of the pass. Errors are thrown here, in the
  /// order of the elements.
  virtual std::optional<E> next() = 0;
};

template <class E>
class node {
 public:
  virtual ~node() = default;
  virtual std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const = 0;
  /// Elements per pass (unknown_cardinality, infinite_cardinality).
  virtual std::size_t cardinality() const = 0;
};

/// a + b, a * b and a / b on cardinalities, keeping "unknown" and "infinite".
inline std::size_t scale_cardinality(std::size_t n, std::size_t times) {
  if (n == unknown_cardinality || n == infinite_cardinality) return n;
  if (times == infinite_cardinality) return n == 0 ? 0 : infinite_cardinality;
  return n * times;
}

}  // namespace detail
}  // namespace locus::data
