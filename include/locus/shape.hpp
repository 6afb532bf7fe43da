// Shapes: a small inline array of extents (row-major), broadcasting and axis helpers.
//
// Shapes are built on every operation, so they live inline (no heap allocation); eight
// dimensions cover every layer locus has and leave room for batched 5-D work.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "error.hpp"

namespace locus {

class Shape {
 public:
  static constexpr std::size_t max_rank = 8;

  Shape() = default;
  Shape(std::initializer_list<std::size_t> dims) { assign(dims.begin(), dims.end()); }
  template <class It>
  Shape(It first, It last) {
    assign(first, last);
  }
  explicit Shape(const std::vector<std::size_t>& dims) { assign(dims.begin(), dims.end()); }

  std::size_t rank() const noexcept { return rank_; }
  std::size_t operator[](std::size_t i) const noexcept { return dims_[i]; }
  std::size_t& operator[](std::size_t i) noexcept { return dims_[i]; }
  const std::size_t* begin() const noexcept { return dims_.data(); }
  const std::size_t* end() const noexcept { return dims_.data() + rank_; }
  std::size_t back() const noexcept { return dims_[rank_ - 1]; }

  /// Number of elements (1 for a rank-0 shape).
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }

  void push_back(std::size_t d) {
    if (rank_ == max_rank) throw shape_error("locus: shapes have at most 8 dimensions");
    dims_[rank_++] = d;
  }

  std::vector<std::size_t> to_vector() const { return {begin(), end()}; }

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  template <class It>
  void assign(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<std::size_t>(*first));
  }
  std::array<std::size_t, max_rank> dims_{};
  std::size_t rank_ = 0;
};

/// "[2, 3, 4]", as NumPy and Keras print shapes.
inline std::string to_string(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.rank(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

/// Row-major strides in elements.
inline std::array<std::size_t, Shape::max_rank> row_major_strides(const Shape& s) {
  std::array<std::size_t, Shape::max_rank> st{};
  std::size_t acc = 1;
  for (std::size_t i = s.rank(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

/// NumPy broadcasting of two shapes; throws shape_error naming the operation.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t r = std::max(a.rank(), b.rank());
  Shape out;
  for (std::size_t i = 0; i < r; ++i) {
    const std::size_t da = i + a.rank() >= r ? a[i + a.rank() - r] : 1;
    const std::size_t db = i + b.rank() >= r ? b[i + b.rank() - r] : 1;
    if (da != db && da != 1 && db != 1) {
      throw shape_error(std::string("locus::") + op + ": shapes " + to_string(a) + " and " +
                        to_string(b) + " cannot be broadcast together");
    }
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

/// Strides (in elements) with which an operand of shape `s` is read when broadcast to
/// `out`: 0 along every broadcast dimension. Aligned to `out`'s rank.
inline std::array<std::size_t, Shape::max_rank> broadcast_strides(const Shape& s, const Shape& out) {
  std::array<std::size_t, Shape::max_rank> st{};
  const auto own = row_major_strides(s);
  const std::size_t off = out.rank() - s.rank();
  for (std::size_t i = 0; i < s.rank(); ++i) st[i + off] = s[i] == 1 ? 0 : own[i];
  return st;
}

/// Normalises a possibly negative axis against `rank`; throws axis_error naming `op`.
inline std::size_t normalize_axis(std::ptrdiff_t axis, std::size_t rank, const char* op,
                                  const Shape& shape) {
  const auto r = static_cast<std::ptrdiff_t>(rank);
  if (axis < -r || axis >= r) {
    throw axis_error(std::string("locus::") + op + ": axis " + std::to_string(axis) +
                     " is out of range for a tensor of shape " + to_string(shape));
  }
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

}  // namespace locus
