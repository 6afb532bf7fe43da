// Fused evaluation of element-wise expression trees on the host.
//
// The whole tree is evaluated per SIMD batch: each tensor leaf is loaded once, every node
// applies its op to xsimd batches, and the result is stored once, so `a * b + c` touches
// memory exactly as a hand-written STREAM triad does. Broadcasting is handled row by row:
// the output is viewed as [rows, cols] (cols = last extent); along the last axis a leaf is
// either contiguous or a broadcast scalar, and each row starts at an offset computed from
// the leaf's broadcast strides. Rows (or, for one flat row, chunks) are split across the
// thread pool.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "simd.hpp"

#include "../../expr.hpp"
#include "../../shape.hpp"
#include "thread_pool.hpp"

namespace locus::backend::cpu {

namespace detail {

template <class V>
constexpr bool is_batch_v = !std::is_arithmetic_v<V>;

template <class V>
V vmax(const V& a, const V& b) {
  if constexpr (is_batch_v<V>) {
    return xsimd::max(a, b);
  } else {
    return a > b ? a : b;
  }
}
template <class V>
V vmin(const V& a, const V& b) {
  if constexpr (is_batch_v<V>) {
    return xsimd::min(a, b);
  } else {
    return a < b ? a : b;
  }
}
// Comparisons yield 1 or 0 in the operands' element type.
template <class V, class C>
V from_mask(const C& mask) {
  if constexpr (is_batch_v<V>) {
    return xsimd::select(mask, V(1), V(0));
  } else {
    return mask ? V(1) : V(0);
  }
}

// xsimd 8.1's double erfc loses accuracy beyond x = 2.2 (1e4 ulps there, 1e7 in the far
// tail), so double batches take the host's libm lane by lane; float keeps xsimd's kernel
// (a few ulps where erfc is a normal float).
template <class V>
V erfc_of(const V& x) {
  if constexpr (is_batch_v<V>) {
    if constexpr (std::is_same_v<typename V::value_type, double>) {
      std::array<double, V::size> lanes;
      x.store_unaligned(lanes.data());
      for (double& v : lanes) v = std::erfc(v);
      return V::load_unaligned(lanes.data());
    } else {
      return xsimd::erfc(x);
    }
  } else {
    return xsimd::erfc(x);
  }
}

}  // namespace detail

/// The host implementation of each op tag, for scalars and xsimd batches alike.
template <class Op>
struct cpu_op;

#define LOCUS_CPU_OP_(TAG, ...)              \
  template <>                                \
  struct cpu_op<op::TAG> {                   \
    template <class V>                       \
    static V apply(const V& a, const V& b) { \
      (void)b;                               \
      return __VA_ARGS__;                    \
    }                                        \
  };
LOCUS_CPU_OP_(add, a + b)
LOCUS_CPU_OP_(sub, a - b)
LOCUS_CPU_OP_(mul, a* b)
LOCUS_CPU_OP_(div, a / b)
LOCUS_CPU_OP_(maximum, detail::vmax(a, b))
LOCUS_CPU_OP_(minimum, detail::vmin(a, b))
LOCUS_CPU_OP_(pow, xsimd::pow(a, b))
LOCUS_CPU_OP_(greater, detail::from_mask<V>(a > b))
LOCUS_CPU_OP_(less, detail::from_mask<V>(a < b))
LOCUS_CPU_OP_(greater_equal, detail::from_mask<V>(a >= b))
LOCUS_CPU_OP_(less_equal, detail::from_mask<V>(a <= b))
LOCUS_CPU_OP_(equal, detail::from_mask<V>(a == b))
#undef LOCUS_CPU_OP_

#define LOCUS_CPU_UNARY_(TAG, ...) \
  template <>                      \
  struct cpu_op<op::TAG> {         \
    template <class V>             \
    static V apply(const V& x) {   \
      return __VA_ARGS__;          \
    }                              \
  };
LOCUS_CPU_UNARY_(negate, -x)
LOCUS_CPU_UNARY_(exp, xsimd::exp(x))
LOCUS_CPU_UNARY_(log, xsimd::log(x))
LOCUS_CPU_UNARY_(sqrt, xsimd::sqrt(x))
LOCUS_CPU_UNARY_(tanh, xsimd::tanh(x))
LOCUS_CPU_UNARY_(relu, detail::vmax(x, V(0)))
LOCUS_CPU_UNARY_(sigmoid, V(1) / (V(1) + xsimd::exp(-x)))
LOCUS_CPU_UNARY_(abs, xsimd::abs(x))
LOCUS_CPU_UNARY_(square, x* x)
LOCUS_CPU_UNARY_(erf, xsimd::erf(x))
LOCUS_CPU_UNARY_(erfc, detail::erfc_of(x))
LOCUS_CPU_UNARY_(expm1, xsimd::expm1(x))
LOCUS_CPU_UNARY_(log1p, xsimd::log1p(x))
#undef LOCUS_CPU_UNARY_

template <class To>
struct cpu_op<op::cast<To>> {
  template <class V>
  static auto apply(const V& x) {
    if constexpr (detail::is_batch_v<V>) {
      return xsimd::batch_cast<To>(x);
    } else {
      return static_cast<To>(x);
    }
  }
};

template <>
struct cpu_op<op::where> {
  template <class C, class V>
  static V apply(const C& c, const V& a, const V& b) {
    if constexpr (detail::is_batch_v<V>) {
      if constexpr (std::is_same_v<C, V>) {
        return xsimd::select(c != C(0), a, b);
      } else {
        using T = typename V::value_type;
        const V cv = xsimd::batch_cast<T>(c);
        return xsimd::select(cv != V(0), a, b);
      }
    } else {
      return c != C(0) ? a : b;
    }
  }
};

// ---- which trees can run on SIMD batches ------------------------------------------------

template <class E>
struct simd_ok : std::true_type {};
template <class Op, class... Args>
struct simd_ok<Expr<Op, Args...>> {
  using T = typename Expr<Op, Args...>::value_type;
  // Integer trees stay scalar for division (xsimd has no vector integer division) and for
  // masks: xsimd 8.1's integer select on AVX-512BW instantiates byte-blend intrinsics
  // that do not compile without optimisation. Every type in a tree must also share one
  // lane count.
  static constexpr bool integer_mask =
      std::is_integral_v<T> &&
      (std::is_same_v<Op, op::div> || std::is_same_v<Op, op::greater> ||
       std::is_same_v<Op, op::less> || std::is_same_v<Op, op::greater_equal> ||
       std::is_same_v<Op, op::less_equal> || std::is_same_v<Op, op::equal> ||
       std::is_same_v<Op, op::where>);
  static constexpr bool value = !integer_mask &&
                                ((sizeof(typename Args::value_type) == sizeof(T)) && ...) &&
                                (simd_ok<Args>::value && ...);
};

// ---- loading leaves and applying nodes --------------------------------------------------

struct leaf_cursor {
  const void* ptr;  // start of the current row (or chunk) of this leaf
  bool contiguous;  // along the last axis: true = stride 1, false = broadcast (stride 0)
};

// child_offset takes the tuple's element types; give it the node's argument pack.
template <class E>
struct args_of;
template <class Op, class... Args>
struct args_of<Expr<Op, Args...>> {
  template <std::size_t I>
  static constexpr std::size_t leaf_offset = child_offset<leaf_count, I, Args...>();
};

template <bool Simd, class T>
using lane_t = std::conditional_t<Simd, simd<T>, T>;

template <bool Simd, bool AllContiguous, std::size_t L, class E>
auto load(const E& e, const leaf_cursor* cur, std::size_t j) {
  using T = typename E::value_type;
  if constexpr (is_scalar_leaf<E>::value) {
    return lane_t<Simd, T>(e.value);
  } else if constexpr (is_expr_v<E>) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      using Op = typename E::op_type;
      return cpu_op<Op>::apply(load<Simd, AllContiguous, L + args_of<E>::template leaf_offset<I>>(
          e.template arg<I>(), cur, j)...);
    }
    (std::make_index_sequence<std::tuple_size_v<typename E::args_type>>{});
  } else {
    const T* p = static_cast<const T*>(cur[L].ptr);
    if constexpr (Simd) {
      if (AllContiguous || cur[L].contiguous) return simd<T>::load_unaligned(p + j);
      return simd<T>(p[0]);
    } else {
      return (AllContiguous || cur[L].contiguous) ? p[j] : p[0];
    }
  }
}

/// Evaluates `len` consecutive outputs starting at the cursors' positions.
template <bool AllContiguous, class T, class E>
void eval_run(const E& e, const leaf_cursor* cur, T* out, std::size_t len) {
  std::size_t j = 0;
  if constexpr (simd_ok<E>::value) {
    constexpr std::size_t W = simd<T>::size;
    for (; j + W <= len; j += W) load<true, AllContiguous, 0>(e, cur, j).store_unaligned(out + j);
  }
  for (; j < len; ++j) out[j] = load<false, AllContiguous, 0>(e, cur, j);
}

/// out[0 .. e.shape().size()) = e, in one pass, using the thread pool for large work.
template <class T, class E>
void assign_expression(T* out, const E& e) {
  const Shape& shape = e.shape();
  const std::size_t n = shape.size();
  if (n == 0) return;
  constexpr std::size_t L = leaf_count_v<E>;
  std::array<const char*, L + 1> base{};
  std::array<std::size_t, L + 1> elem{};
  std::array<std::array<std::size_t, Shape::max_rank>, L + 1> strides{};
  bool all_full = true;
  std::size_t k = 0;
  for_each_leaf(e, [&](const auto& t) {
    base[k] = reinterpret_cast<const char*>(t.storage().data());
    elem[k] = sizeof(typename std::remove_cvref_t<decltype(t)>::value_type);
    strides[k] = broadcast_strides(t.shape(), shape);
    all_full = all_full && t.shape() == shape;
    ++k;
  });
  constexpr std::size_t grain = 1 << 15;
  if (all_full) {
    parallel_for(n, grain, [&](std::size_t b, std::size_t end) {
      std::array<leaf_cursor, L + 1> cur{};
      for (std::size_t i = 0; i < L; ++i) cur[i] = {base[i] + b * elem[i], true};
      eval_run<true>(e, cur.data(), out + b, end - b);
    });
    return;
  }
  const std::size_t rank = shape.rank();
  const std::size_t cols = shape[rank - 1];
  const std::size_t rows = n / cols;
  parallel_for(rows, std::max<std::size_t>(1, grain / cols), [&](std::size_t r0, std::size_t r1) {
    std::array<leaf_cursor, L + 1> cur{};
    for (std::size_t r = r0; r < r1; ++r) {
      // Multi-index of row r over the leading rank-1 axes, then each leaf's row offset.
      std::array<std::size_t, Shape::max_rank> idx{};
      std::size_t rem = r;
      for (std::size_t d = rank - 1; d-- > 0;) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
      }
      for (std::size_t i = 0; i < L; ++i) {
        std::size_t off = 0;
        for (std::size_t d = 0; d + 1 < rank; ++d) off += idx[d] * strides[i][d];
        cur[i] = {base[i] + off * elem[i], strides[i][rank - 1] != 0};
      }
      eval_run<false>(e, cur.data(), out + r * cols, cols);
    }
  });
}

}  // namespace locus::backend::cpu
