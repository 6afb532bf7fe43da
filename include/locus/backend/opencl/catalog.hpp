// Every OpenCL program locus builds, for one device: used by locus-doctor (build each
// once and time it) and by the benchmarks (cold vs warm builds of the whole set).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "codegen.hpp"
#include "kernels/fill.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_fallback.hpp"
#include "kernels/random.hpp"
#include "kernels/reduce.hpp"
#include "kernels/transpose.hpp"
#include "platform.hpp"

namespace locus::backend::opencl {

/// A program and the kernels in it.
struct catalog_entry {
  program_source source;
  std::vector<std::string> kernels;
};

namespace detail {
template <class T>
void add_typed(std::vector<catalog_entry>& out) {
  out.push_back({kernels::fill_program<T>(), {"locus_fill"}});
  out.push_back({kernels::reduce_program<T>(),
                 {"locus_reduce_strided_sum", "locus_reduce_rows_sum", "locus_reduce_strided_max",
                  "locus_reduce_rows_max", "locus_reduce_strided_min", "locus_reduce_rows_min",
                  "locus_argmax_strided", "locus_argmax_rows"}});
  out.push_back({kernels::transpose_program<T>(), {"locus_transpose2d"}});
  std::vector<std::string> rnd{"locus_uniform"};
  if constexpr (std::is_floating_point_v<T>) rnd.push_back("locus_normal");
  out.push_back({kernels::random_program<T>(), rnd});
}
}  // namespace detail

/// The programs of `dev`: per element type (double only with cl_khr_fp64), the GEMM with
/// the device's configuration, and a representative fused expression, relu(a * b + c).
inline std::vector<catalog_entry> kernel_catalog(const device_info& dev) {
  std::vector<catalog_entry> out;
  detail::add_typed<float>(out);
  detail::add_typed<std::int32_t>(out);
  if (dev.fp64) detail::add_typed<double>(out);
  out.push_back({kernels::gemm_fallback_program<std::int32_t>(), {"locus_gemm_fallback"}});
  std::vector<std::string> gemm_names;
  for (const char* n : kernels::gemm_kernel_names()) gemm_names.push_back(n);
  for (bool fp64 : {false, true}) {
    if (fp64 && !dev.fp64) continue;
    const auto cfg = kernels::choose_gemm_config(dev.id, fp64);
    out.push_back(
        {program_source(fp64 ? "locus_gemm<double>" : "locus_gemm<float>", kernels::gemm_source(),
                        std::string(kernels::base_options()) + " " + cfg.build_options()),
         gemm_names});
  }
  using L = TensorRef<float, Device<GPU>>;
  using E = Expr<op::relu, Expr<op::add, Expr<op::mul, L, L>, L>>;
  out.push_back(
      {codegen::expression_program<float, E>(false), {"locus_expr_flat", "locus_expr_bcast"}});
  return out;
}

}  // namespace locus::backend::opencl
