// Element-wise expression templates.
//
// `a * b + c` builds a tree of `Expr<Op, Args...>` nodes; nothing is computed until the
// tree is assigned to a Tensor, and then the device's backend evaluates the whole tree in
// one pass: the CPU backend as one SIMD loop, the OpenCL backend as one generated kernel
// per tree *type* (compiled once per device, as VexCL does). The tree is device-neutral:
// operation tags carry no code; each backend maps every tag to its own implementation, so
// an op the GPU backend does not implement fails to compile instead of running elsewhere.
//
// Leaves are tensors (held by pointer when the caller passes an lvalue, by value when it
// passes a temporary, as xtensor's closure types do) and scalars. Every node checks when
// it is built that its operands share one device (at compile time) and that their shapes
// broadcast (at run time, naming the operation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "detail/contract.hpp"
#include "device.hpp"
#include "shape.hpp"

namespace locus {

template <class T, class Dev>
class Tensor;

template <class T>
struct is_tensor : std::false_type {};
template <class T, class Dev>
struct is_tensor<Tensor<T, Dev>> : std::true_type {};
template <class T>
inline constexpr bool is_tensor_v = is_tensor<std::remove_cvref_t<T>>::value;

/// Element types locus computes with.
template <class T>
concept Element =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int32_t>;

/// Operation tags. Backends specialise their own implementation for each tag.
namespace op {
// binary arithmetic
struct add {
  static constexpr const char* name = "add";
};
struct sub {
  static constexpr const char* name = "subtract";
};
struct mul {
  static constexpr const char* name = "multiply";
};
struct div {
  static constexpr const char* name = "divide";
};
struct maximum {
  static constexpr const char* name = "maximum";
};
struct minimum {
  static constexpr const char* name = "minimum";
};
struct pow {
  static constexpr const char* name = "pow";
};
// comparisons: 1 where true, 0 where false, in the operands' element type
struct greater {
  static constexpr const char* name = "greater";
};
struct less {
  static constexpr const char* name = "less";
};
struct greater_equal {
  static constexpr const char* name = "greater_equal";
};
struct less_equal {
  static constexpr const char* name = "less_equal";
};
struct equal {
  static constexpr const char* name = "equal";
};
// unary
struct negate {
  static constexpr const char* name = "negate";
};
struct exp {
  static constexpr const char* name = "exp";
};
struct log {
  static constexpr const char* name = "log";
};
struct sqrt {
  static constexpr const char* name = "sqrt";
};
struct tanh {
  static constexpr const char* name = "tanh";
};
struct relu {
  static constexpr const char* name = "relu";
};
struct sigmoid {
  static constexpr const char* name = "sigmoid";
};
struct abs {
  static constexpr const char* name = "abs";
};
struct square {
  static constexpr const char* name = "square";
};
struct erf {
  static constexpr const char* name = "erf";
};
struct erfc {
  static constexpr const char* name = "erfc";
};  // 1 - erf(x), accurate where erf(x) is near 1
struct expm1 {
  static constexpr const char* name = "expm1";
};  // exp(x) - 1, accurate near 0
struct log1p {
  static constexpr const char* name = "log1p";
};  // log(1 + x), accurate near 0
template <class To>
struct cast {
  static constexpr const char* name = "cast";
};
// ternary: where(c, a, b) = c != 0 ? a : b
struct where {
  static constexpr const char* name = "where";
};

/// Ops defined only for floating-point element types.
template <class Op>
inline constexpr bool needs_floating_point =
    std::is_same_v<Op, exp> || std::is_same_v<Op, log> || std::is_same_v<Op, sqrt> ||
    std::is_same_v<Op, tanh> || std::is_same_v<Op, sigmoid> || std::is_same_v<Op, pow> ||
    std::is_same_v<Op, erf> || std::is_same_v<Op, erfc> || std::is_same_v<Op, expm1> ||
    std::is_same_v<Op, log1p>;
}  // namespace op

/// A non-owning leaf: refers to a tensor that outlives the expression.
template <class T, class Dev>
struct TensorRef {
  using value_type = T;
  using device_type = Dev;
  const Tensor<T, Dev>* tensor;
  const Shape& shape() const { return tensor->shape(); }
  const Tensor<T, Dev>& get() const { return *tensor; }
};

/// A scalar leaf; it takes the element type of the expression it joins.
template <class T>
struct Scalar {
  using value_type = T;
  using device_type = void;
  T value;
};

template <class Op, class... Args>
class Expr;

template <class T>
struct is_expr : std::false_type {};
template <class Op, class... Args>
struct is_expr<Expr<Op, Args...>> : std::true_type {};
template <class T>
inline constexpr bool is_expr_v = is_expr<std::remove_cvref_t<T>>::value;

template <class T>
struct is_scalar_leaf : std::false_type {};
template <class T>
struct is_scalar_leaf<Scalar<T>> : std::true_type {};

template <class T>
struct is_tensor_ref : std::false_type {};
template <class T, class Dev>
struct is_tensor_ref<TensorRef<T, Dev>> : std::true_type {};

/// Something that can stand in an element-wise expression with a device of its own.
template <class E>
concept Operand = is_tensor_v<E> || is_expr_v<E>;

namespace detail {

// The device of a node: that of its first operand that has one; scalars have none.
template <class... Args>
struct first_device {
  using type = void;
};
template <class A, class... Rest>
struct first_device<A, Rest...> {
  using type = std::conditional_t<std::is_void_v<typename A::device_type>,
                                  typename first_device<Rest...>::type, typename A::device_type>;
};

// Reports the first pair of operand devices that differ (compile time). Scalars have no
// device (void) and meet any device.
template <class Dev, class Own>
struct device_ok : std::bool_constant<sizeof(require_same_device<Dev, Own>) != 0> {};
template <class Dev>
struct device_ok<Dev, void> : std::true_type {};

template <class Dev, class... Args>
struct check_devices : std::true_type {};
template <class Dev, class A, class... Rest>
struct check_devices<Dev, A, Rest...> {
  static constexpr bool value =
      device_ok<Dev, typename A::device_type>::value && check_devices<Dev, Rest...>::value;
};

template <class Op, class... Ts>
struct result_type {
  using type = std::tuple_element_t<0, std::tuple<Ts...>>;
};
template <class To, class From>
struct result_type<op::cast<To>, From> {
  using type = To;
};
template <class C, class A, class B>
struct result_type<op::where, C, A, B> {
  using type = A;
};

}  // namespace detail

/// An element-wise operation node.
template <class Op, class... Args>
class Expr {
 public:
  using op_type = Op;
  using args_type = std::tuple<Args...>;
  using value_type = typename detail::result_type<Op, typename Args::value_type...>::type;
  using device_type = typename detail::first_device<Args...>::type;

  explicit Expr(Args... args) : args_(std::move(args)...) {
    shape_ = std::apply(
        [](const auto&... a) {
          Shape s;
          bool first = true;
          auto fold = [&](const auto& x) {
            if constexpr (!is_scalar_leaf<std::remove_cvref_t<decltype(x)>>::value) {
              s = first ? x.shape() : broadcast_shapes(s, x.shape(), Op::name);
              first = false;
            }
          };
          (fold(a), ...);
          return s;
        },
        args_);
  }

  const Shape& shape() const noexcept { return shape_; }
  const args_type& args() const noexcept { return args_; }
  template <std::size_t I>
  const auto& arg() const noexcept {
    return std::get<I>(args_);
  }

 private:
  args_type args_;
  Shape shape_;
};

namespace detail {

// Element type an operand contributes (scalars contribute none).
template <class E>
struct operand_value {
  using type = void;
};
template <Operand E>
struct operand_value<E> {
  using type = typename std::remove_cvref_t<E>::value_type;
};

// Turns a user argument into a leaf or node held by the parent.
template <class T, class A>
auto capture(A&& a) {
  using D = std::remove_cvref_t<A>;
  if constexpr (is_tensor_v<D>) {
    if constexpr (std::is_lvalue_reference_v<A>) {
      return TensorRef<typename D::value_type, typename D::device_type>{&a};
    } else {
      return D(std::move(a));
    }
  } else if constexpr (is_expr_v<D>) {
    return D(std::forward<A>(a));
  } else {
    static_assert(std::is_arithmetic_v<D>,
                  "locus: an element-wise operand must be a locus::Tensor, a locus expression "
                  "or an arithmetic scalar");
    return Scalar<T>{static_cast<T>(a)};
  }
}

template <class... Ts>
struct first_non_void {
  using type = void;
};
template <class A, class... Rest>
struct first_non_void<A, Rest...> {
  using type = std::conditional_t<std::is_void_v<A>, typename first_non_void<Rest...>::type, A>;
};

template <class T, class... Ts>
inline constexpr bool all_same_or_void = ((std::is_void_v<Ts> || std::is_same_v<T, Ts>)&&...);

// Element types must agree; mixing is a compile error that names the fix.
template <class T, class... Ts>
struct require_same_element {
  static_assert(all_same_or_void<T, Ts...>,
                "locus: operands have different element types; convert one explicitly with "
                "locus::cast<T>(x)");
  static constexpr bool value = true;
};

}  // namespace detail

/// Builds a node from user arguments: checks devices and element types, captures leaves.
template <class Op, class... A>
auto make_expr(A&&... a) {
  using T = typename detail::first_non_void<typename detail::operand_value<A>::type...>::type;
  static_assert(!std::is_void_v<T>, "locus: an element-wise operation needs a tensor operand");
  static_assert(detail::require_same_element<T, typename detail::operand_value<A>::type...>::value);
  using Node = Expr<Op, decltype(detail::capture<T>(std::forward<A>(a)))...>;
  using Dev = typename Node::device_type;
  static_assert(
      detail::check_devices<Dev, decltype(detail::capture<T>(std::forward<A>(a)))...>::value);
  static_assert(!op::needs_floating_point<Op> || std::is_floating_point_v<T>,
                "locus: this operation needs a floating-point tensor; convert with "
                "locus::cast<float>(x)");
  return Node(detail::capture<T>(std::forward<A>(a))...);
}

/// Either operand of a binary operator may be a scalar, but one must be a tensor or node.
template <class A, class B>
concept BinaryOperands = (Operand<A> &&
                          (Operand<B> || std::is_arithmetic_v<std::remove_cvref_t<B>>)) ||
                         (Operand<B> && std::is_arithmetic_v<std::remove_cvref_t<A>>);

#define LOCUS_BINARY_OPERATOR_(SYMBOL, OP)                            \
  template <class A, class B>                                         \
  requires BinaryOperands<A, B>                                       \
  auto operator SYMBOL(A&& a, B&& b) {                                \
    return make_expr<op::OP>(std::forward<A>(a), std::forward<B>(b)); \
  }
LOCUS_BINARY_OPERATOR_(+, add)
LOCUS_BINARY_OPERATOR_(-, sub)
LOCUS_BINARY_OPERATOR_(*, mul)
LOCUS_BINARY_OPERATOR_(/, div)
#undef LOCUS_BINARY_OPERATOR_

template <Operand A>
auto operator-(A&& a) {
  return make_expr<op::negate>(std::forward<A>(a));
}

#define LOCUS_BINARY_FUNCTION_(NAME)                                    \
  template <class A, class B>                                           \
  requires BinaryOperands<A, B>                                         \
  auto NAME(A&& a, B&& b) {                                             \
    return make_expr<op::NAME>(std::forward<A>(a), std::forward<B>(b)); \
  }
LOCUS_BINARY_FUNCTION_(maximum)
LOCUS_BINARY_FUNCTION_(minimum)
LOCUS_BINARY_FUNCTION_(pow)
LOCUS_BINARY_FUNCTION_(greater)
LOCUS_BINARY_FUNCTION_(less)
LOCUS_BINARY_FUNCTION_(greater_equal)
LOCUS_BINARY_FUNCTION_(less_equal)
LOCUS_BINARY_FUNCTION_(equal)
#undef LOCUS_BINARY_FUNCTION_

#define LOCUS_UNARY_FUNCTION_(NAME)                 \
  template <Operand A>                              \
  auto NAME(A&& a) {                                \
    return make_expr<op::NAME>(std::forward<A>(a)); \
  }
LOCUS_UNARY_FUNCTION_(exp)
LOCUS_UNARY_FUNCTION_(log)
LOCUS_UNARY_FUNCTION_(sqrt)
LOCUS_UNARY_FUNCTION_(tanh)
LOCUS_UNARY_FUNCTION_(relu)
LOCUS_UNARY_FUNCTION_(sigmoid)
LOCUS_UNARY_FUNCTION_(abs)
LOCUS_UNARY_FUNCTION_(square)
LOCUS_UNARY_FUNCTION_(erf)
LOCUS_UNARY_FUNCTION_(erfc)
LOCUS_UNARY_FUNCTION_(expm1)
LOCUS_UNARY_FUNCTION_(log1p)
#undef LOCUS_UNARY_FUNCTION_

/// Converts the element type: `locus::cast<float>(labels)`.
template <Element To, Operand A>
auto cast(A&& a) {
  using From = typename std::remove_cvref_t<A>::value_type;
  using Leaf = decltype(detail::capture<From>(std::forward<A>(a)));
  return Expr<op::cast<To>, Leaf>(detail::capture<From>(std::forward<A>(a)));
}

/// `where(c, a, b)`: a where c != 0, else b (c may have another element type).
template <Operand C, class A, class B>
requires(Operand<A> || std::is_arithmetic_v<std::remove_cvref_t<A>>) &&
    (Operand<B> || std::is_arithmetic_v<std::remove_cvref_t<B>>)auto where(C&& c, A&& a, B&& b) {
  using CT = typename std::remove_cvref_t<C>::value_type;
  using T = typename detail::first_non_void<typename detail::operand_value<A>::type,
                                            typename detail::operand_value<B>::type, CT>::type;
  static_assert(detail::require_same_element<T, typename detail::operand_value<A>::type,
                                             typename detail::operand_value<B>::type>::value);
  using LC = decltype(detail::capture<CT>(std::forward<C>(c)));
  using LA = decltype(detail::capture<T>(std::forward<A>(a)));
  using LB = decltype(detail::capture<T>(std::forward<B>(b)));
  using Node = Expr<op::where, LC, LA, LB>;
  static_assert(detail::check_devices<typename Node::device_type, LC, LA, LB>::value);
  return Node(detail::capture<CT>(std::forward<C>(c)), detail::capture<T>(std::forward<A>(a)),
              detail::capture<T>(std::forward<B>(b)));
}

// ---- tree traversal helpers shared by the backends --------------------------------------

/// Number of tensor leaves (TensorRef or owned Tensor) in a tree.
template <class E>
struct leaf_count : std::integral_constant<std::size_t, 0> {};
template <class T, class Dev>
struct leaf_count<Tensor<T, Dev>> : std::integral_constant<std::size_t, 1> {};
template <class T, class Dev>
struct leaf_count<TensorRef<T, Dev>> : std::integral_constant<std::size_t, 1> {};
template <class Op, class... Args>
struct leaf_count<Expr<Op, Args...>>
    : std::integral_constant<std::size_t, (leaf_count<Args>::value + ... + 0)> {};
template <class E>
inline constexpr std::size_t leaf_count_v = leaf_count<std::remove_cvref_t<E>>::value;

/// Number of scalar leaves in a tree.
template <class E>
struct scalar_count : std::integral_constant<std::size_t, 0> {};
template <class T>
struct scalar_count<Scalar<T>> : std::integral_constant<std::size_t, 1> {};
template <class Op, class... Args>
struct scalar_count<Expr<Op, Args...>>
    : std::integral_constant<std::size_t, (scalar_count<Args>::value + ... + 0)> {};
template <class E>
inline constexpr std::size_t scalar_count_v = scalar_count<std::remove_cvref_t<E>>::value;

/// Index of the first leaf (or scalar) of argument I of a node, relative to the node.
template <template <class> class Count, std::size_t I, class... Args>
constexpr std::size_t child_offset() {
  constexpr std::size_t counts[] = {Count<Args>::value..., 0};
  std::size_t s = 0;
  for (std::size_t i = 0; i < I; ++i) s += counts[i];
  return s;
}

/// The tensor a leaf stands for.
template <class T, class Dev>
const Tensor<T, Dev>& leaf_tensor(const Tensor<T, Dev>& t) {
  return t;
}
template <class T, class Dev>
const Tensor<T, Dev>& leaf_tensor(const TensorRef<T, Dev>& r) {
  return r.get();
}

/// Calls f(tensor) for each tensor leaf, in leaf-index order.
template <class E, class F>
void for_each_leaf(const E& e, F&& f) {
  if constexpr (is_tensor_v<E> || is_tensor_ref<E>::value) {
    f(leaf_tensor(e));
  } else if constexpr (is_expr_v<E>) {
    std::apply([&](const auto&... a) { (for_each_leaf(a, f), ...); }, e.args());
  }
}

/// Calls f(value) for each scalar leaf, in scalar-index order.
template <class E, class F>
void for_each_scalar(const E& e, F&& f) {
  if constexpr (is_scalar_leaf<E>::value) {
    f(e.value);
  } else if constexpr (is_expr_v<E>) {
    std::apply([&](const auto&... a) { (for_each_scalar(a, f), ...); }, e.args());
  }
}

}  // namespace locus
