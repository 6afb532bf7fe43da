// The seam between device-neutral code (Tensor, expressions, ops, layers) and the code
// that runs on one kind of device.
//
// `backend_for<Dev>` is specialised once per device kind:
//   backend/cpu/backend.hpp      backend_for<Device<CPU>>
//   backend/opencl/backend.hpp   backend_for<Device<GPU, N>>
// There is deliberately no primary definition: a device without a backend does not
// compile, so no operation can quietly run somewhere else.
//
// A backend B provides (T is float, double or int32_t):
//
//   template <class T> using buffer = ...;
//       Owning, movable, non-copyable storage of n elements on the device.
//       B::buffer<T>(n) allocates (contents unspecified); buf.size() is n.
//   template <class T> static void fill(buffer<T>& dst, T value);
//   template <class T> static void copy(const buffer<T>& src, std::size_t src_offset,
//                                       buffer<T>& dst, std::size_t dst_offset, std::size_t n);
//       Device-local copy of n elements (no transfer).
//   template <class T> static void upload(buffer<T>& dst, const T* host, std::size_t n);
//   template <class T> static void download(const buffer<T>& src, T* host, std::size_t n);
//       Host <-> device. Called only by locus::to<>() (which counts them).
//   template <class T, class Expr> static void assign(buffer<T>& dst, const Expr& e);
//       Evaluates an element-wise expression (see expr.hpp) of shape e.shape() into dst,
//       in one pass; operands are broadcast by their strides (0 on broadcast axes).
//   template <class T> static void reduce(reduce_op op, const buffer<T>& src, std::size_t outer,
//                                         std::size_t len, std::size_t inner, buffer<T>& dst);
//       src viewed as [outer, len, inner]; dst is [outer, inner].
//   template <class T> static void argmax(const buffer<T>& src, std::size_t outer, std::size_t len,
//                                         std::size_t inner, buffer<std::int32_t>& dst);
//   template <class T> static void gemm(const gemm_args<T>& args);   (see below)
//       Including the optional epilogue (bias, activation) of gemm_args.
//   template <class T> static void transpose2d(const buffer<T>& src, std::size_t rows,
//                                              std::size_t cols, buffer<T>& dst);
//   template <class T> static void random(random_dist dist, buffer<T>& dst, std::uint64_t seed,
//                                         T a, T b);
//       Counter-based (Philox-4x32-10, see ops/random.hpp): element i depends only on
//       (seed, i), so both backends produce the same numbers for the same seed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../device.hpp"

namespace locus {

template <class Dev>
struct backend_for;

template <class Dev>
using backend_t = backend_for<Dev>;

enum class reduce_op { sum, mean, max, min };

enum class random_dist { uniform, normal };

/// The element-wise functions a GEMM can apply to its result as it writes it (those that
/// are a few instructions in registers). Their definitions are the element-wise
/// expressions' (expr.hpp): relu(x) = x > 0 ? x : 0, sigmoid(x) = 1 / (1 + e^-x), tanh.
enum class gemm_activation { linear, relu, sigmoid, tanh };

/// Arguments of a (batched) row-major GEMM on buffers of one device:
/// for each b < batch: C_b = act(alpha * op(A_b) * op(B_b) + beta * C_b + bias),
/// op(A_b) is m x k, op(B_b) is k x n; offsets and strides are in elements; a batch
/// stride of 0 shares the operand across the batch.
///
/// The epilogue (bias, act) is optional: `bias` (null: none) holds n values from
/// bias_offset, added to every row of every C_b; `act` is applied last. In that order, a
/// Dense layer's y = act(x W + b) is one pass over y. A C shared by the batch (stride_c
/// == 0) gets the epilogue once, after the last product. Only floating-point types take
/// an epilogue (detail::gemm_into checks it for every backend).
///
/// b_colsum (null: not wanted; batch 1 only) receives from b_colsum_offset the n column
/// sums of op(B): with B = dZ, a layer's bias gradient next to its weight gradient X^T dZ,
/// where the GEMM has B at hand anyway.
template <class Buffer, class T>
struct gemm_args {
  std::size_t batch, m, n, k;
  bool trans_a, trans_b;
  T alpha;
  const Buffer* a;
  std::size_t a_offset, lda, stride_a;
  const Buffer* b;
  std::size_t b_offset, ldb, stride_b;
  T beta;
  Buffer* c;
  std::size_t c_offset, ldc, stride_c;
  const Buffer* bias = nullptr;
  std::size_t bias_offset = 0;
  gemm_activation act = gemm_activation::linear;
  Buffer* b_colsum = nullptr;
  std::size_t b_colsum_offset = 0;

  bool has_epilogue() const { return bias != nullptr || act != gemm_activation::linear; }
};

}  // namespace locus
