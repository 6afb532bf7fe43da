// Matrix products and transposes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>

#include "../detail/contract.hpp"
#include "../error.hpp"
#include "../tensor.hpp"

namespace locus {

/// Which operands of matmul enter transposed (their last two axes swapped).
struct matmul_options {
  bool transpose_a = false;
  bool transpose_b = false;
};

namespace detail {

/// C = act(alpha op(A) op(B) + beta C + bias) for contiguous row-major storage: A is
/// stored as `batch_a` matrices of ar x ac, B as `batch_b` matrices of br x bc (a batch
/// count of 1 shares the operand). Shapes of the tensors are not consulted, so a
/// [KH, KW, C, F] convolution kernel can enter as the [KH*KW*C, F] matrix it is in memory.
/// The epilogue (bias: n values, one per column of C, or null; act) is applied as the
/// GEMM writes C (gemm_args); it takes floating-point types only. b_colsum (one product
/// only) receives the n column sums of op(B): a layer's bias gradient beside X^T dZ.
template <class T, class D>
void gemm_into(const Tensor<T, D>& a, std::size_t batch_a, std::size_t ar, std::size_t ac,
               const Tensor<T, D>& b, std::size_t batch_b, std::size_t br, std::size_t bc,
               matmul_options o, Tensor<T, D>& c, T alpha = T(1), T beta = T(0),
               const std::type_identity_t<Tensor<T, D>>* bias = nullptr,
               gemm_activation act = gemm_activation::linear,
               std::type_identity_t<Tensor<T, D>>* b_colsum = nullptr) {
  using B = backend_t<D>;
  const std::size_t m = o.transpose_a ? ac : ar, k = o.transpose_a ? ar : ac;
  const std::size_t n = o.transpose_b ? br : bc;
  const bool epilogue = bias != nullptr || act != gemm_activation::linear;
  if (epilogue && !std::is_floating_point_v<T>) {
    throw argument_error(
        "locus: a GEMM epilogue (bias, activation) needs a floating-point element type");
  }
  if (bias && bias->size() != n) {
    throw shape_error("locus: a GEMM bias needs " + std::to_string(n) +
                      " values (one per column), got shape " + to_string(bias->shape()));
  }
  // A batch count of 0 on either side means no products (not one shared product).
  const std::size_t batch = batch_a && batch_b ? std::max(batch_a, batch_b) : 0;
  if (b_colsum) {
    if (b_colsum->size() != n) {
      throw shape_error("locus: the column sums of a GEMM's B need " + std::to_string(n) +
                        " values, got shape " + to_string(b_colsum->shape()));
    }
    if (batch != 1)
      throw argument_error("locus: the column sums of a GEMM's B are for one product only");
    if (k == 0) {  // sums of nothing
      if (n) B::fill(b_colsum->storage(), T(0));
      b_colsum = nullptr;
    }
  }
  // Without C (m == 0) the backends still sum the columns of B.
  if (batch * m * n == 0 && !(b_colsum && n)) return;
  if (k == 0 && !epilogue) {
    if (beta == T(0)) B::fill(c.storage(), T(0));
    return;
  }
  gemm_args<typename B::template buffer<T>, T> g{};
  g.batch = batch;
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = o.transpose_a;
  g.trans_b = o.transpose_b;
  g.alpha = alpha;
  g.a = &a.storage();
  g.lda = ac;
  g.stride_a = batch_a > 1 ? ar * ac : 0;
  g.b = &b.storage();
  g.ldb = bc;
  g.stride_b = batch_b > 1 ? br * bc : 0;
  g.beta = beta;
  g.c = &c.storage();
  g.ldc = n;
  g.stride_c = m * n;
  if (k == 0) {
    // Nothing is read from A and B (possibly empty buffers): C stands in for both.
    g.a = g.b = &c.storage();
    g.lda = g.ldb = 1;
    g.stride_a = g.stride_b = 0;
  }
  g.bias = bias ? &bias->storage() : nullptr;
  g.act = act;
  g.b_colsum = b_colsum ? &b_colsum->storage() : nullptr;
  B::gemm(g);
}

}  // namespace detail

/// Row-major matrix product. 2-D x 2-D gives [m, n]; with a leading batch axis on either
/// or both operands ([B, m, k] x [B, k, n], [B, m, k] x [k, n], [m, k] x [B, k, n]) the
/// product is batched and a 2-D operand is shared by every batch entry.
template <class T, class DA, class TB, class DB>
Tensor<T, DA> matmul(const Tensor<T, DA>& a, const Tensor<TB, DB>& b, matmul_options o = {}) {
  (void)sizeof(detail::require_same_device<DA, DB>);
  if constexpr (std::is_same_v<DA, DB>) (void)sizeof(detail::element_type_mismatch<T, TB>);
  if constexpr (std::is_same_v<DA, DB> && std::is_same_v<T, TB>) {
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
    if (k != kb)
      throw bad("inner dimensions differ, " + std::to_string(k) + " vs " + std::to_string(kb));
    const std::size_t ba = ra == 3 ? a.shape()[0] : 1, bb = rb == 3 ? b.shape()[0] : 1;
    if (ra == 3 && rb == 3 && ba != bb) {
      throw bad("batch sizes differ, " + std::to_string(ba) + " vs " + std::to_string(bb));
    }
    // An empty batch (extent 0) stays empty: max(ba, bb) would turn [0, m, k] x [k, n] into
    // one product that reads the missing operand.
    const std::size_t batch = ra == 3 ? ba : bb;
    Tensor<T, DA> c(uninitialized, ra == 3 || rb == 3 ? Shape{batch, m, n} : Shape{m, n});
    detail::gemm_into(a, ba, ar, ac, b, bb, br, bc, o, c);
    return c;
  } else {
    return Tensor<T, DA>();
  }
}

/// matmul of expressions: evaluates them first.
template <Operand A, Operand B>
requires(!is_tensor_v<A> || !is_tensor_v<B>) auto matmul(const A& a, const B& b,
                                                         matmul_options o = {}) {
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
