// The stage behind locus::to<Dst>(dataset): every element moves to device Dst. From the
// host to an OpenCL device it goes through an upload_stream (pinned memory, a
// non-blocking write on the transfer queue, an event the main queue waits for), so with
// prefetch() the next batches cross the bus while the device computes. Sparse labels are
// checked here while still on the host, when the consumer (fit, evaluate) asks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "../../backend/opencl/upload_stream.hpp"
#include "../../counters.hpp"
#include "../../device.hpp"
#include "../../error.hpp"
#include "../../nn/losses.hpp"
#include "../../tensor.hpp"
#include "../../transfer.hpp"
#include "../example.hpp"
#include "node.hpp"

namespace locus::data::detail {

/// How many uploads may be in flight per pass (pinned slots of an upload_stream).
inline constexpr std::size_t upload_slots = 4;

template <AnyDevice Dst, AnyDevice Src, class T, class L>
class transfer_node final : public node<Example<Dst, T, L>> {
  using In = Example<Src, T, L>;
  using Out = Example<Dst, T, L>;

 public:
  explicit transfer_node(std::shared_ptr<const node<In>> in) : in_(std::move(in)) {}
  std::unique_ptr<element_iterator<Out>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(in_->open(ctx), ctx.label_classes);
  }
  std::size_t cardinality() const override { return in_->cardinality(); }

 private:
  static constexpr bool streamed = HostDevice<Src> && OpenCLDevice<Dst>;
  struct no_stream {
    explicit no_stream(std::size_t) {}
  };
  using stream_type =
      std::conditional_t<streamed, backend::opencl::upload_stream<Dst::index>, no_stream>;

  class iterator final : public element_iterator<Out> {
   public:
    iterator(std::unique_ptr<element_iterator<In>> in, std::size_t classes)
        : in_(std::move(in)), classes_(classes), stream_(upload_slots) {}
    std::optional<Out> next() override {
      std::optional<In> e = in_->next();
      if (!e) return std::nullopt;
      Out out;
      out.record = e->record;
      out.key = e->key;
      if constexpr (HostDevice<Src> && std::is_same_v<L, std::int32_t>) {
        if (classes_) {
          nn::check_labels(
              e->y.data(), e->y.size(), classes_,
              "locus::data (the element that starts at record " + std::to_string(e->record) + ")");
        }
      }
      if constexpr (streamed) {
        out.x = Tensor<T, Dst>(uninitialized, e->x.shape());
        out.y = Tensor<L, Dst>(uninitialized, e->y.shape());
        const typename stream_type::part parts[] = {
            {e->x.data(), out.x.storage().handle(), e->x.size() * sizeof(T)},
            {e->y.data(), out.y.storage().handle(), e->y.size() * sizeof(L)}};
        stream_.upload(parts, 2);
        auto& c = locus::detail::counters_of<Dst>();
        c.h2d_bytes += e->x.size() * sizeof(T) + e->y.size() * sizeof(L);
        c.h2d_calls += 2;
      } else {
        out.x = locus::to<Dst>(e->x);
        out.y = locus::to<Dst>(e->y);
      }
      return out;
    }

   private:
    std::unique_ptr<element_iterator<In>> in_;
    std::size_t classes_;
    stream_type stream_;
  };

  std::shared_ptr<const node<In>> in_;
};

}  // namespace locus::data::detail
