// Reductions: sum, mean, max, min and argmax over one axis or over everything.
//
// A reduction over everything returns a rank-0 tensor on the operand's device, not a
// host scalar: reading the value is a transfer, and transfers are explicit
// (`locus::to<locus::Device<locus::CPU>>(locus::sum(x)).item()`).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../error.hpp"
#include "../expr.hpp"
#include "../shape.hpp"
#include "../tensor.hpp"

namespace locus {

namespace detail {

struct axis_split {
  std::size_t outer = 1, len = 1, inner = 1;
  Shape kept, reduced;  // result shape with and without the reduced axis
};

inline axis_split split_axis(const Shape& s, std::ptrdiff_t axis, const char* op) {
  axis_split r;
  if (s.rank() == 0) throw axis_error(std::string("locus::") + op + ": a rank-0 tensor has no axes");
  const std::size_t a = normalize_axis(axis, s.rank(), op, s);
  for (std::size_t d = 0; d < s.rank(); ++d) {
    if (d < a) r.outer *= s[d];
    if (d == a) r.len = s[d];
    if (d > a) r.inner *= s[d];
    r.kept.push_back(d == a ? 1 : s[d]);
    if (d != a) r.reduced.push_back(s[d]);
  }
  return r;
}

template <class E>
auto reduce_impl(reduce_op op, const E& x, std::ptrdiff_t axis, bool keepdims, bool all,
                 const char* name) {
  const auto& t = eval(x);
  using Tn = std::remove_cvref_t<decltype(t)>;
  using B = typename Tn::backend;
  axis_split sp;
  if (all) {
    sp.len = t.size();
  } else {
    sp = split_axis(t.shape(), axis, name);
  }
  if (sp.len == 0 && (op == reduce_op::max || op == reduce_op::min)) {
    throw shape_error(std::string("locus::") + name + ": cannot reduce an empty axis of shape " +
                      to_string(t.shape()));
  }
  Tn out(uninitialized, all ? Shape{} : (keepdims ? sp.kept : sp.reduced));
  B::reduce(op, t.storage(), sp.outer, sp.len, sp.inner, out.storage());
  return out;
}

/// Column sums of contiguous storage viewed as [rows, cols] (whatever the tensor's shape):
/// the bias gradient of Dense and Conv2D without a reshape copy.
template <class T, class D>
Tensor<T, D> sum_rows(const Tensor<T, D>& t, std::size_t rows, std::size_t cols) {
  Tensor<T, D> out(uninitialized, Shape{cols});
  backend_t<D>::reduce(reduce_op::sum, t.storage(), 1, rows, cols, out.storage());
  return out;
}

}  // namespace detail

#define LOCUS_REDUCTION_(NAME, OP)                                                    \
  /** Over every element: a rank-0 tensor on the operand's device. */              \
  template <Operand E>                                                              \
  auto NAME(const E& x) {                                                           \
    return detail::reduce_impl(reduce_op::OP, x, 0, false, true, #NAME);            \
  }                                                                                 \
  /** Over one axis (negative counts from the end). */                              \
  template <Operand E>                                                              \
  auto NAME(const E& x, std::ptrdiff_t axis, bool keepdims = false) {               \
    return detail::reduce_impl(reduce_op::OP, x, axis, keepdims, false, #NAME);     \
  }
LOCUS_REDUCTION_(sum, sum)
LOCUS_REDUCTION_(mean, mean)
LOCUS_REDUCTION_(max, max)
LOCUS_REDUCTION_(min, min)
#undef LOCUS_REDUCTION_

/// Index of the first maximum along `axis`, as int32 on the operand's device.
template <Operand E>
auto argmax(const E& x, std::ptrdiff_t axis, bool keepdims = false) {
  const auto& t = eval(x);
  using Tn = std::remove_cvref_t<decltype(t)>;
  const auto sp = detail::split_axis(t.shape(), axis, "argmax");
  if (sp.len == 0) {
    throw shape_error("locus::argmax: cannot take the argmax of an empty axis of shape " +
                      to_string(t.shape()));
  }
  Tensor<std::int32_t, typename Tn::device_type> out(uninitialized, keepdims ? sp.kept : sp.reduced);
  Tn::backend::argmax(t.storage(), sp.outer, sp.len, sp.inner, out.storage());
  return out;
}

/// Index of the first maximum of the flattened tensor (rank-0 int32 tensor).
template <Operand E>
auto argmax(const E& x) {
  // Over the flat storage as one row, so a tensor is not copied to be reshaped.
  const auto& t = eval(x);
  using Tn = std::remove_cvref_t<decltype(t)>;
  if (t.size() == 0) {
    throw shape_error("locus::argmax: cannot take the argmax of an empty tensor of shape " +
                      to_string(t.shape()));
  }
  Tensor<std::int32_t, typename Tn::device_type> out(uninitialized, Shape{});
  Tn::backend::argmax(t.storage(), 1, t.size(), 1, out.storage());
  return out;
}

}  // namespace locus
