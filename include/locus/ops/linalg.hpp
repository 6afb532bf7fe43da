// Matrix products and transposes.
#pragma once

#include <cstddef>
#include <string>

#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../tensor.hpp"

namespace locus {

/// Which operands of matmul enter transposed (their last two axes swapped).
struct matmul_options {
  bool transpose_a = false;
  bool transpose_b = false;
};

/// Row-major matrix product. 2-D x 2-D gives [m, n]; with a leading batch axis on either
/// or both operands ([B, m, k] x [B, k, n], [B, m, k] x [k, n], [m, k] x [B, k, n]) the
/// product is batched and a 2-D operand is shared by every batch entry.
template <class T, class DA, class DB>
Tensor<T, DA> matmul(const Tensor<T, DA>& a, const Tensor<T, DB>& b, matmul_options o = {}) {
  (void)sizeof(detail::require_same_device<DA, DB>);
  if constexpr (std::is_same_v<DA, DB>) {
    using B = backend_t<DA>;
    auto bad = [&](const std::string& why) {
      return shape_error("locus::matmul: " + why + " (a: " + to_string(a.shape()) +
                         (o.transpose_a ? " transposed" : "") + ", b: " + to_string(b.shape()) +
                         (o.transpose_b ? " transposed" : "") + ")");
    };
    if (a.rank() < 2 || a.rank() > 3 || b.rank() < 2 || b.rank() > 3) {
      throw bad("operands must be 2-D matrices or 3-D batches of matrices");
    }
    const std::size_t ra = a.rank(), rb = b.rank();
    const std::size_t ar = a.shape()[ra - 2], ac = a.shape()[ra - 1];
    const std::size_t br = b.shape()[rb - 2], bc = b.shape()[rb - 1];
    const std::size_t m = o.transpose_a ? ac : ar, k = o.transpose_a ? ar : ac;
    const std::size_t kb = o.transpose_b ? bc : br, n = o.transpose_b ? br : bc;
    if (k != kb) throw bad("inner dimensions differ, " + std::to_string(k) + " vs " + std::to_string(kb));
    const std::size_t ba = ra == 3 ? a.shape()[0] : 1, bb = rb == 3 ? b.shape()[0] : 1;
    if (ra == 3 && rb == 3 && ba != bb) {
      throw bad("batch sizes differ, " + std::to_string(ba) + " vs " + std::to_string(bb));
    }
    const std::size_t batch = std::max(ba, bb);
    Tensor<T, DA> c(uninitialized, ra == 3 || rb == 3 ? Shape{batch, m, n} : Shape{m, n});
    if (c.size() == 0) return c;
    if (k == 0) {
      B::fill(c.storage(), T(0));
      return c;
    }
    gemm_args<typename B::template buffer<T>, T> g{};
    g.batch = batch;
    g.m = m;
    g.n = n;
    g.k = k;
    g.trans_a = o.transpose_a;
    g.trans_b = o.transpose_b;
    g.alpha = T(1);
    g.a = &a.storage();
    g.lda = ac;
    g.stride_a = ra == 3 ? ar * ac : 0;
    g.b = &b.storage();
    g.ldb = bc;
    g.stride_b = rb == 3 ? br * bc : 0;
    g.beta = T(0);
    g.c = &c.storage();
    g.ldc = n;
    g.stride_c = m * n;
    B::gemm(g);
    return c;
  } else {
    return Tensor<T, DA>();
  }
}

/// matmul of expressions: evaluates them first.
template <Operand A, Operand B>
  requires(!is_tensor_v<A> || !is_tensor_v<B>)
auto matmul(const A& a, const B& b, matmul_options o = {}) {
  return matmul(eval(a), eval(b), o);
}

/// The transpose of a 2-D tensor, as a new tensor on the same device.
template <class T, class D>
Tensor<T, D> transpose(const Tensor<T, D>& x) {
  if (x.rank() != 2) {
    throw shape_error("locus::transpose: expects a 2-D tensor, got shape " + to_string(x.shape()));
  }
  Tensor<T, D> out(uninitialized, Shape{x.shape()[1], x.shape()[0]});
  if (x.size()) backend_t<D>::transpose2d(x.storage(), x.shape()[0], x.shape()[1], out.storage());
  return out;
}

}  // namespace locus
