// Element-wise expression trees (expr.hpp) compiled to one OpenCL C kernel per tree type.
//
// The source depends only on the type of the tree, so it is generated once per type (a
// function-local static) and compiled once per device (the program cache), as VexCL
// does. Tensor leaves become `__global const T* pL` parameters and scalar leaves become
// by-value parameters `sS`, in the leaf order of expr.hpp's for_each_leaf/for_each_scalar.
//
// Two kernels share the program:
//  - locus_expr_flat: every leaf has the output's shape; element i reads pL[i].
//  - locus_expr_bcast: leaves are read through broadcast strides (0 on broadcast axes).
//    The host merges axes that are contiguous for every leaf first, so the usual
//    bias-add or row-scaling case runs with rank 2. Dimensions and strides are passed as
//    kernel arguments (innermost first), padded to Shape::max_rank.
// Index arithmetic in the broadcast kernel uses 32-bit integers (64-bit division is slow
// on GPUs) unless the tensor has 2^32 elements or more; the 64-bit variant is a second
// program built only if needed.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../detail/contract.hpp"
#include "../../expr.hpp"
#include "../../shape.hpp"
#include "kernels/common.hpp"
#include "program_cache.hpp"

namespace locus::backend::opencl::codegen {

using kernels::cl_type_name;

template <class T>
std::string zero() {
  return std::string("((") + cl_type_name<T>() + ")0)";
}
template <class T>
std::string one() {
  return std::string("((") + cl_type_name<T>() + ")1)";
}

/// The OpenCL C spelling of one node; `a` holds the operands' texts, T is the operands'
/// element type (the first operand's; for where, the branches'), C the condition's.
template <class Op, class T, class C>
std::string spell(const std::vector<std::string>& a) {
  constexpr bool fp = std::is_floating_point_v<T>;
  const std::string tn = cl_type_name<T>();
  auto bin = [&](const char* sym) { return "(" + a[0] + " " + sym + " " + a[1] + ")"; };
  auto cmp = [&](const char* sym) {
    return "((" + a[0] + " " + sym + " " + a[1] + ") ? " + one<T>() + " : " + zero<T>() + ")";
  };
  auto call = [&](const char* f) { return std::string(f) + "(" + a[0] + ")"; };
  if constexpr (std::is_same_v<Op, op::add>)
    return bin("+");
  else if constexpr (std::is_same_v<Op, op::sub>)
    return bin("-");
  else if constexpr (std::is_same_v<Op, op::mul>)
    return bin("*");
  else if constexpr (std::is_same_v<Op, op::div>)
    return bin("/");
  // The host spells max/min as `a > b ? a : b` (NaN in b loses); so does the device.
  else if constexpr (std::is_same_v<Op, op::maximum>)
    return "locus_max_" + tn + "(" + a[0] + ", " + a[1] + ")";
  else if constexpr (std::is_same_v<Op, op::minimum>)
    return "locus_min_" + tn + "(" + a[0] + ", " + a[1] + ")";
  else if constexpr (std::is_same_v<Op, op::pow>)
    return "pow(" + a[0] + ", " + a[1] + ")";
  else if constexpr (std::is_same_v<Op, op::greater>)
    return cmp(">");
  else if constexpr (std::is_same_v<Op, op::less>)
    return cmp("<");
  else if constexpr (std::is_same_v<Op, op::greater_equal>)
    return cmp(">=");
  else if constexpr (std::is_same_v<Op, op::less_equal>)
    return cmp("<=");
  else if constexpr (std::is_same_v<Op, op::equal>)
    return cmp("==");
  else if constexpr (std::is_same_v<Op, op::negate>)
    return "(-" + a[0] + ")";
  else if constexpr (std::is_same_v<Op, op::exp>)
    return call("exp");
  else if constexpr (std::is_same_v<Op, op::log>)
    return call("log");
  else if constexpr (std::is_same_v<Op, op::sqrt>)
    return call("sqrt");
  else if constexpr (std::is_same_v<Op, op::tanh>)
    return call("tanh");
  else if constexpr (std::is_same_v<Op, op::relu>)
    return "locus_max_" + tn + "(" + a[0] + ", " + zero<T>() + ")";
  else if constexpr (std::is_same_v<Op, op::sigmoid>)
    return "locus_sigmoid_" + tn + "(" + a[0] + ")";
  // OpenCL's abs(int) returns uint; fabs keeps the floating type.
  else if constexpr (std::is_same_v<Op, op::abs>)
    return fp ? call("fabs") : "((int)abs(" + a[0] + "))";
  else if constexpr (std::is_same_v<Op, op::square>)
    return "locus_square_" + tn + "(" + a[0] + ")";
  // OpenCL C 1.2 builtins (float and double).
  else if constexpr (std::is_same_v<Op, op::erf>)
    return call("erf");
  else if constexpr (std::is_same_v<Op, op::erfc>)
    return call("erfc");
  else if constexpr (std::is_same_v<Op, op::expm1>)
    return call("expm1");
  else if constexpr (std::is_same_v<Op, op::log1p>)
    return call("log1p");
  else if constexpr (std::is_same_v<Op, op::where>)
    return "((" + a[0] + " != " + zero<C>() + ") ? " + a[1] + " : " + a[2] + ")";
  else {
    static_assert(::locus::detail::dependent_false<Op>,
                  "locus: this element-wise operation has no OpenCL implementation yet");
    return {};
  }
}

template <class To, class T, class C>
std::string spell_cast(const std::vector<std::string>& a) {
  // A C cast converts float to int with truncation toward zero, as static_cast does.
  return std::string("((") + cl_type_name<To>() + ")" + a[0] + ")";
}

template <class X>
struct cast_target {};
template <class To>
struct cast_target<op::cast<To>> {
  using type = To;
};

/// Text and parameter types of a (sub)tree whose first leaf is L and first scalar S.
template <class E, std::size_t L, std::size_t S>
struct emit;

template <class T, class D, std::size_t L, std::size_t S>
struct emit<TensorRef<T, D>, L, S> {
  static std::string text(bool bcast) {
    return "p" + std::to_string(L) + (bcast ? "[o" + std::to_string(L) + "]" : "[i]");
  }
};
template <class T, class D, std::size_t L, std::size_t S>
struct emit<Tensor<T, D>, L, S> : emit<TensorRef<T, D>, L, S> {};
template <class T, std::size_t L, std::size_t S>
struct emit<Scalar<T>, L, S> {
  static std::string text(bool) { return "s" + std::to_string(S); }
};

template <class Op, class... Args, std::size_t L, std::size_t S>
struct emit<Expr<Op, Args...>, L, S> {
  static std::string text(bool bcast) { return impl(bcast, std::index_sequence_for<Args...>{}); }

 private:
  template <std::size_t... I>
  static std::string impl(bool bcast, std::index_sequence<I...>) {
    const std::vector<std::string> a{
        emit<Args, L + child_offset<leaf_count, I, Args...>(),
             S + child_offset<scalar_count, I, Args...>()>::text(bcast)...};
    using First = typename std::tuple_element_t<0, std::tuple<Args...>>::value_type;
    if constexpr (std::is_same_v<Op, op::where>) {
      using Branch = typename std::tuple_element_t<1, std::tuple<Args...>>::value_type;
      return spell<Op, Branch, First>(a);
    } else if constexpr (requires { typename cast_target<Op>::type; }) {
      return spell_cast<typename cast_target<Op>::type, First, First>(a);
    } else {
      return spell<Op, First, First>(a);
    }
  }
};

/// Leaf and scalar element types of a tree, in leaf order.
template <class E>
struct collect {
  static void run(std::vector<std::string>&, std::vector<std::string>&, bool&) {}
};
template <class T, class D>
struct collect<TensorRef<T, D>> {
  static void run(std::vector<std::string>& leaves, std::vector<std::string>&, bool& dbl) {
    leaves.push_back(cl_type_name<T>());
    dbl = dbl || std::is_same_v<T, double>;
  }
};
template <class T, class D>
struct collect<Tensor<T, D>> : collect<TensorRef<T, D>> {};
template <class T>
struct collect<Scalar<T>> {
  static void run(std::vector<std::string>&, std::vector<std::string>& scalars, bool& dbl) {
    scalars.push_back(cl_type_name<T>());
    dbl = dbl || std::is_same_v<T, double>;
  }
};
template <class Op, class... Args>
struct collect<Expr<Op, Args...>> {
  static void run(std::vector<std::string>& leaves, std::vector<std::string>& scalars, bool& dbl) {
    (collect<Args>::run(leaves, scalars, dbl), ...);
    dbl = dbl || std::is_same_v<typename Expr<Op, Args...>::value_type, double>;
  }
};

/// Helpers the spellings use, per element type: one evaluation of the operand each.
inline std::string helpers(bool dbl) {
  std::string s;
  for (const char* t : {"float", "int", "double"}) {
    if (std::string(t) == "double" && !dbl) continue;
    const std::string T = t;
    s += "inline " + T + " locus_max_" + T + "(" + T + " a, " + T +
         " b) { return a > b ? a : b; }\n";
    s += "inline " + T + " locus_min_" + T + "(" + T + " a, " + T +
         " b) { return a < b ? a : b; }\n";
    s += "inline " + T + " locus_square_" + T + "(" + T + " a) { return a * a; }\n";
    if (T != "int") {
      s += "inline " + T + " locus_sigmoid_" + T + "(" + T + " a) { return (" + T + ")1 / ((" + T +
           ")1 + exp(-a)); }\n";
    }
  }
  return s;
}

/// The OpenCL C source of the kernels of tree E producing Out.
template <class Out, class E>
std::string expression_source() {
  constexpr std::size_t nl = leaf_count_v<E>, ns = scalar_count_v<E>;
  std::vector<std::string> leaves, scalars;
  bool dbl = std::is_same_v<Out, double>;
  collect<E>::run(leaves, scalars, dbl);
  std::string params;
  for (std::size_t l = 0; l < nl; ++l)
    params += ", __global const " + leaves[l] + "* p" + std::to_string(l);
  for (std::size_t s = 0; s < ns; ++s) params += ", " + scalars[s] + " s" + std::to_string(s);
  const std::string out_t = cl_type_name<Out>();
  std::string src;
  if (dbl) src += "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n";
  src += helpers(dbl);
  // restrict lets the device compiler vectorise across work-items. It holds even for an
  // in-place assignment (out == pL): element i is read only by work-item i, before it
  // writes element i, so no access of one element is ordered against another's.
  std::string flat_params;
  for (std::size_t l = 0; l < nl; ++l)
    flat_params += ", __global const " + leaves[l] + "* restrict p" + std::to_string(l);
  for (std::size_t s = 0; s < ns; ++s) flat_params += ", " + scalars[s] + " s" + std::to_string(s);
  src += "__kernel void locus_expr_flat(__global " + out_t + "* restrict out, ulong n" +
         flat_params + ") {\n" +
         "  const size_t i = get_global_id(0);\n  if (i >= n) return;\n  out[i] = " +
         emit<E, 0, 0>::text(false) + ";\n}\n";
  std::string dims, strides, walk;
  for (std::size_t d = 0; d < Shape::max_rank; ++d) {
    const std::string ds = std::to_string(d);
    dims += ", IDX d" + ds;
    walk += "  if (rank > " + ds + "u) {\n    const IDX c = rem % d" + ds + ";\n    rem /= d" + ds +
            ";\n";
    for (std::size_t l = 0; l < nl; ++l) {
      const std::string ls = std::to_string(l);
      strides += ", IDX st" + ls + "_" + ds;
      walk += "    o" + ls + " += c * st" + ls + "_" + ds + ";\n";
    }
    walk += "  }\n";
  }
  std::string offsets;
  for (std::size_t l = 0; l < nl; ++l) offsets += "  IDX o" + std::to_string(l) + " = 0;\n";
  src += "#define IDX LOCUS_IDX\n__kernel void locus_expr_bcast(__global " + out_t +
         "* out, ulong n, uint rank" + dims + strides + params + ") {\n" +
         "  const size_t gi = get_global_id(0);\n  if (gi >= n) return;\n  IDX rem = (IDX)gi;\n" +
         offsets + walk + "  out[gi] = " + emit<E, 0, 0>::text(true) + ";\n}\n";
  return src;
}

/// The program of tree E (one per type; wide = 64-bit broadcast indices).
template <class Out, class E>
const program_source& expression_program(bool wide) {
  static const std::string text = expression_source<Out, E>();
  static const program_source narrow_src(
      "expression<" + std::to_string(leaf_count_v<E>) + " leaves> -> " + cl_type_name<Out>(), text,
      std::string(kernels::base_options()) + " -DLOCUS_IDX=uint");
  static const program_source wide_src(narrow_src.name + " (64-bit indices)", text,
                                       std::string(kernels::base_options()) + " -DLOCUS_IDX=ulong");
  return wide ? wide_src : narrow_src;
}

/// Output shape, dims and per-leaf strides after dropping size-1 axes and merging axes
/// that are contiguous for every leaf. Dims and strides are innermost first.
struct broadcast_plan {
  std::size_t rank = 0;
  std::array<std::size_t, Shape::max_rank> dims{};
  std::vector<std::array<std::size_t, Shape::max_rank>> strides;  // per leaf
};

inline broadcast_plan plan_broadcast(const Shape& out, const std::vector<Shape>& leaf_shapes) {
  const std::size_t nl = leaf_shapes.size();
  std::vector<std::array<std::size_t, Shape::max_rank>> full(nl);
  for (std::size_t l = 0; l < nl; ++l) full[l] = broadcast_strides(leaf_shapes[l], out);
  // Outermost-first lists without size-1 axes.
  std::vector<std::size_t> dims;
  std::vector<std::vector<std::size_t>> st(nl);
  for (std::size_t d = 0; d < out.rank(); ++d) {
    if (out[d] == 1) continue;
    const bool merge = !dims.empty() && [&] {
      for (std::size_t l = 0; l < nl; ++l) {
        if (st[l].back() != full[l][d] * out[d]) return false;
      }
      return true;
    }();
    if (merge) {
      dims.back() *= out[d];
      for (std::size_t l = 0; l < nl; ++l) st[l].back() = full[l][d];
    } else {
      dims.push_back(out[d]);
      for (std::size_t l = 0; l < nl; ++l) st[l].push_back(full[l][d]);
    }
  }
  broadcast_plan p;
  p.rank = dims.size();
  p.strides.resize(nl);
  for (std::size_t k = 0; k < p.rank; ++k) {
    p.dims[k] = dims[p.rank - 1 - k];
    for (std::size_t l = 0; l < nl; ++l) p.strides[l][k] = st[l][p.rank - 1 - k];
  }
  for (std::size_t k = p.rank; k < Shape::max_rank; ++k) p.dims[k] = 1;
  return p;
}

}  // namespace locus::backend::opencl::codegen
