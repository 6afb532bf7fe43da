// Where a Dataset's elements come from, on the host: tensors in memory, IDX files streamed
// from disk a block of records at a time, and a user's function of the record index or
// generator. Each source gives every element its record index and random key.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../device.hpp"
#include "../../error.hpp"
#include "../../shape.hpp"
#include "../../tensor.hpp"
#include "../example.hpp"
#include "../idx.hpp"
#include "node.hpp"

namespace locus::data::detail {

using host = Device<CPU>;

/// Runs a user's function for `record`, turning what it throws into a record_error that
/// names the record and nests the original.
template <class F>
decltype(auto) call_user(F&& f, std::uint64_t record, const char* what) {
  try {
    return std::forward<F>(f)();
  } catch (...) {
    std::string msg =
        "locus::data: the " + std::string(what) + " failed on record " + std::to_string(record);
    try {
      throw;
    } catch (const std::exception& e) {
      msg += ": " + std::string(e.what());
    } catch (...) {
      msg += " (with an exception that is not a std::exception)";
    }
    std::throw_with_nested(record_error(msg, record));
  }
}

/// A source's iterator: next() numbers what produce(record) makes for records 0, 1, ... of
/// the pass, setting each element's record and its random key, mix_keys(epoch, record).
template <class E>
class numbered_iterator : public element_iterator<E> {
 public:
  explicit numbered_iterator(std::uint64_t epoch) : epoch_(epoch) {}
  std::optional<E> next() final {
    std::optional<E> e = produce(record_);
    if (!e) return e;
    e->record = record_;
    e->key = mix_keys(epoch_, record_);
    ++record_;
    return e;
  }

 protected:
  /// The element of `record`, or nothing after the last.
  virtual std::optional<E> produce(std::uint64_t record) = 0;

 private:
  std::uint64_t epoch_;
  std::uint64_t record_ = 0;
};

/// The rows of two host tensors, one element per row.
template <class T, class L>
class tensor_source final : public node<Example<host, T, L>> {
  using E = Example<host, T, L>;

 public:
  tensor_source(Tensor<T, host> x, Tensor<L, host> y) : x_(std::move(x)), y_(std::move(y)) {
    if (x_.rank() == 0 || y_.rank() == 0 || x_.shape()[0] != y_.shape()[0]) {
      throw shape_error("locus::data::Dataset::from_tensors: features of shape " +
                        to_string(x_.shape()) + " and labels of shape " + to_string(y_.shape()) +
                        " do not have the same number of rows");
    }
  }

  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(*this, ctx.epoch);
  }
  std::size_t cardinality() const override { return x_.shape()[0]; }

 private:
  class iterator final : public numbered_iterator<E> {
   public:
    iterator(const tensor_source& s, std::uint64_t epoch) : numbered_iterator<E>(epoch), s_(s) {}

   private:
    std::optional<E> produce(std::uint64_t i) override {
      if (i == s_.x_.shape()[0]) return std::nullopt;
      return E{row(s_.x_, i), row(s_.y_, i)};
    }
    template <class U>
    static Tensor<U, host> row(const Tensor<U, host>& t, std::size_t i) {
      const Shape whole = t.shape();
      const Shape sample(whole.begin() + 1, whole.end());
      return Tensor<U, host>::from_data(sample, t.data() + i * sample.size());
    }
    const tensor_source& s_;
  };

  Tensor<T, host> x_;
  Tensor<L, host> y_;
};

/// Images and labels streamed from two IDX files (plain or gzip), one block of records at a
/// time: a pass holds one block of each file in memory, whatever the file's size.
template <class T, class L>
class idx_stream_source final : public node<Example<host, T, L>> {
  using E = Example<host, T, L>;

 public:
  /// Bytes of records read at once (the memory a pass holds per file).
  static constexpr std::size_t block_bytes = std::size_t{1} << 20;

  idx_stream_source(std::filesystem::path images, std::filesystem::path labels, T scale)
      : images_(std::move(images)), labels_(std::move(labels)), scale_(scale) {
    // The headers are read now, so that a missing or malformed file fails where the
    // dataset is made; the data are checked record by record in each pass.
    const auto [xh, yh] = headers();
    count_ = xh.dims[0];
    const Shape d = xh.dims;
    sample_ = Shape(d.begin() + 1, d.end());
    if (sample_.rank() == 2) sample_.push_back(1);  // [rows, cols] -> NHWC with one channel
  }

  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(*this, ctx.epoch);
  }
  std::size_t cardinality() const override { return count_; }

 private:
  struct opened {
    std::unique_ptr<idx_source> src;
    idx_header header;
  };

  opened open_file(const std::filesystem::path& p) const {
    opened o{std::make_unique<idx_source>(p), {}};
    o.header = read_idx_header(*o.src, idx_where(p));
    return o;
  }

  std::pair<idx_header, idx_header> headers() const {
    opened x = open_file(images_), y = open_file(labels_);
    check(x.header, y.header);
    return {x.header, y.header};
  }

  void check(const idx_header& x, const idx_header& y) const {
    if (x.dims.rank() < 2) {
      throw format_error(idx_where(images_) +
                         "an image file has at least 2 dimensions ([N, ...]), " + "this one " +
                         to_string(x.dims));
    }
    if (y.dims.rank() != 1 || y.dims[0] != x.dims[0]) {
      throw format_error(idx_where(labels_) + "labels of dimensions " + to_string(y.dims) +
                         " do not match the " + std::to_string(x.dims[0]) + " images of '" +
                         images_.string() + "' (one label per image, dimensions [" +
                         std::to_string(x.dims[0]) + "])");
    }
  }

  // One file's records, a block at a time.
  class record_reader {
   public:
    record_reader(opened o, std::filesystem::path path, std::size_t count)
        : o_(std::move(o)), path_(std::move(path)), count_(count) {
      esize_ = idx_element_size(o_.header.type);
      per_record_ = count_ ? o_.header.data_bytes / count_ / esize_ : 0;
      block_records_ =
          std::max<std::size_t>(1, block_bytes / std::max<std::size_t>(1, per_record_ * esize_));
    }
    /// Record i's elements (host byte order); records are read in order.
    const std::byte* record(std::size_t i) {
      if (i >= first_ + in_block_) fill(i);
      return buf_.data() + (i - first_) * per_record_ * esize_;
    }
    idx_type type() const { return o_.header.type; }
    std::size_t per_record() const { return per_record_; }
    void finish() { check_idx_end(*o_.src, idx_where(path_), o_.header); }

   private:
    void fill(std::size_t i) {
      const std::size_t n = std::min(block_records_, count_ - i);
      const std::size_t want = n * per_record_ * esize_;
      buf_.resize(want);
      const std::size_t got = o_.src->read(buf_.data(), want);
      if (got < want) {
        const std::size_t whole = got / (per_record_ * esize_);
        throw format_error(idx_where(path_) + "record " + std::to_string(i + whole) + " of " +
                           std::to_string(count_) + " is truncated: " + idx_promise(o_.header) +
                           ", but the " + (o_.src->gzip() ? "decompressed stream" : "file") +
                           " ends inside that record");
      }
      to_host_order(buf_.data(), want, esize_);
      first_ = i;
      in_block_ = n;
    }
    opened o_;
    std::filesystem::path path_;
    std::size_t count_, esize_ = 1, per_record_ = 0, block_records_ = 1;
    std::vector<std::byte> buf_;
    std::size_t first_ = 0, in_block_ = 0;
  };

  class iterator final : public numbered_iterator<E> {
   public:
    iterator(const idx_stream_source& s, std::uint64_t epoch)
        : numbered_iterator<E>(epoch),
          s_(s),
          x_(s.open_file(s.images_), s.images_, s.count_),
          y_(s.open_file(s.labels_), s.labels_, s.count_) {}

   private:
    std::optional<E> produce(std::uint64_t i) override {
      if (i == s_.count_) {
        if (!finished_) {
          finished_ = true;
          x_.finish();
          y_.finish();
        }
        return std::nullopt;
      }
      E e;
      e.x = Tensor<T, host>(uninitialized, s_.sample_);
      convert_idx(x_.type(), x_.record(i), x_.per_record(), e.x.data(), s_.scale_);
      e.y = Tensor<L, host>(uninitialized, Shape{});
      convert_idx(y_.type(), y_.record(i), 1, e.y.data(), L(1));
      return e;
    }

    const idx_stream_source& s_;
    record_reader x_, y_;
    bool finished_ = false;
  };

  std::filesystem::path images_, labels_;
  T scale_;
  std::size_t count_ = 0;
  Shape sample_;
};

/// Element i = f(i) for i in [0, count): random access, so a pass is reproducible.
template <class T, class L, class F>
class function_source final : public node<Example<host, T, L>> {
  using E = Example<host, T, L>;

 public:
  function_source(std::size_t count, F f) : count_(count), f_(std::move(f)) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(*this, ctx.epoch);
  }
  std::size_t cardinality() const override { return count_; }

 private:
  class iterator final : public numbered_iterator<E> {
   public:
    iterator(const function_source& s, std::uint64_t epoch) : numbered_iterator<E>(epoch), s_(s) {}

   private:
    std::optional<E> produce(std::uint64_t i) override {
      if (i == s_.count_) return std::nullopt;
      return call_user([&] { return E(s_.f_(i)); }, i, "function of from_function");
    }

    const function_source& s_;
  };

  std::size_t count_;
  F f_;
};

/// A generator per pass: make() returns a callable whose calls return the elements in
/// order and then std::nullopt (as tf.data's from_generator calls its generator function
/// again for each epoch).
template <class T, class L, class Make>
class generator_source final : public node<Example<host, T, L>> {
  using E = Example<host, T, L>;
  using generator = std::function<std::optional<E>()>;

 public:
  explicit generator_source(Make make) : make_(std::move(make)) {}
  std::unique_ptr<element_iterator<E>> open(const pass_context& ctx) const override {
    return std::make_unique<iterator>(
        call_user([&] { return generator(make_()); }, 0, "generator factory of from_generator"),
        ctx.epoch);
  }
  std::size_t cardinality() const override { return unknown_cardinality; }

 private:
  class iterator final : public numbered_iterator<E> {
   public:
    iterator(generator g, std::uint64_t epoch) : numbered_iterator<E>(epoch), g_(std::move(g)) {}

   private:
    std::optional<E> produce(std::uint64_t i) override {
      return call_user([&] { return g_(); }, i, "generator of from_generator");
    }

    generator g_;
  };

  Make make_;
};

}  // namespace locus::data::detail
