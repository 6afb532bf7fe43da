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
//
//   static void copy_block(const B<T>& src, const block_layout& from, B<T>& dst,
//                          const block_layout& to, const block_extent& extent);
//       Copies a [d0, d1, d2] block between two buffers of one device: for every
//       (i, j, k) < extent, dst[to.at(i, j, k)] = src[from.at(i, j, k)], where
//       at(i, j, k) = offset + i * stride[0] + j * stride[1] + k * stride[2] (in elements).
//       Nothing else of dst changes. Concatenate and ZeroPadding2D are one call each per
//       input, and so are their gradients (a split and a crop). check_copy_block (below)
//       refuses, before anything runs: src and dst being one buffer, a block reaching past
//       either buffer, and a destination layout that names one element twice (its strides,
//       taken over the extents above 1 in increasing order, must each exceed the span of
//       the smaller ones). The source may repeat elements (stride 0 broadcasts). Must also
//       work for T = std::int32_t.
//
//   ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding)
//   static void depthwise_conv2d_forward(const B<T>& x, const B<T>& kernel,
//                                        const conv_geometry& g, std::size_t multiplier, B<T>& y);
//       x is [N, H, W, C], kernel [KH, KW, C, M] (M = multiplier), y [N, OH, OW, C*M]:
//       y[n, oh, ow, c*M + m] = sum over (kh, kw) of
//       x[n, oh*sh + kh - pad_top, ow*sw + kw - pad_left, c] * kernel[kh, kw, c, m], with
//       padding reading as zero (Keras's depthwise_conv; 'same' puts the extra row and column
//       at the bottom and right, as spatial_axis computes). y is overwritten.
//   static void depthwise_conv2d_backward_input(const B<T>& dy, const B<T>& kernel,
//                                               const conv_geometry& g, std::size_t multiplier,
//                                               B<T>& dx);
//       The adjoint in x: dx[n, h, w, c] = sum, over every output (oh, ow) whose window read
//       x[n, h, w, c] (at kernel position (kh, kw)) and every m, of
//       dy[n, oh, ow, c*M + m] * kernel[kh, kw, c, m]. dx ([N, H, W, C]) is overwritten.
//   static void depthwise_conv2d_backward_kernel(const B<T>& x, const B<T>& dy,
//                                                const conv_geometry& g, std::size_t multiplier,
//                                                B<T>& dkernel);
//       dkernel[kh, kw, c, m] = sum over (n, oh, ow) of dy[n, oh, ow, c*M + m] times the input
//       element that kernel position read there (padding contributes nothing); dkernel
//       ([KH, KW, C, M]) is overwritten. A reduction per kernel element in an order fixed by
//       the shapes alone (no atomics), so results do not depend on scheduling.
//       check_depthwise (below) refuses, for all three, a zero window, stride or multiplier
//       and any buffer smaller than the geometry needs.
//   static void scatter_add_rows(const B<T>& src, std::size_t row_len,
//                                const B<std::int32_t>& index, std::size_t count,
//                                std::size_t rows, B<T>& dst);
//       The adjoint of gather_rows (Embedding's weight gradient): dst is [rows, row_len] and
//       dst row v = the sum of the src rows r < count with index[r] == v (zero if none); an
//       index outside [0, rows) contributes nothing. dst is overwritten. Deterministic, with
//       no atomics: the host adds each row's contributions in increasing r; a device splits
//       the index list into parts fixed by the shapes, sums each part per dst element (one
//       work-item per part and element, scanning its part of the list) and adds the parts
//       with the row reduction. The device form costs O(rows * row_len * count) comparisons
//       (fine for vocabularies of thousands of rows; far larger ones would want a sort).
//       check_scatter_rows (below) refuses buffers smaller than the call needs.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "../error.hpp"

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
inline axis_geometry spatial_axis(std::size_t in, std::size_t window, std::size_t stride,
                                  bool same) {
  if (same) {
    const std::size_t out = (in + stride - 1) / stride;
    const std::size_t needed = (out - 1) * stride + window;
    const std::size_t total = needed > in ? needed - in : 0;
    return {out, total / 2};
  }
  return {in >= window ? (in - window) / stride + 1 : 0, 0};
}

namespace detail::nn {

// Argument checks shared by every backend: the kernels index buffers with the geometry,
// so a geometry that does not match the buffers must be refused before any launch.
// The message is a string or a callable that builds one, called only on failure: the checks
// run before every launch, and a passing check allocates nothing.
template <class What>
void require(bool ok, const char* fn, const What& what) {
  if (ok) return;
  if constexpr (std::is_invocable_v<const What&>) {
    throw argument_error(std::string("locus::nn_backend::") + fn + ": " + what());
  } else {
    throw argument_error(std::string("locus::nn_backend::") + fn + ": " + std::string(what));
  }
}

inline std::size_t conv_cols_size(const conv_geometry& g) {
  return g.n * g.oh * g.ow * g.kh * g.kw * g.c;
}

inline void check_conv(const conv_geometry& g, std::size_t x_size, std::size_t cols_size,
                       const char* fn) {
  require(g.kh > 0 && g.kw > 0, fn, "the kernel window must be at least 1x1");
  require(g.sh > 0 && g.sw > 0, fn, "strides must be at least 1");
  require(x_size >= g.n * g.h * g.w * g.c, fn, [&] {
    return "the image buffer holds " + std::to_string(x_size) + " elements, the geometry needs " +
           std::to_string(g.n * g.h * g.w * g.c);
  });
  require(cols_size >= conv_cols_size(g), fn, [&] {
    return "the column buffer holds " + std::to_string(cols_size) +
           " elements, the geometry needs " + std::to_string(conv_cols_size(g));
  });
}

inline void check_pool(const pool_geometry& g, std::size_t x_size, std::size_t y_size,
                       const std::size_t* argmax_size, const char* fn) {
  require(g.ph > 0 && g.pw > 0, fn, "the pooling window must be at least 1x1");
  require(g.sh > 0 && g.sw > 0, fn, "strides must be at least 1");
  const std::size_t nx = g.n * g.h * g.w * g.c, ny = g.n * g.oh * g.ow * g.c;
  require(x_size >= nx, fn, [&] {
    return "the input buffer holds " + std::to_string(x_size) + " elements, the geometry needs " +
           std::to_string(nx);
  });
  require(y_size >= ny, fn, [&] {
    return "the output buffer holds " + std::to_string(y_size) + " elements, the geometry needs " +
           std::to_string(ny);
  });
  if (argmax_size) {
    require(*argmax_size >= ny, fn, [&] {
      return "the argmax buffer holds " + std::to_string(*argmax_size) +
             " elements, the geometry needs " + std::to_string(ny);
    });
    // argmax holds flat indices into x as int32.
    require(nx <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), fn,
            "max pooling with argmax needs an input of at most 2^31-1 elements");
  }
}

// The check shared by every backend's gather_rows and one_hot: `count` rows are read
// through a `source` buffer of one entry per row and written as rows of `row_len`.
inline void check_rows(const char* fn, const char* source, std::size_t source_size,
                       std::size_t dst_size, std::size_t count, std::size_t row_len) {
  require(source_size >= count, fn, [&] {
    return std::string("the ") + source + " buffer holds " + std::to_string(source_size) +
           " elements, " + std::to_string(count) + " rows were requested";
  });
  require(dst_size >= count * row_len, fn, [&] {
    return "the destination holds " + std::to_string(dst_size) + " elements, " +
           std::to_string(count * row_len) + " are needed";
  });
}

// The status buffer of a checked one_hot holds two int32 (smallest negative label, largest
// label >= classes).
inline void check_label_status(const char* fn, std::size_t status_size) {
  require(status_size >= 2, fn, [&] {
    return "the label status buffer holds " + std::to_string(status_size) +
           " elements, 2 are needed";
  });
}

}  // namespace detail::nn

}  // namespace locus

// ---- strided block copy (Concatenate, ZeroPadding2D and their gradients) -----------------

namespace locus {

/// Where a [d0, d1, d2] block lies in a buffer: element (i, j, k) is at
/// offset + i * stride[0] + j * stride[1] + k * stride[2] (in elements).
struct block_layout {
  std::size_t offset = 0;
  std::array<std::size_t, 3> stride{};
  std::size_t at(std::size_t i, std::size_t j, std::size_t k) const {
    return offset + i * stride[0] + j * stride[1] + k * stride[2];
  }
};

/// The extents [d0, d1, d2] of a block.
using block_extent = std::array<std::size_t, 3>;

namespace detail::block {

// The largest element index the layout reaches over a non-empty block, or false when
// that index does not fit in size_t.
inline bool last_index(const block_layout& l, const block_extent& d, std::size_t& out) {
  std::size_t at = l.offset;
  for (std::size_t k = 0; k < 3; ++k) {
    if (d[k] <= 1 || l.stride[k] == 0) continue;
    const std::size_t span = d[k] - 1;
    if (span > (std::numeric_limits<std::size_t>::max() - at) / l.stride[k]) return false;
    at += span * l.stride[k];
  }
  out = at;
  return true;
}

// Whether the layout names each element of the block once. Sufficient (and what every
// caller's layout satisfies): over the axes of extent > 1 in increasing stride order,
// each stride exceeds the furthest offset the smaller axes reach.
inline bool nested(const block_layout& l, const block_extent& d) {
  std::array<std::pair<std::size_t, std::size_t>, 3> axes{};  // (stride, extent)
  std::size_t n = 0;
  for (std::size_t k = 0; k < 3; ++k) {
    if (d[k] > 1) axes[n++] = {l.stride[k], d[k]};
  }
  // Insertion sort of at most three entries (std::sort draws a false -Warray-bounds from
  // GCC 12 on so small an array).
  for (std::size_t a = 1; a < n; ++a) {
    for (std::size_t b = a; b > 0 && axes[b].first < axes[b - 1].first; --b)
      std::swap(axes[b], axes[b - 1]);
  }
  std::size_t reach = 0;  // last_index has ruled out overflow
  for (std::size_t a = 0; a < n; ++a) {
    if (axes[a].first <= reach) return false;
    reach += (axes[a].second - 1) * axes[a].first;
  }
  return true;
}

inline std::string describe(const block_layout& l) {
  return "offset " + std::to_string(l.offset) + ", strides (" + std::to_string(l.stride[0]) + ", " +
         std::to_string(l.stride[1]) + ", " + std::to_string(l.stride[2]) + ")";
}

}  // namespace detail::block

/// The argument check of every backend's copy_block (see the interface above); throws
/// argument_error. Returns the number of elements the block holds (0: nothing to do).
inline std::size_t check_copy_block(std::size_t src_size, const block_layout& from,
                                    std::size_t dst_size, const block_layout& to,
                                    const block_extent& d, bool same_buffer) {
  const std::string fn = "locus::nn_backend::copy_block: ";
  if (same_buffer) throw argument_error(fn + "the source and the destination are the same buffer");
  std::size_t total = 1;
  for (auto e : d) {
    if (e != 0 && total > std::numeric_limits<std::size_t>::max() / e)
      throw argument_error(fn + "the block's element count overflows size_t");
    total *= e;
  }
  if (total == 0) return 0;
  const std::string extent =
      "[" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) + "]";
  const auto inside = [&](const block_layout& l, std::size_t size, const char* which) {
    std::size_t last = 0;
    if (!detail::block::last_index(l, d, last) || last >= size) {
      throw argument_error(fn + "a block of " + extent + " at " + detail::block::describe(l) +
                           " reaches past the " + which + " buffer of " + std::to_string(size) +
                           " elements");
    }
  };
  inside(from, src_size, "source");
  inside(to, dst_size, "destination");
  if (!detail::block::nested(to, d)) {
    throw argument_error(fn + "the destination layout (" + detail::block::describe(to) +
                         ") writes some element of a " + extent + " block twice");
  }
  return total;
}

}  // namespace locus

// ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding) --

namespace locus {

namespace detail::depthwise {

using detail::nn::require;

inline void holds(std::size_t size, std::size_t needed, const char* fn, const char* which) {
  require(size >= needed, fn, [&] {
    return std::string("the ") + which + " buffer holds " + std::to_string(size) +
           " elements, the geometry needs " + std::to_string(needed);
  });
}

}  // namespace detail::depthwise

/// The argument check of every backend's depthwise_conv2d_* (see the interface above):
/// `image` is x (or dx), `output` is y (or dy), `kernel` the kernel (or its gradient).
/// Throws argument_error naming the function.
inline void check_depthwise(const char* fn, const conv_geometry& g, std::size_t multiplier,
                            std::size_t image_size, std::size_t kernel_size,
                            std::size_t output_size) {
  namespace dw = detail::depthwise;
  dw::require(g.kh > 0 && g.kw > 0, fn, "the kernel window must be at least 1x1");
  dw::require(g.sh > 0 && g.sw > 0, fn, "strides must be at least 1");
  dw::require(multiplier > 0, fn, "the depth multiplier must be at least 1");
  dw::holds(image_size, g.n * g.h * g.w * g.c, fn, "image");
  dw::holds(kernel_size, g.kh * g.kw * g.c * multiplier, fn, "kernel");
  dw::holds(output_size, g.n * g.oh * g.ow * g.c * multiplier, fn, "output");
}

/// The argument check of every backend's scatter_add_rows (see the interface above).
inline void check_scatter_rows(const char* fn, std::size_t src_size, std::size_t row_len,
                               std::size_t index_size, std::size_t count, std::size_t rows,
                               std::size_t dst_size) {
  namespace dw = detail::depthwise;
  dw::require(index_size >= count, fn, [&] {
    return "the index buffer holds " + std::to_string(index_size) + " elements, " +
           std::to_string(count) + " rows were requested";
  });
  dw::require(src_size >= count * row_len, fn, [&] {
    return "the source holds " + std::to_string(src_size) + " elements, " +
           std::to_string(count * row_len) + " are needed";
  });
  dw::require(dst_size >= rows * row_len, fn, [&] {
    return "the destination holds " + std::to_string(dst_size) + " elements, " +
           std::to_string(rows * row_len) + " are needed";
  });
}

}  // namespace locus
