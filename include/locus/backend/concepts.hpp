// The backend seam as checked contracts.
//
// A device kind plugs into locus with two specialisations, backend_for<Dev> (tensors:
// backend/backend.hpp) and nn_backend_for<Dev> (neural-network kernels:
// backend/nn_backend.hpp). What each must provide is the concept below, and every backend
// header asserts that its own specialisation satisfies it, so a missing or mistyped
// function is one compile error at the backend, not a failure deep inside a layer that
// happens to call it. The comments of backend.hpp and nn_backend.hpp give the semantics;
// the concepts give the signatures.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../device.hpp"
#include "../expr.hpp"
#include "backend.hpp"
#include "nn_backend.hpp"

namespace locus {

namespace detail::seam {

template <class B, class T>
using buf = typename B::template buffer<T>;

// A representative element-wise expression over tensors of Dev (a leaf and a scalar):
// assign() must evaluate any tree, this is the one the concept instantiates.
template <class T, class Dev>
using sample_expr = Expr<op::add, TensorRef<T, Dev>, Scalar<T>>;

}  // namespace detail::seam

/// What backend_for<Dev> provides for element type T.
template <class B, class Dev, class T>
concept TensorBackendFor = requires(detail::seam::buf<B, T>& dst,
                                    const detail::seam::buf<B, T>& src, T value, const T* host_in,
                                    T* host_out, std::size_t n, reduce_op op,
                                    detail::seam::buf<B, std::int32_t>& index, random_dist dist,
                                    std::uint64_t seed,
                                    const detail::seam::sample_expr<T, Dev>& expr) {
  {detail::seam::buf<B, T>(n)};
  { src.size() } -> std::convertible_to<std::size_t>;
  B::fill(dst, value);
  B::copy(src, n, dst, n, n);
  B::upload(dst, host_in, n);
  B::download(src, host_out, n);
  B::assign(dst, expr);
  B::reduce(op, src, n, n, n, dst);
  B::argmax(src, n, n, n, index);
  B::transpose2d(src, n, n, dst);
  B::random(dist, dst, seed, value, value);
};

/// The GEMM of backend_for<Dev> for a floating-point element type T.
template <class B, class T>
concept GemmBackendFor = requires(const gemm_args<detail::seam::buf<B, T>, T>& g) {
  B::gemm(g);
};

/// Everything a tensor backend must provide.
template <class B, class Dev>
concept TensorBackend = TensorBackendFor<B, Dev, float> && TensorBackendFor<B, Dev, double> &&
    TensorBackendFor<B, Dev, std::int32_t> && GemmBackendFor<B, float> && GemmBackendFor<B, double>;

/// What nn_backend_for<Dev> provides for a floating-point element type T. Its buffers are
/// the tensor backend's, so the kernels work on Tensor storage directly.
template <class NB, class Dev, class T>
concept NnBackendFor =
    std::same_as<detail::seam::buf<NB, T>, detail::seam::buf<backend_for<Dev>, T>> &&
    requires(const detail::seam::buf<NB, T>& in, detail::seam::buf<NB, T>& out,
             const conv_geometry& cg, const pool_geometry& pg, pool_kind kind,
             detail::seam::buf<NB, std::int32_t>* argmax,
             const detail::seam::buf<NB, std::int32_t>* const_argmax,
             const detail::seam::buf<NB, std::int32_t>& labels,
             detail::seam::buf<NB, std::int32_t>& status, const block_layout& block,
             const block_extent& extent, std::size_t n) {
  NB::im2col(in, cg, out);
  NB::col2im(in, cg, out);
  NB::pool2d_forward(kind, in, pg, out, argmax);
  NB::pool2d_backward(kind, in, const_argmax, pg, out);
  NB::gather_rows(in, n, labels, n, out);
  NB::one_hot(labels, n, n, out);
  NB::one_hot(labels, n, n, out, status);
  NB::copy_block(in, block, out, block, extent);
  NB::depthwise_conv2d_forward(in, in, cg, n, out);
  NB::depthwise_conv2d_backward_input(in, in, cg, n, out);
  NB::depthwise_conv2d_backward_kernel(in, in, cg, n, out);
  NB::scatter_add_rows(in, n, labels, n, n, out);
} &&
    // Row gathers and block copies also move labels and indices.
    requires(const detail::seam::buf<NB, std::int32_t>& in,
             detail::seam::buf<NB, std::int32_t>& out, const block_layout& block,
             const block_extent& extent, std::size_t n) {
  NB::gather_rows(in, n, in, n, out);
  NB::copy_block(in, block, out, block, extent);
};

/// Everything a neural-network backend must provide.
template <class NB, class Dev>
concept NnBackend = NnBackendFor<NB, Dev, float> && NnBackendFor<NB, Dev, double>;

}  // namespace locus
