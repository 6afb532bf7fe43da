// The neural-network kernels a device must provide beyond the tensor backend.
//
// `nn_backend_for<Dev>` is specialised per device kind, like backend_for<Dev>:
//   backend/cpu/nn.hpp      nn_backend_for<Device<CPU>>
//   backend/opencl/nn.hpp   nn_backend_for<Device<GPU, N>>
// Layouts follow Keras: images are NHWC, convolution kernels are [KH, KW, C, F].
//
// A backend NB provides, for T = float and double (B = backend_for<Dev>::buffer):
//
//   static void im2col(const B<T>& x, const conv_geometry& g, B<T>& cols);
//       x is [N, H, W, C]; cols is [N*OH*OW, KH*KW*C] with column order (kh, kw, c), so
//       cols x kernel.reshape([KH*KW*C, F]) is the NHWC output. Padding reads as zero.
//   static void col2im(const B<T>& cols, const conv_geometry& g, B<T>& dx);
//       The adjoint of im2col: dx[n,h,w,c] = sum of every cols entry that im2col read from
//       x[n,h,w,c]. dx is overwritten (not accumulated).
//   static void pool2d_forward(pool_kind kind, const B<T>& x, const pool_geometry& g, B<T>& y,
//                              B<std::int32_t>* argmax);
//       y is [N, OH, OW, C]. For max pooling, argmax (if not null) receives, per output,
//       the flat index into x of the first maximum of its window. Average pooling divides
//       by the number of in-bounds elements of the window (Keras 'same' semantics).
//   static void pool2d_backward(pool_kind kind, const B<T>& dy, const B<std::int32_t>* argmax,
//                               const pool_geometry& g, B<T>& dx);
//       dx ([N, H, W, C]) is overwritten. Must be correct when windows overlap.
//   static void gather_rows(const B<T>& src, std::size_t row_len, const B<std::int32_t>& index,
//                           std::size_t count, B<T>& dst);
//       dst row r = src row index[r], r < count (rows of row_len elements). Used to
//       shuffle a data set on its own device. Must also work for T = std::int32_t.
//   static void one_hot(const B<std::int32_t>& labels, std::size_t count, std::size_t classes,
//                       B<T>& dst, B<std::int32_t>& status);
//       dst is [count, classes]: 1 at (r, labels[r]), 0 elsewhere. A label outside
//       [0, classes) gives an all-zero row and is recorded in `status` (2 elements, which
//       the call only ever lowers or raises, never resets): status[0] = min(status[0], l)
//       for a negative label l, status[1] = max(status[1], l) for l >= classes. Starting
//       from {0, 0}, the status is still {0, 0} after any number of calls exactly when every
//       label was in range. A device backend records without reading anything back (no
//       round trip, no wait); the caller reads the status when it synchronises anyway
//       (see nn/losses.hpp and Sequential). The overload without `status` records nothing
//       (for callers that checked their labels already).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace locus {

template <class Dev>
struct nn_backend_for;

enum class pool_kind { max, average };

/// Geometry of a 2-D convolution over NHWC input (Keras semantics for 'same' padding:
/// pad_total = max((out - 1) * stride + kernel - in, 0), pad_top = pad_total / 2).
struct conv_geometry {
  std::size_t n, h, w, c;  // input
  std::size_t kh, kw;      // kernel window
  std::size_t sh, sw;      // strides
  std::size_t pad_top, pad_left;
  std::size_t oh, ow;  // output
};

/// Geometry of a 2-D pooling over NHWC input (same conventions as conv_geometry).
struct pool_geometry {
  std::size_t n, h, w, c;
  std::size_t ph, pw;  // window
  std::size_t sh, sw;  // strides
  std::size_t pad_top, pad_left;
  std::size_t oh, ow;
};

/// The host form of one_hot's label record: lowers `lo` to the smallest negative label and
/// raises `hi` to the largest label >= classes among the n labels (both unchanged when all
/// are in range). The CPU backend's one_hot and the host label checks share it.
inline void record_label_range(const std::int32_t* labels, std::size_t n, std::size_t classes,
                               std::int32_t& lo, std::int32_t& hi) {
  for (std::size_t r = 0; r < n; ++r) {
    if (labels[r] < 0) {
      lo = std::min(lo, labels[r]);
    } else if (static_cast<std::size_t>(labels[r]) >= classes) {
      hi = std::max(hi, labels[r]);
    }
  }
}

/// Output extent and leading pad of one spatial axis, as Keras computes them.
struct axis_geometry {
  std::size_t out, pad_before;
};
inline axis_geometry spatial_axis(std::size_t in, std::size_t window, std::size_t stride, bool same) {
  if (same) {
    const std::size_t out = (in + stride - 1) / stride;
    const std::size_t needed = (out - 1) * stride + window;
    const std::size_t total = needed > in ? needed - in : 0;
    return {out, total / 2};
  }
  return {in >= window ? (in - window) / stride + 1 : 0, 0};
}

}  // namespace locus
