// Tensor<T, Dev>: a dense, row-major, dynamically shaped array whose device is its type.
//
// Value semantics, like xtensor and Eigen: copying a tensor copies its elements on the
// same device (never across devices), moving is cheap. Host access (element access,
// data(), iterators, stream output, xtensor views) exists only for Device<CPU>; on any
// other device those members still exist, so that a misuse reaches a static_assert that
// says how to copy, instead of "no member named data".
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xexpression.hpp>

#include "backend/backend.hpp"
#include "detail/contract.hpp"
#include "device.hpp"
#include "error.hpp"
#include "expr.hpp"
#include "shape.hpp"

namespace locus {

namespace detail {

template <class T>
struct nested_list {
  static void shape_of(const T&, Shape&, std::size_t) {}
  static void flatten(const T& v, std::vector<T>& out, const Shape&, std::size_t) { out.push_back(v); }
};

template <class T>
struct nested_list<std::initializer_list<T>> {
  using inner = nested_list<T>;
  static void shape_of(const std::initializer_list<T>& l, Shape& s, std::size_t depth) {
    if (s.rank() <= depth) s.push_back(l.size());
    if (l.size()) inner::shape_of(*l.begin(), s, depth + 1);
  }
  template <class E>
  static void flatten(const std::initializer_list<T>& l, std::vector<E>& out, const Shape& s,
                      std::size_t depth) {
    if (l.size() != s[depth]) {
      throw shape_error("locus::Tensor: nested initializer lists are ragged (expected " +
                        std::to_string(s[depth]) + " elements at depth " +
                        std::to_string(depth) + ", got " + std::to_string(l.size()) + ")");
    }
    for (const auto& x : l) inner::flatten(x, out, s, depth + 1);
  }
};

}  // namespace detail

/// Marker for the constructor that allocates without initialising (internal, hot paths).
struct uninitialized_t {
  explicit uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

template <class T, class Dev>
class Tensor {
  static_assert(Element<T>, "locus: Tensor elements are float, double or std::int32_t");
  static_assert(is_device_v<Dev>,
                "locus: the second argument of Tensor is a device, e.g. locus::Device<locus::CPU>");

 public:
  using value_type = T;
  using device_type = Dev;
  using backend = backend_t<Dev>;
  using buffer_type = typename backend::template buffer<T>;

  /// An empty tensor of shape [0].
  Tensor() : shape_{0}, buf_(0) {}

  /// A zero-filled tensor.
  explicit Tensor(const Shape& shape) : shape_(shape), buf_(shape.size()) {
    backend::fill(buf_, T(0));
  }

  /// A tensor whose elements are left unspecified (to be overwritten).
  Tensor(uninitialized_t, const Shape& shape) : shape_(shape), buf_(shape.size()) {}

  static Tensor zeros(const Shape& shape) { return full(shape, T(0)); }
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  static Tensor full(const Shape& shape, T value) {
    Tensor t(uninitialized, shape);
    backend::fill(t.buf_, value);
    return t;
  }
  /// Uniform in [low, high); element i depends only on (seed, i), on every device.
  static Tensor uniform(const Shape& shape, std::uint64_t seed, T low = T(0), T high = T(1)) {
    Tensor t(uninitialized, shape);
    backend::random(random_dist::uniform, t.buf_, seed, low, high);
    return t;
  }
  /// Normal(mean, stddev); element i depends only on (seed, i), on every device.
  static Tensor normal(const Shape& shape, std::uint64_t seed, T mean = T(0), T stddev = T(1)) {
    static_assert(std::is_floating_point_v<T>, "locus: normal() needs a floating-point tensor");
    Tensor t(uninitialized, shape);
    backend::random(random_dist::normal, t.buf_, seed, mean, stddev);
    return t;
  }

  // ---- host data in: only on the host; other devices get it through locus::to<> --------

  Tensor(std::initializer_list<T> l) { from_list(l); }
  Tensor(std::initializer_list<std::initializer_list<T>> l) { from_list(l); }
  Tensor(std::initializer_list<std::initializer_list<std::initializer_list<T>>> l) { from_list(l); }
  Tensor(std::initializer_list<std::initializer_list<std::initializer_list<std::initializer_list<T>>>> l) {
    from_list(l);
  }

  /// From any xtensor expression (host only), e.g. `Tensor<float, Device<CPU>>(xt::arange(6.f))`.
  template <class E>
    requires xt::is_xexpression<std::remove_cvref_t<E>>::value
  explicit Tensor(const E& e) {
    (void)sizeof(detail::host_access_denied<Dev>);
    xt::xarray<T> a = e;
    shape_ = Shape(a.shape().begin(), a.shape().end());
    buf_ = buffer_type(shape_.size());
    std::copy(a.begin(), a.end(), host_ptr());
  }

  /// From host memory (host only).
  static Tensor from_data(const Shape& shape, const T* data) {
    (void)sizeof(detail::host_access_denied<Dev>);
    Tensor t(uninitialized, shape);
    std::copy(data, data + shape.size(), t.host_ptr());
    return t;
  }

  // ---- expressions -----------------------------------------------------------------------

  /// Evaluates an element-wise expression of the same device, in one pass.
  template <class Op, class... Args>
  Tensor(const Expr<Op, Args...>& e) {  // NOLINT: implicit on purpose (`Tensor r = a + b;`)
    using E = Expr<Op, Args...>;
    check_incoming<typename E::device_type>();
    static_assert(std::is_same_v<typename E::value_type, T>,
                  "locus: the expression's element type differs from the tensor's; convert "
                  "with locus::cast<T>(x)");
    shape_ = e.shape();
    buf_ = buffer_type(shape_.size());
    backend::assign(buf_, e);
  }

  template <class Op, class... Args>
  Tensor& operator=(const Expr<Op, Args...>& e) {
    using E = Expr<Op, Args...>;
    check_incoming<typename E::device_type>();
    static_assert(std::is_same_v<typename E::value_type, T>,
                  "locus: the expression's element type differs from the tensor's; convert "
                  "with locus::cast<T>(x)");
    if (e.shape() == shape_) {
      // Element-wise evaluation reads and writes the same index, so in-place is safe.
      backend::assign(buf_, e);
    } else {
      buffer_type fresh(e.shape().size());
      backend::assign(fresh, e);
      buf_ = std::move(fresh);
      shape_ = e.shape();
    }
    return *this;
  }

#define LOCUS_COMPOUND_(SYMBOL, OP)                                  \
  template <class B>                                                 \
    requires BinaryOperands<Tensor&, B>                              \
  Tensor& operator SYMBOL(B&& b) {                                   \
    auto e = make_expr<op::OP>(*this, std::forward<B>(b));           \
    if (!(e.shape() == shape_)) {                                    \
      throw shape_error(std::string("locus::Tensor::operator" #SYMBOL ": result shape ") + \
                        to_string(e.shape()) + " differs from the target shape " +  \
                        to_string(shape_));                          \
    }                                                                \
    backend::assign(buf_, e);                                        \
    return *this;                                                    \
  }
  LOCUS_COMPOUND_(+=, add)
  LOCUS_COMPOUND_(-=, sub)
  LOCUS_COMPOUND_(*=, mul)
  LOCUS_COMPOUND_(/=, div)
#undef LOCUS_COMPOUND_

  // ---- same-device copies; anything across devices is an explicit locus::to<> ----------

  Tensor(const Tensor& o) : shape_(o.shape_), buf_(o.buf_.size()) {
    backend::copy(o.buf_, 0, buf_, 0, o.buf_.size());
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(const Tensor& o) {
    if (this != &o) {
      if (buf_.size() != o.buf_.size()) buf_ = buffer_type(o.buf_.size());
      backend::copy(o.buf_, 0, buf_, 0, o.buf_.size());
      shape_ = o.shape_;
    }
    return *this;
  }
  Tensor& operator=(Tensor&&) noexcept = default;
  ~Tensor() = default;

  // Any other tensor type stops here with a sentence: another device needs locus::to<>,
  // another element type locus::cast<>.
  template <class U, class Other>
    requires(!std::is_same_v<Other, Dev> || !std::is_same_v<U, T>)
  Tensor(const Tensor<U, Other>&) {  // NOLINT
    reject_conversion<U, Other>();
  }
  template <class U, class Other>
    requires(!std::is_same_v<Other, Dev> || !std::is_same_v<U, T>)
  Tensor& operator=(const Tensor<U, Other>&) {
    reject_conversion<U, Other>();
    return *this;
  }

  // ---- shape -----------------------------------------------------------------------------

  const Shape& shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.rank(); }
  std::size_t size() const noexcept { return shape_.size(); }
  std::size_t dim(std::ptrdiff_t axis) const {
    return shape_[normalize_axis(axis, rank(), "Tensor::dim", shape_)];
  }

  /// Same elements, new shape; one extent may be -1 (inferred).
  Tensor reshape(std::initializer_list<std::ptrdiff_t> dims) const& {
    Tensor t(*this);
    t.shape_ = resolve_reshape(dims);
    return t;
  }
  Tensor reshape(std::initializer_list<std::ptrdiff_t> dims) && {
    shape_ = resolve_reshape(dims);
    return std::move(*this);
  }
  Tensor reshape(const Shape& s) const& {
    Tensor t(*this);
    t.shape_ = checked_reshape(s);
    return t;
  }
  Tensor reshape(const Shape& s) && {
    shape_ = checked_reshape(s);
    return std::move(*this);
  }

  /// Rows [begin, end) of the first axis, as a new tensor on the same device.
  Tensor slice(std::size_t begin, std::size_t end) const {
    if (rank() == 0 || begin > end || end > shape_[0]) {
      throw shape_error("locus::Tensor::slice: range [" + std::to_string(begin) + ", " +
                        std::to_string(end) + ") is out of bounds for shape " +
                        to_string(shape_));
    }
    Shape s = shape_;
    s[0] = end - begin;
    const std::size_t row = shape_[0] ? size() / shape_[0] : 0;
    Tensor t(uninitialized, s);
    backend::copy(buf_, begin * row, t.buf_, 0, (end - begin) * row);
    return t;
  }

  // ---- host access (Device<CPU> only) -----------------------------------------------------

  T* data() { return host_ptr(); }
  const T* data() const { return host_ptr(); }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }

  template <class... I>
    requires(std::is_integral_v<I> && ...)
  T& operator()(I... idx) {
    return host_ptr()[offset(idx...)];
  }
  template <class... I>
    requires(std::is_integral_v<I> && ...)
  const T& operator()(I... idx) const {
    return host_ptr()[offset(idx...)];
  }
  /// Bounds-checked element access.
  template <class... I>
    requires(std::is_integral_v<I> && ...)
  T& at(I... idx) {
    T* p = host_ptr();
    check_index(idx...);
    return p[offset(idx...)];
  }
  template <class... I>
    requires(std::is_integral_v<I> && ...)
  const T& at(I... idx) const {
    T* p = host_ptr();
    check_index(idx...);
    return p[offset(idx...)];
  }
  /// The single element of a one-element tensor.
  T item() const {
    const T* p = host_ptr();
    if (size() != 1) {
      throw shape_error("locus::Tensor::item: tensor of shape " + to_string(shape_) +
                        " has " + std::to_string(size()) + " elements, not 1");
    }
    return p[0];
  }
  /// An xtensor view of the elements (host only): the door to all of xtensor.
  auto xt() { return xt::adapt(host_ptr(), size(), xt::no_ownership(), shape_.to_vector()); }
  auto xt() const {
    return xt::adapt(static_cast<const T*>(host_ptr()), size(), xt::no_ownership(),
                     shape_.to_vector());
  }

  // ---- for backends and ops --------------------------------------------------------------

  buffer_type& storage() noexcept { return buf_; }
  const buffer_type& storage() const noexcept { return buf_; }

 private:
  template <class U, class Other>
  static void reject_conversion() {
    if constexpr (!std::is_same_v<Other, Dev>) {
      (void)sizeof(detail::cross_device_conversion<Dev, Other>);
    } else {
      (void)sizeof(detail::element_type_mismatch<T, U>);
    }
  }

  // An expression evaluates on its own device; landing it on another one is a conversion.
  template <class Other>
  static void check_incoming() {
    (void)sizeof(detail::cross_device_conversion<Dev, Other>);
  }

  // Every host access goes through here: on a device without host access the sizeof
  // instantiates the static_assert that tells the user how to copy, and nothing else in
  // the caller can produce a second, less readable error.
  T* host_ptr() const {
    (void)sizeof(detail::host_access_denied<Dev>);
    if constexpr (HostDevice<Dev>) {
      return const_cast<T*>(buf_.data());
    } else {
      return nullptr;
    }
  }

  template <class L>
  void from_list(const L& l) {
    (void)sizeof(detail::host_access_denied<Dev>);
    detail::nested_list<L>::shape_of(l, shape_, 0);
    std::vector<T> flat;
    flat.reserve(shape_.size());
    detail::nested_list<L>::flatten(l, flat, shape_, 0);
    buf_ = buffer_type(flat.size());
    std::copy(flat.begin(), flat.end(), host_ptr());
  }

  template <class... I>
  std::size_t offset(I... idx) const noexcept {
    const std::size_t ids[] = {static_cast<std::size_t>(idx)..., 0};
    std::size_t off = 0;
    for (std::size_t d = 0; d < sizeof...(I); ++d) off = off * shape_[d] + ids[d];
    return off;
  }

  template <class... I>
  void check_index(I... idx) const {
    const std::ptrdiff_t ids[] = {static_cast<std::ptrdiff_t>(idx)..., 0};
    bool ok = sizeof...(I) == rank();
    for (std::size_t d = 0; ok && d < sizeof...(I); ++d) {
      ok = ids[d] >= 0 && static_cast<std::size_t>(ids[d]) < shape_[d];
    }
    if (!ok) {
      std::string s;
      for (std::size_t d = 0; d < sizeof...(I); ++d) s += (d ? ", " : "") + std::to_string(ids[d]);
      throw shape_error("locus::Tensor::at: index (" + s + ") is out of bounds for shape " +
                        to_string(shape_));
    }
  }

  Shape checked_reshape(const Shape& s) const {
    if (s.size() != size()) {
      throw shape_error("locus::Tensor::reshape: cannot reshape " + to_string(shape_) + " (" +
                        std::to_string(size()) + " elements) into " + to_string(s) + " (" +
                        std::to_string(s.size()) + " elements)");
    }
    return s;
  }

  Shape resolve_reshape(std::initializer_list<std::ptrdiff_t> dims) const {
    Shape s;
    std::size_t known = 1;
    std::ptrdiff_t infer = -1;
    for (auto d : dims) {
      if (d == -1 && infer < 0) {
        infer = static_cast<std::ptrdiff_t>(s.rank());
        s.push_back(1);
      } else if (d < 0) {
        throw shape_error("locus::Tensor::reshape: extent " + std::to_string(d) +
                          " is invalid (only one -1 is allowed) when reshaping " +
                          to_string(shape_));
      } else {
        known *= static_cast<std::size_t>(d);
        s.push_back(static_cast<std::size_t>(d));
      }
    }
    if (infer >= 0) {
      if (known == 0 || size() % known != 0) {
        throw shape_error("locus::Tensor::reshape: cannot infer the -1 extent when reshaping " +
                          to_string(shape_) + " (" + std::to_string(size()) + " elements)");
      }
      s[static_cast<std::size_t>(infer)] = size() / known;
    }
    return checked_reshape(s);
  }

  Shape shape_;
  buffer_type buf_;
};

/// Evaluates any operand into a tensor on its own device. A tensor is returned as is: an
/// lvalue by const reference (no copy: reductions, matmul and transfers of a tensor read
/// it in place), an rvalue moved into the result. An expression is computed into a new
/// tensor. Bind the result with `const auto&` (or `auto&&`); `auto t = eval(x)` makes
/// the copy explicit.
template <Operand E>
decltype(auto) eval(E&& e) {
  using D = std::remove_cvref_t<E>;
  if constexpr (is_tensor_v<D> && std::is_lvalue_reference_v<E>) {
    return static_cast<const D&>(e);
  } else if constexpr (is_tensor_v<D>) {
    return D(std::move(e));
  } else {
    return Tensor<typename D::value_type, typename D::device_type>(e);
  }
}

namespace detail {
template <class T>
void print_recursive(std::ostream& os, const T* p, const Shape& s, std::size_t d) {
  if (s.rank() == 0) {
    os << +p[0];
    return;
  }
  std::size_t stride = 1;
  for (std::size_t i = d + 1; i < s.rank(); ++i) stride *= s[i];
  os << '[';
  for (std::size_t i = 0; i < s[d]; ++i) {
    if (i) os << (d + 1 == s.rank() ? ", " : ",\n" + std::string(d + 1, ' '));
    if (d + 1 == s.rank()) {
      os << +p[i];
    } else {
      print_recursive(os, p + i * stride, s, d + 1);
    }
  }
  os << ']';
}
}  // namespace detail

/// NumPy-like printing (host only).
template <class T, class Dev>
std::ostream& operator<<(std::ostream& os, const Tensor<T, Dev>& t) {
  (void)sizeof(detail::host_access_denied<Dev>);
  if constexpr (HostDevice<Dev>) {
    detail::print_recursive(os, t.data(), t.shape(), 0);
  }
  return os;
}

}  // namespace locus
