// nn_backend_for<Device<GPU, N>>: the OpenCL neural-network kernels (interface:
// backend/nn_backend.hpp; kernel sources: kernels/nn.hpp).
//
// Like the tensor backend, every call enqueues on the device's in-order queue and returns
// without waiting, through the shared launcher (program and kernel cache, device mutex,
// launch counting, out-of-memory retry). Arguments are checked on the host before any
// launch, with the same checks and messages as the host backend.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "../../counters.hpp"
#include "../../device.hpp"
#include "../concepts.hpp"
#include "../nn_backend.hpp"
#include "backend.hpp"
#include "buffer.hpp"
#include "kernels/nn.hpp"
#include "launch.hpp"
#include "runtime.hpp"

namespace locus {

template <std::size_t N>
struct nn_backend_for<Device<GPU, N>> {
  using device = Device<GPU, N>;
  template <class T>
  using buffer = backend::opencl::buffer<T, N>;

  template <class T>
  static void im2col(const buffer<T>& x, const conv_geometry& g, buffer<T>& cols) {
    namespace nn = detail::nn;
    nn::check_conv(g, x.size(), cols.size(), "im2col");
    const std::size_t total = nn::conv_cols_size(g);
    if (total == 0) return;
    const bool wide = is_wide(total, x.size());
    conv_launch<T>("locus_im2col", wide, total, x, cols, g);
  }

  template <class T>
  static void col2im(const buffer<T>& cols, const conv_geometry& g, buffer<T>& dx) {
    namespace nn = detail::nn;
    nn::check_conv(g, dx.size(), cols.size(), "col2im");
    const std::size_t total = g.n * g.h * g.w * g.c;
    if (total == 0) return;
    const bool wide = is_wide(total, cols.size());
    conv_launch<T>("locus_col2im", wide, total, cols, dx, g);
  }

  template <class T>
  static void pool2d_forward(pool_kind kind, const buffer<T>& x, const pool_geometry& g,
                             buffer<T>& y, buffer<std::int32_t>* argmax) {
    namespace ocl = backend::opencl;
    namespace nn = detail::nn;
    const bool with_arg = kind == pool_kind::max && argmax != nullptr;
    const std::size_t am_size = with_arg ? argmax->size() : 0;
    nn::check_pool(g, x.size(), y.size(), with_arg ? &am_size : nullptr, "pool2d_forward");
    const std::size_t total = g.n * g.oh * g.ow * g.c;
    if (total == 0) return;
    const bool wide = is_wide(total, x.size());
    std::array<ocl::raw_arg, 16> args;
    std::size_t k = 0;
    args[k++] = ocl::raw_arg::from(ocl::arg(x));
    args[k++] = ocl::raw_arg::from(ocl::arg(y));
    if (with_arg) args[k++] = ocl::raw_arg::from(ocl::arg(*argmax));
    args[k++] = index_arg(total, wide);
    k = pool_args(g, args, k);
    const char* name = kind == pool_kind::average ? "locus_pool_fwd_avg"
                       : with_arg                 ? "locus_pool_fwd_max"
                                                  : "locus_pool_fwd_max_noarg";
    launch_1d(ocl::kernels::nn_program<T>(wide), name, total, args.data(), k);
  }

  template <class T>
  static void pool2d_backward(pool_kind kind, const buffer<T>& dy,
                              const buffer<std::int32_t>* argmax, const pool_geometry& g,
                              buffer<T>& dx) {
    namespace ocl = backend::opencl;
    namespace nn = detail::nn;
    nn::require(kind != pool_kind::max || argmax != nullptr, "pool2d_backward",
                "max pooling needs the argmax of the forward pass");
    const std::size_t am_size = argmax ? argmax->size() : 0;
    nn::check_pool(g, dx.size(), dy.size(), kind == pool_kind::max ? &am_size : nullptr,
                   "pool2d_backward");
    const std::size_t total = g.n * g.h * g.w * g.c;
    if (total == 0) return;
    // argmax values are int32 flat indices into dx, so 64-bit arithmetic is only ever
    // needed for dy (check_pool keeps dx below 2^31 for max pooling).
    const bool wide = is_wide(total, dy.size());
    std::array<ocl::raw_arg, 16> args;
    std::size_t k = 0;
    args[k++] = ocl::raw_arg::from(ocl::arg(dy));
    if (kind == pool_kind::max) args[k++] = ocl::raw_arg::from(ocl::arg(*argmax));
    args[k++] = ocl::raw_arg::from(ocl::arg(dx));
    args[k++] = index_arg(total, wide);
    k = pool_args(g, args, k);
    launch_1d(ocl::kernels::nn_program<T>(wide),
              kind == pool_kind::max ? "locus_pool_bwd_max" : "locus_pool_bwd_avg", total,
              args.data(), k);
  }

  /// dst row r = src row index[r]; an index outside the rows of src gives a zero row (as
  /// on the host: reporting it would need a round trip).
  template <class T>
  static void gather_rows(const buffer<T>& src, std::size_t row_len,
                          const buffer<std::int32_t>& index, std::size_t count, buffer<T>& dst) {
    namespace ocl = backend::opencl;
    namespace nn = detail::nn;
    nn::check_rows("gather_rows", "index", index.size(), dst.size(), count, row_len);
    const std::size_t total = count * row_len;
    if (total == 0) return;
    const bool wide = is_wide(total, src.size());
    // An empty source has no cl_mem; every index is then out of range and reads nothing,
    // but the argument must still be a valid buffer, so the destination stands in.
    const ocl::mem_arg s = src.empty() ? ocl::arg(dst) : ocl::arg(src);
    const ocl::raw_arg args[] = {ocl::raw_arg::from(s),
                                 index_arg(src.size() / row_len, wide),
                                 ocl::raw_arg::from(ocl::arg(index)),
                                 ocl::raw_arg::from(ocl::arg(dst)),
                                 index_arg(row_len, wide),
                                 index_arg(total, wide)};
    launch_1d(ocl::kernels::nn_program<T>(wide), "locus_gather_rows", total, args, std::size(args));
  }

  template <class T>
  static void one_hot(const buffer<std::int32_t>& labels, std::size_t count, std::size_t classes,
                      buffer<T>& dst) {
    namespace ocl = backend::opencl;
    namespace nn = detail::nn;
    nn::check_rows("one_hot", "label", labels.size(), dst.size(), count, classes);
    const std::size_t total = count * classes;
    if (total == 0) return;
    const bool wide = is_wide(total, labels.size());
    const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(labels)),
                                 ocl::raw_arg::from(ocl::arg(dst)), index_arg(classes, wide),
                                 index_arg(total, wide)};
    launch_1d(ocl::kernels::nn_program<T>(wide), "locus_one_hot", total, args, std::size(args));
  }

  /// one_hot that also records out-of-range labels in `status` on the device (see the
  /// interface); one launch, and nothing is read back.
  template <class T>
  static void one_hot(const buffer<std::int32_t>& labels, std::size_t count, std::size_t classes,
                      buffer<T>& dst, buffer<std::int32_t>& status) {
    namespace ocl = backend::opencl;
    namespace nn = detail::nn;
    nn::check_rows("one_hot", "label", labels.size(), dst.size(), count, classes);
    nn::check_label_status("one_hot", status.size());
    const std::size_t total = count * classes;
    if (total == 0) return;
    const bool wide = is_wide(total, labels.size());
    const ocl::raw_arg args[] = {
        ocl::raw_arg::from(ocl::arg(labels)), ocl::raw_arg::from(ocl::arg(dst)),
        ocl::raw_arg::from(ocl::arg(status)), index_arg(classes, wide), index_arg(total, wide)};
    launch_1d(ocl::kernels::nn_program<T>(wide), "locus_one_hot_checked", total, args,
              std::size(args));
  }

 private:
  static constexpr std::size_t preferred_local = 256;

  static backend::opencl::device_context& ctx() { return backend::opencl::device_of<N>(); }
  static std::atomic<std::uint64_t>& launches() { return detail::counters_of<device>().launches; }

  // 32-bit index arithmetic when every buffer the kernel indexes fits.
  static bool is_wide(std::size_t a, std::size_t b) {
    constexpr std::size_t lim = std::numeric_limits<cl_uint>::max();
    return a > lim || b > lim;
  }

  static backend::opencl::raw_arg index_arg(std::size_t v, bool wide) {
    namespace ocl = backend::opencl;
    return wide ? ocl::raw_arg::value(static_cast<cl_ulong>(v))
                : ocl::raw_arg::value(static_cast<cl_uint>(v));
  }

  // Geometry extents go to the kernels as uint and take part in int arithmetic (padding
  // makes coordinates negative), so each must stay below 2^31.
  static backend::opencl::raw_arg extent(std::size_t v, const char* what) {
    detail::nn::require(v <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
                        "geometry", [&] {
                          return std::string(what) + " = " + std::to_string(v) +
                                 " exceeds the OpenCL kernels' 2^31-1 limit";
                        });
    return backend::opencl::raw_arg::value(static_cast<cl_uint>(v));
  }

  template <class T>
  static void conv_launch(const char* name, bool wide, std::size_t total, const buffer<T>& in,
                          buffer<T>& out, const conv_geometry& g) {
    namespace ocl = backend::opencl;
    const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(in)),
                                 ocl::raw_arg::from(ocl::arg(out)),
                                 index_arg(total, wide),
                                 extent(g.h, "h"),
                                 extent(g.w, "w"),
                                 extent(g.c, "c"),
                                 extent(g.kh, "kh"),
                                 extent(g.kw, "kw"),
                                 extent(g.sh, "sh"),
                                 extent(g.sw, "sw"),
                                 extent(g.pad_top, "pad_top"),
                                 extent(g.pad_left, "pad_left"),
                                 extent(g.oh, "oh"),
                                 extent(g.ow, "ow")};
    launch_1d(ocl::kernels::nn_program<T>(wide), name, total, args, std::size(args));
  }

  static std::size_t pool_args(const pool_geometry& g, std::array<backend::opencl::raw_arg, 16>& a,
                               std::size_t k) {
    a[k++] = extent(g.h, "h");
    a[k++] = extent(g.w, "w");
    a[k++] = extent(g.c, "c");
    a[k++] = extent(g.ph, "ph");
    a[k++] = extent(g.pw, "pw");
    a[k++] = extent(g.sh, "sh");
    a[k++] = extent(g.sw, "sw");
    a[k++] = extent(g.pad_top, "pad_top");
    a[k++] = extent(g.pad_left, "pad_left");
    a[k++] = extent(g.oh, "oh");
    a[k++] = extent(g.ow, "ow");
    return k;
  }

  static void launch_1d(const backend::opencl::program_source& src, const char* kernel,
                        std::size_t n, const backend::opencl::raw_arg* args, std::size_t count) {
    namespace ocl = backend::opencl;
    auto& dc = ctx();
    const auto h = ocl::lookup(dc, src, kernel);
    const std::size_t local[1] = {ocl::pow2_floor(preferred_local, h.max_work_group)};
    const std::size_t global[1] = {ocl::round_up(n, local[0])};
    ocl::launch_raw(dc, launches(), src, kernel, 1, global, local, args, count);
  }

  // ---- strided block copy (Concatenate, ZeroPadding2D and their gradients) ---------------
 public:
  /// dst[to.at(i, j, k)] = src[from.at(i, j, k)] over a [d0, d1, d2] block (interface:
  /// nn_backend.hpp): one launch, one work-item per element.
  template <class T>
  static void copy_block(const buffer<T>& src, const block_layout& from, buffer<T>& dst,
                         const block_layout& to, const block_extent& d) {
    namespace ocl = backend::opencl;
    const bool same = static_cast<const void*>(&src) == static_cast<const void*>(&dst);
    const std::size_t total = check_copy_block(src.size(), from, dst.size(), to, d, same);
    if (total == 0) return;
    constexpr std::size_t lim = std::numeric_limits<cl_uint>::max();
    const bool wide = total > lim || src.size() > lim || dst.size() > lim;
    // An axis of extent 1 adds nothing, so its stride goes as 0: every index argument then
    // stays below its buffer's size (checked above) and fits in 32 bits when the sizes do.
    const auto stride = [&](const block_layout& l, std::size_t k) {
      return index_arg(d[k] > 1 ? l.stride[k] : 0, wide);
    };
    const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(src)),
                                 index_arg(from.offset, wide),
                                 stride(from, 0),
                                 stride(from, 1),
                                 stride(from, 2),
                                 ocl::raw_arg::from(ocl::arg(dst)),
                                 index_arg(to.offset, wide),
                                 stride(to, 0),
                                 stride(to, 1),
                                 stride(to, 2),
                                 index_arg(d[1], wide),
                                 index_arg(d[2], wide),
                                 index_arg(total, wide)};
    launch_1d(ocl::kernels::copy_block_program<T>(wide), "locus_copy_block", total, args,
              std::size(args));
  }

  // ---- depthwise convolution and row scatter (DepthwiseConv2D, SeparableConv2D, Embedding)
 public:
  template <class T>
  static void depthwise_conv2d_forward(const buffer<T>& x, const buffer<T>& kernel,
                                       const conv_geometry& g, std::size_t multiplier,
                                       buffer<T>& y) {
    check_depthwise("depthwise_conv2d_forward", g, multiplier, x.size(), kernel.size(), y.size());
    const std::size_t total = g.n * g.oh * g.ow * g.c * multiplier;
    if (total == 0) return;
    depthwise_launch<T>("locus_depthwise_fwd", total, is_wide(total, x.size()), x, kernel, y, g,
                        multiplier);
  }

  template <class T>
  static void depthwise_conv2d_backward_input(const buffer<T>& dy, const buffer<T>& kernel,
                                              const conv_geometry& g, std::size_t multiplier,
                                              buffer<T>& dx) {
    check_depthwise("depthwise_conv2d_backward_input", g, multiplier, dx.size(), kernel.size(),
                    dy.size());
    const std::size_t total = g.n * g.h * g.w * g.c;
    if (total == 0) return;
    if (g.n * g.oh * g.ow * g.c * multiplier == 0) {  // no output: nothing reads x
      backend_for<device>::fill(dx, T(0));
      return;
    }
    depthwise_launch<T>("locus_depthwise_bwd_input", total, is_wide(total, dy.size()), dy, kernel,
                        dx, g, multiplier);
  }

  template <class T>
  static void depthwise_conv2d_backward_kernel(const buffer<T>& x, const buffer<T>& dy,
                                               const conv_geometry& g, std::size_t multiplier,
                                               buffer<T>& dkernel) {
    namespace ocl = backend::opencl;
    check_depthwise("depthwise_conv2d_backward_kernel", g, multiplier, x.size(), dkernel.size(),
                    dy.size());
    const std::size_t e = g.kh * g.kw * g.c * multiplier, rows = g.n * g.oh;
    if (e == 0) return;
    if (rows * g.ow == 0 || x.empty()) {  // no output, or no input: a zero gradient
      backend_for<device>::fill(dkernel, T(0));
      return;
    }
    const std::size_t parts = reduction_parts(e, rows), per = (rows + parts - 1) / parts;
    const std::size_t total = parts * e;
    const bool wide = is_wide(total, std::max(x.size(), dy.size()));
    const auto run = [&](buffer<T>& out) {
      std::array<ocl::raw_arg, 20> args;
      std::size_t k = 0;
      args[k++] = ocl::raw_arg::from(ocl::arg(x));
      args[k++] = ocl::raw_arg::from(ocl::arg(dy));
      args[k++] = ocl::raw_arg::from(ocl::arg(out));
      args[k++] = index_arg(total, wide);
      args[k++] = index_arg(rows, wide);
      args[k++] = index_arg(per, wide);
      k = depthwise_args(g, multiplier, args, k);
      launch_1d(ocl::kernels::depthwise_scatter_program<T>(wide), "locus_depthwise_bwd_kernel",
                total, args.data(), k);
    };
    if (parts == 1) {
      run(dkernel);
      return;
    }
    // The partial sums live until the reduction that reads them has been enqueued; the
    // in-order queue runs it before anything that reuses their memory.
    buffer<T> partial(total);
    run(partial);
    backend_for<device>::reduce(reduce_op::sum, partial, 1, parts, e, dkernel);
  }

  /// dst row v = sum of the src rows r with index[r] == v (interface: nn_backend.hpp).
  template <class T>
  static void scatter_add_rows(const buffer<T>& src, std::size_t row_len,
                               const buffer<std::int32_t>& index, std::size_t count,
                               std::size_t rows, buffer<T>& dst) {
    namespace ocl = backend::opencl;
    check_scatter_rows("scatter_add_rows", src.size(), row_len, index.size(), count, rows,
                       dst.size());
    const std::size_t dst_size = rows * row_len;
    if (dst_size == 0) return;
    if (count == 0) {
      backend_for<device>::fill(dst, T(0));
      return;
    }
    const std::size_t parts = reduction_parts(dst_size, count), per = (count + parts - 1) / parts;
    const std::size_t total = parts * dst_size;
    const bool wide = is_wide(total, src.size());
    const auto run = [&](buffer<T>& out) {
      const ocl::raw_arg args[] = {ocl::raw_arg::from(ocl::arg(src)),
                                   ocl::raw_arg::from(ocl::arg(index)),
                                   ocl::raw_arg::from(ocl::arg(out)),
                                   index_arg(total, wide),
                                   index_arg(dst_size, wide),
                                   index_arg(row_len, wide),
                                   index_arg(count, wide),
                                   index_arg(per, wide)};
      launch_1d(ocl::kernels::depthwise_scatter_program<T>(wide), "locus_scatter_add_rows", total,
                args, std::size(args));
    };
    if (parts == 1) {
      run(dst);
      return;
    }
    buffer<T> partial(total);
    run(partial);
    backend_for<device>::reduce(reduce_op::sum, partial, 1, parts, dst_size, dst);
  }

 private:
  // How many parts a reduction of `len` items per output splits into, so that parts *
  // outputs work-items (about 2^14) fill a device when there are few outputs. A function of
  // the shapes only, so the summation order never changes between calls.
  static std::size_t reduction_parts(std::size_t outputs, std::size_t len) {
    constexpr std::size_t target = std::size_t(1) << 14;
    const std::size_t want = std::max<std::size_t>(1, target / std::max<std::size_t>(outputs, 1));
    const std::size_t parts = std::min(want, std::max<std::size_t>(len, 1));
    const std::size_t per = (len + parts - 1) / parts;
    return per ? (len + per - 1) / per : 1;
  }

  // The geometry arguments of the depthwise kernels: H, W, C, M, KH, KW, SH, SW, PT, PL, OH, OW.
  static std::size_t depthwise_args(const conv_geometry& g, std::size_t multiplier,
                                    std::array<backend::opencl::raw_arg, 20>& a, std::size_t k) {
    // The kernels index channels and kernel elements in uint: both counts stay below 2^31.
    extent(g.c * multiplier, "channels x depth multiplier");
    extent(g.kh * g.kw * g.c * multiplier, "kernel elements");
    a[k++] = extent(g.h, "h");
    a[k++] = extent(g.w, "w");
    a[k++] = extent(g.c, "c");
    a[k++] = extent(multiplier, "depth multiplier");
    a[k++] = extent(g.kh, "kh");
    a[k++] = extent(g.kw, "kw");
    a[k++] = extent(g.sh, "sh");
    a[k++] = extent(g.sw, "sw");
    a[k++] = extent(g.pad_top, "pad_top");
    a[k++] = extent(g.pad_left, "pad_left");
    a[k++] = extent(g.oh, "oh");
    a[k++] = extent(g.ow, "ow");
    return k;
  }

  template <class T>
  static void depthwise_launch(const char* name, std::size_t total, bool wide, const buffer<T>& a,
                               const buffer<T>& b, buffer<T>& out, const conv_geometry& g,
                               std::size_t multiplier) {
    namespace ocl = backend::opencl;
    std::array<ocl::raw_arg, 20> args;
    std::size_t k = 0;
    args[k++] = ocl::raw_arg::from(ocl::arg(a));
    args[k++] = ocl::raw_arg::from(ocl::arg(b));
    args[k++] = ocl::raw_arg::from(ocl::arg(out));
    args[k++] = index_arg(total, wide);
    k = depthwise_args(g, multiplier, args, k);
    launch_1d(ocl::kernels::depthwise_scatter_program<T>(wide), name, total, args.data(), k);
  }
};

// The seam, checked where the backend is defined (backend/concepts.hpp).
static_assert(
    NnBackend<nn_backend_for<Device<GPU, 0>>, Device<GPU, 0>>,
    "nn_backend_for<Device<GPU, N>> must provide what NnBackend (backend/concepts.hpp) requires");

}  // namespace locus
