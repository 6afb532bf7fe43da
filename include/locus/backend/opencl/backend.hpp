// backend_for<Device<GPU, N>>: the OpenCL backend (interface: backend/backend.hpp).
//
// Every operation enqueues on the device's one in-order queue and returns without
// waiting; only download() (and synchronize()) block. Nothing here ever touches host
// copies of device data, and nothing falls back to the host: a device that cannot do the
// work throws a typed exception (error.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "../../counters.hpp"
#include "../../device.hpp"
#include "../../expr.hpp"
#include "../backend.hpp"
#include "../concepts.hpp"
#include "buffer.hpp"
#include "codegen.hpp"
#include "kernels/fill.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_fallback.hpp"
#include "kernels/random.hpp"
#include "kernels/reduce.hpp"
#include "kernels/transpose.hpp"
#include "launch.hpp"
#include "runtime.hpp"

namespace locus {

template <std::size_t N>
struct backend_for<Device<GPU, N>> {
  using device = Device<GPU, N>;
  template <class T>
  using buffer = backend::opencl::buffer<T, N>;

  template <class T>
  static void fill(buffer<T>& dst, T value) {
    namespace ocl = backend::opencl;
    if (dst.empty()) return;
    launch_1d(ocl::kernels::fill_program<T>(), "locus_fill", dst.size(), ocl::arg(dst),
              static_cast<cl_ulong>(dst.size()), value);
  }

  template <class T>
  static void copy(const buffer<T>& src, std::size_t src_offset, buffer<T>& dst,
                   std::size_t dst_offset, std::size_t n) {
    if (n == 0) return;
    // Pool buffers may be larger than requested, so OpenCL would not notice an overrun.
    if (src_offset + n > src.size() || dst_offset + n > dst.size()) {
      throw argument_error("locus: device copy of " + std::to_string(n) + " elements from offset " +
                           std::to_string(src_offset) + " of " + std::to_string(src.size()) +
                           " to offset " + std::to_string(dst_offset) + " of " +
                           std::to_string(dst.size()) + " is out of range");
    }
    auto& dc = ctx();
    retry_oom(dc, n * sizeof(T), "clEnqueueCopyBuffer", [&] {
      return clEnqueueCopyBuffer(dc.queue, src.handle(), dst.handle(), src_offset * sizeof(T),
                                 dst_offset * sizeof(T), n * sizeof(T), 0, nullptr, nullptr);
    });
  }

  /// Host -> device, blocking (the host array may be reused as soon as this returns).
  template <class T>
  static void upload(buffer<T>& dst, const T* host, std::size_t n) {
    if (n == 0) return;
    auto& dc = ctx();
    retry_oom(dc, n * sizeof(T), "clEnqueueWriteBuffer", [&] {
      return clEnqueueWriteBuffer(dc.queue, dst.handle(), CL_TRUE, 0, n * sizeof(T), host, 0,
                                  nullptr, nullptr);
    });
    dc.host_writes.fetch_add(1, std::memory_order_relaxed);
  }

  /// Device -> host, blocking: every queued command that writes `src` has finished and the
  /// data is in `host` when this returns.
  template <class T>
  static void download(const buffer<T>& src, T* host, std::size_t n) {
    if (n == 0) return;
    auto& dc = ctx();
    retry_oom(dc, n * sizeof(T), "clEnqueueReadBuffer", [&] {
      return clEnqueueReadBuffer(dc.queue, src.handle(), CL_TRUE, 0, n * sizeof(T), host, 0,
                                 nullptr, nullptr);
    });
    dc.host_reads.fetch_add(1, std::memory_order_relaxed);
  }

  /// One generated kernel per expression type (see codegen.hpp).
  template <class T, class E>
  static void assign(buffer<T>& dst, const E& e) {
    namespace ocl = backend::opencl;
    const std::size_t n = dst.size();
    if (n == 0) return;
    constexpr std::size_t nl = leaf_count_v<E>, ns = scalar_count_v<E>;
    std::array<ocl::raw_arg, nl> leaves{};
    std::vector<Shape> shapes;
    shapes.reserve(nl);
    bool flat = true;
    std::size_t k = 0;
    for_each_leaf(e, [&](const auto& t) {
      leaves[k++] = ocl::raw_arg::from(ocl::arg(t.storage()));
      shapes.push_back(t.shape());
      flat = flat && t.shape() == e.shape();
    });
    std::array<ocl::raw_arg, ns + 1> scalars{};
    k = 0;
    for_each_scalar(e, [&](auto v) { scalars[k++] = ocl::raw_arg::value(v); });

    const bool wide = n > 0xffffffffull;
    const ocl::program_source& src = ocl::codegen::expression_program<T, E>(wide);
    if (flat) {
      std::array<ocl::raw_arg, 2 + nl + ns> args;
      std::size_t i = 0;
      args[i++] = ocl::raw_arg::from(ocl::arg(dst));
      args[i++] = ocl::raw_arg::value(static_cast<cl_ulong>(n));
      for (const auto& l : leaves) args[i++] = l;
      for (std::size_t s = 0; s < ns; ++s) args[i++] = scalars[s];
      launch_1d_raw(src, "locus_expr_flat", n, args.data(), args.size());
      return;
    }
    const auto plan = ocl::codegen::plan_broadcast(e.shape(), shapes);
    constexpr std::size_t R = Shape::max_rank;
    std::array<ocl::raw_arg, 3 + R + R * nl + nl + ns> args;
    std::size_t i = 0;
    auto index = [&](std::size_t v) {
      return wide ? ocl::raw_arg::value(static_cast<cl_ulong>(v))
                  : ocl::raw_arg::value(static_cast<cl_uint>(v));
    };
    args[i++] = ocl::raw_arg::from(ocl::arg(dst));
    args[i++] = ocl::raw_arg::value(static_cast<cl_ulong>(n));
    args[i++] = ocl::raw_arg::value(static_cast<cl_uint>(plan.rank));
    for (std::size_t d = 0; d < R; ++d) args[i++] = index(plan.dims[d]);
    for (std::size_t d = 0; d < R; ++d) {
      for (std::size_t l = 0; l < nl; ++l)
        args[i++] = index(d < plan.rank ? plan.strides[l][d] : 0);
    }
    for (const auto& l : leaves) args[i++] = l;
    for (std::size_t s = 0; s < ns; ++s) args[i++] = scalars[s];
    launch_1d_raw(src, "locus_expr_bcast", n, args.data(), args.size());
  }

  /// src viewed as [outer, len, inner] reduced over len into dst [outer, inner].
  template <class T>
  static void reduce(reduce_op op, const buffer<T>& src, std::size_t outer, std::size_t len,
                     std::size_t inner, buffer<T>& dst) {
    namespace ocl = backend::opencl;
    if (outer * inner == 0) return;
    auto& dc = ctx();
    const auto& prog = ocl::kernels::reduce_program<T>();
    const bool mean = op == reduce_op::mean;
    const char* tag = op == reduce_op::max ? "max" : op == reduce_op::min ? "min" : "sum";
    const T scale = mean && len ? static_cast<T>(T(1) / static_cast<T>(len)) : T(1);
    const cl_ulong divisor = mean ? len : 0;
    if (inner > 1) {
      const std::string name = std::string("locus_reduce_strided_") + tag;
      const auto h = ocl::lookup(dc, prog, name.c_str());
      const std::size_t lx = ocl::pow2_floor(64, h.max_work_group);
      const std::size_t global[2] = {ocl::round_up(inner, lx), outer}, local[2] = {lx, 1};
      ocl::launch(dc, launches(), prog, name.c_str(), 2, global, local, ocl::arg(src),
                  static_cast<cl_ulong>(outer), static_cast<cl_ulong>(len),
                  static_cast<cl_ulong>(inner), ocl::arg(dst), scale, divisor);
      return;
    }
    const std::string name = std::string("locus_reduce_rows_") + tag;
    const auto h = ocl::lookup(dc, prog, name.c_str());
    const std::size_t wg = ocl::pow2_floor(256, h.max_work_group);
    // Split long rows over several work-groups when there are too few rows to fill the
    // device; the partials are reduced by a second launch of the same kernel.
    const std::size_t target = std::max<std::size_t>(1, dc.info.compute_units) * 8;
    std::size_t groups = 1;
    if (outer < target && len > wg * 16) {
      groups = std::min((len + wg * 16 - 1) / (wg * 16), (target + outer - 1) / outer);
    }
    const ocl::local_mem scratch{wg * sizeof(T)};
    const std::size_t local[1] = {wg};
    if (groups <= 1) {
      const std::size_t global[1] = {outer * wg};
      ocl::launch(dc, launches(), prog, name.c_str(), 1, global, local, ocl::arg(src),
                  static_cast<cl_ulong>(len), static_cast<cl_ulong>(len), cl_ulong{1},
                  ocl::arg(dst), scale, divisor, scratch);
      return;
    }
    const std::size_t chunk = (len + groups - 1) / groups;
    buffer<T> partial(outer * groups);
    const std::size_t g1[1] = {outer * groups * wg}, g2[1] = {outer * wg};
    ocl::launch(dc, launches(), prog, name.c_str(), 1, g1, local, ocl::arg(src),
                static_cast<cl_ulong>(len), static_cast<cl_ulong>(chunk),
                static_cast<cl_ulong>(groups), ocl::arg(partial), scale, cl_ulong{0}, scratch);
    ocl::launch(dc, launches(), prog, name.c_str(), 1, g2, local, ocl::arg(partial),
                static_cast<cl_ulong>(groups), static_cast<cl_ulong>(groups), cl_ulong{1},
                ocl::arg(dst), scale, divisor, scratch);
  }

  /// Index of the first maximum along len, as int32.
  template <class T>
  static void argmax(const buffer<T>& src, std::size_t outer, std::size_t len, std::size_t inner,
                     buffer<std::int32_t>& dst) {
    namespace ocl = backend::opencl;
    if (outer * inner == 0) return;
    // The kernels write int32 indices (and count in int): the last index, len - 1, must fit.
    ocl::check_size_limit("OpenCL argmax", "the reduced axis length", len,
                          static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()) + 1,
                          "argmax returns int32 indices");
    auto& dc = ctx();
    const auto& prog = ocl::kernels::reduce_program<T>();
    if (inner > 1) {
      const auto h = ocl::lookup(dc, prog, "locus_argmax_strided");
      const std::size_t lx = ocl::pow2_floor(64, h.max_work_group);
      const std::size_t global[2] = {ocl::round_up(inner, lx), outer}, local[2] = {lx, 1};
      ocl::launch(dc, launches(), prog, "locus_argmax_strided", 2, global, local, ocl::arg(src),
                  static_cast<cl_ulong>(outer), static_cast<cl_ulong>(len),
                  static_cast<cl_ulong>(inner), ocl::arg(dst));
      return;
    }
    const auto h = ocl::lookup(dc, prog, "locus_argmax_rows");
    const std::size_t wg = ocl::pow2_floor(256, h.max_work_group);
    const std::size_t global[1] = {outer * wg}, local[1] = {wg};
    ocl::launch(dc, launches(), prog, "locus_argmax_rows", 1, global, local, ocl::arg(src),
                static_cast<cl_ulong>(len), ocl::arg(dst), ocl::local_mem{wg * sizeof(T)},
                ocl::local_mem{wg * sizeof(cl_int)});
  }

  template <class T>
  static void gemm(const gemm_args<buffer<T>, T>& g) {
    namespace ocl = backend::opencl;
    if (g.b_colsum && g.n) b_column_sums(g);  // reads only B: order with the product is free
    if (g.batch == 0 || g.m == 0 || g.n == 0) return;
    auto& dc = ctx();
    if constexpr (std::is_floating_point_v<T>) {
      namespace K = ocl::kernels;
      // The tuned configuration depends on the physical device, which is fixed for N.
      static const K::gemm_config cfg =
          K::choose_gemm_config(dc.info.id, std::is_same_v<T, double>);
      static const ocl::program_source src(
          std::string("locus_gemm<") + K::cl_type_name<T>() + ">", K::gemm_source(),
          std::string(K::base_options()) + " " + cfg.build_options());
      K::gemm_call call;
      call.batch = g.batch;
      call.m = g.m;
      call.n = g.n;
      call.k = g.k;
      call.trans_a = g.trans_a;
      call.trans_b = g.trans_b;
      call.alpha = static_cast<double>(g.alpha);
      call.beta = static_cast<double>(g.beta);
      call.a = g.a->handle();
      call.a_offset = g.a_offset;
      call.lda = g.lda;
      call.stride_a = g.stride_a;
      call.b = g.b->handle();
      call.b_offset = g.b_offset;
      call.ldb = g.ldb;
      call.stride_b = g.stride_b;
      call.c = g.c->handle();
      call.c_offset = g.c_offset;
      call.ldc = g.ldc;
      call.stride_c = g.stride_c;
      call.bias = g.bias ? g.bias->handle() : nullptr;
      call.bias_offset = g.bias_offset;
      call.act = g.act;
      // The kernels index with 32-bit int: refuse, before building or enqueuing anything,
      // a size they would truncate (it would read and write out of bounds on the device).
      if (const auto bad = K::find_gemm_size_violation(call, cfg)) {
        ocl::check_size_limit("OpenCL GEMM " + src.name + " on " + dc.info.name, bad.what, bad.size,
                              bad.limit,
                              "the OpenCL GEMM kernels index with 32-bit int; split the "
                              "product or compute it on Device<CPU>");
      }
      std::lock_guard lk(dc.mutex);
      K::gemm_kernels ks;
      const auto names = K::gemm_kernel_names();
      const auto slots = ks.slots();
      for (std::size_t i = 0; i < names.size(); ++i)
        *slots[i] = dc.programs->kernel(src, names[i]).kernel;
      unsigned count = 0;
      cl_int err = K::enqueue_gemm(dc.queue, ks, cfg, call, &count);
      if (ocl::is_out_of_memory(err)) {
        dc.pool->release_cached();
        clFinish(dc.queue);
        err = K::enqueue_gemm(dc.queue, ks, cfg, call, &count);
        if (ocl::is_out_of_memory(err)) {
          throw dc.pool->launch_oom(0, "GEMM failed with " + ocl::error_name(err));
        }
      }
      // The message is built only on failure: a GEMM allocates nothing on the host.
      if (err != CL_SUCCESS) ocl::check(err, "enqueue_gemm", src.name + " on " + dc.info.name);
      launches().fetch_add(count, std::memory_order_relaxed);
    } else {
      // gemm_into refuses an epilogue for integers on every backend; this is the backstop.
      if (g.has_epilogue())
        throw argument_error("locus: the GEMM epilogue needs a floating-point element type");
      const auto& prog = ocl::kernels::gemm_fallback_program<T>();
      constexpr std::size_t ts = ocl::kernels::gemm_fallback_tile;
      const std::size_t global[3] = {ocl::round_up(g.n, ts), ocl::round_up(g.m, ts), g.batch};
      const std::size_t local[3] = {ts, ts, 1};
      ocl::launch(dc, launches(), prog, "locus_gemm_fallback", 3, global, local,
                  static_cast<cl_ulong>(g.m), static_cast<cl_ulong>(g.n),
                  static_cast<cl_ulong>(g.k), cl_int{g.trans_a ? 1 : 0}, cl_int{g.trans_b ? 1 : 0},
                  g.alpha, ocl::arg(*g.a), static_cast<cl_ulong>(g.a_offset),
                  static_cast<cl_ulong>(g.lda), static_cast<cl_ulong>(g.stride_a), ocl::arg(*g.b),
                  static_cast<cl_ulong>(g.b_offset), static_cast<cl_ulong>(g.ldb),
                  static_cast<cl_ulong>(g.stride_b), g.beta, ocl::arg(*g.c),
                  static_cast<cl_ulong>(g.c_offset), static_cast<cl_ulong>(g.ldc),
                  static_cast<cl_ulong>(g.stride_c));
    }
  }

  /// The column sums of op(B) that a GEMM call asked for (gemm_args::b_colsum): one
  /// reduction over B as stored, a contiguous batch-1 operand at offset 0.
  template <class T>
  static void b_column_sums(const gemm_args<buffer<T>, T>& g) {
    const bool contiguous = g.batch == 1 && g.b_offset == 0 && g.b_colsum_offset == 0 &&
                            g.ldb == (g.trans_b ? g.k : g.n);
    if (!contiguous) {
      throw argument_error(
          "locus: GEMM column sums of B need one contiguous B and sums at offset 0");
    }
    if (g.k == 0) {
      fill(*g.b_colsum, T(0));
    } else if (g.trans_b) {
      reduce(reduce_op::sum, *g.b, g.n, g.k, 1, *g.b_colsum);  // rows of B are columns of op(B)
    } else {
      reduce(reduce_op::sum, *g.b, 1, g.k, g.n, *g.b_colsum);
    }
  }

  /// dst (cols x rows) = src (rows x cols) transposed.
  template <class T>
  static void transpose2d(const buffer<T>& src, std::size_t rows, std::size_t cols,
                          buffer<T>& dst) {
    namespace ocl = backend::opencl;
    if (rows * cols == 0) return;
    auto& dc = ctx();
    constexpr std::size_t t = ocl::kernels::transpose_tile;
    const std::size_t global[2] = {ocl::round_up(cols, t), ocl::round_up(rows, t)};
    const std::size_t local[2] = {t, t};
    ocl::launch(dc, launches(), ocl::kernels::transpose_program<T>(), "locus_transpose2d", 2,
                global, local, ocl::arg(src), static_cast<cl_ulong>(rows),
                static_cast<cl_ulong>(cols), ocl::arg(dst));
  }

  /// Philox-4x32-10, element i from (seed, i): the same numbers as the host backend.
  template <class T>
  static void random(random_dist dist, buffer<T>& dst, std::uint64_t seed, T a, T b) {
    namespace ocl = backend::opencl;
    if (dst.empty()) return;
    if constexpr (!std::is_floating_point_v<T>) {
      if (dist == random_dist::normal) {
        throw argument_error("locus: normal() needs a floating-point tensor");
      }
    }
    launch_1d(ocl::kernels::random_program<T>(),
              dist == random_dist::uniform ? "locus_uniform" : "locus_normal", dst.size(),
              ocl::arg(dst), static_cast<cl_ulong>(dst.size()), static_cast<cl_ulong>(seed), a, b);
  }

  /// Waits until every command queued on this device has finished.
  static void synchronize() { backend::opencl::check(clFinish(ctx().queue), "clFinish"); }

  static backend::opencl::device_context& ctx() { return backend::opencl::device_of<N>(); }
  static std::atomic<std::uint64_t>& launches() { return detail::counters_of<device>().launches; }

 private:
  static constexpr std::size_t preferred_local = 256;

  static void launch_1d_raw(const backend::opencl::program_source& src, const char* kernel,
                            std::size_t n, const backend::opencl::raw_arg* args,
                            std::size_t count) {
    namespace ocl = backend::opencl;
    auto& dc = ctx();
    const auto h = ocl::lookup(dc, src, kernel);
    const std::size_t local[1] = {ocl::pow2_floor(preferred_local, h.max_work_group)};
    const std::size_t global[1] = {ocl::round_up(n, local[0])};
    ocl::launch_raw(dc, launches(), src, kernel, 1, global, local, args, count);
  }

  template <class... A>
  static void launch_1d(const backend::opencl::program_source& src, const char* kernel,
                        std::size_t n, const A&... args) {
    const backend::opencl::raw_arg list[] = {backend::opencl::raw_arg::from(args)...};
    launch_1d_raw(src, kernel, n, list, sizeof...(A));
  }

  // A transfer or copy that fails for lack of memory releases the cache and retries once.
  template <class F>
  static void retry_oom(backend::opencl::device_context& dc, std::size_t bytes, const char* call,
                        F&& f) {
    namespace ocl = backend::opencl;
    cl_int err = f();
    if (ocl::is_out_of_memory(err)) {
      dc.pool->release_cached();
      err = f();
      if (ocl::is_out_of_memory(err)) {
        throw dc.pool->launch_oom(bytes,
                                  std::string(call) + " failed with " + ocl::error_name(err));
      }
    }
    ocl::check(err, call, dc.info.name);
  }
};

// The seam, checked where the backend is defined (backend/concepts.hpp).
static_assert(
    TensorBackend<backend_for<Device<GPU, 0>>, Device<GPU, 0>>,
    "backend_for<Device<GPU, N>> must provide what TensorBackend (backend/concepts.hpp) requires");

}  // namespace locus
