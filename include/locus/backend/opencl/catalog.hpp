// Every OpenCL program locus builds, for one device: used by locus-doctor (build each
// once and time it) and by the benchmarks (cold vs warm builds of the whole set).
//
// A new program source must be added here. tests/test_opencl_catalog.cpp enforces it: it
// finds every OpenCL C kernel defined anywhere under include/locus and fails for one that
// no catalog program contains, and it checks each entry's kernel list against the
// kernels the built program reports (CL_PROGRAM_KERNEL_NAMES).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "codegen.hpp"
#include "error.hpp"
#include "kernels/fill.hpp"
#include "kernels/gemm.hpp"
#include "kernels/gemm_fallback.hpp"
#include "kernels/inference.hpp"
#include "kernels/nn.hpp"
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

/// A kernel definition found in source text: its name and whether "##" pastes more onto it
/// (locus_reduce_rows_##NAME), so that only the name's beginning is known.
struct kernel_definition {
  std::string name;
  bool pasted = false;
};

/// Every kernel definition in `text`, OpenCL C or C++ that holds OpenCL C in raw strings:
/// the token __kernel, then (attributes: no ';', '{' or '}') the token void, the name and an
/// optional "##". Kernels inside #if are found whether or not the compiler would see them.
inline std::vector<kernel_definition> kernel_definitions_in(const std::string& text) {
  const auto ident = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  const std::string key = "__kernel", v = "void";
  const auto token_at = [&](std::size_t at, const std::string& t) {
    return text.compare(at, t.size(), t) == 0 && (at == 0 || !ident(text[at - 1])) &&
           (at + t.size() >= text.size() || !ident(text[at + t.size()]));
  };
  std::vector<kernel_definition> out;
  for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    // No token test before it: in C++ source it may follow an escape such as "\n".
    if (at + key.size() < text.size() && ident(text[at + key.size()])) continue;
    std::size_t p = at + key.size();
    while (p < text.size() && !token_at(p, v) && text[p] != ';' && text[p] != '{' && text[p] != '}')
      ++p;
    if (p >= text.size() || !token_at(p, v)) continue;
    p += v.size();
    while (p < text.size() && (text[p] == ' ' || text[p] == '\n' || text[p] == '\t')) ++p;
    const std::size_t b = p;
    while (p < text.size() && ident(text[p])) ++p;
    if (p == b) continue;
    kernel_definition k{text.substr(b, p - b), false};
    while (p < text.size() && text[p] == ' ') ++p;
    k.pasted = text.compare(p, 2, "##") == 0;
    out.push_back(std::move(k));
  }
  return out;
}

/// The names of the kernels an OpenCL C text defines, in order. Only for texts without
/// preprocessor-made kernels (a pasted name is left out; kernels inside #if are listed).
inline std::vector<std::string> kernel_names_in(const std::string& text) {
  std::vector<std::string> out;
  for (auto& k : kernel_definitions_in(text)) {
    if (!k.pasted) out.push_back(std::move(k.name));
  }
  return out;
}

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
  // The nn kernels (conv, pooling, gather, one-hot) with 32- and 64-bit index arithmetic;
  // their source has no preprocessor-made kernels, so the list is read from it.
  for (bool wide : {false, true}) {
    const program_source& nn = kernels::nn_program<T>(wide);
    out.push_back({nn, kernel_names_in(kernels::nn_source())});
  }
  // The strided block copy (Concatenate, ZeroPadding2D), both index widths.
  for (bool wide : {false, true}) {
    out.push_back(
        {kernels::copy_block_program<T>(wide), kernel_names_in(kernels::copy_block_source())});
  }
  // The depthwise convolution and row scatter kernels (DepthwiseConv2D, SeparableConv2D,
  // Embedding): floating-point only, both index widths.
  if constexpr (std::is_floating_point_v<T>) {
    for (bool wide : {false, true}) {
      out.push_back({kernels::depthwise_scatter_program<T>(wide),
                     kernel_names_in(kernels::depthwise_scatter_source())});
    }
  }
}
}  // namespace detail

/// The names of the kernels in a built program, as the driver reports them
/// (CL_PROGRAM_KERNEL_NAMES, OpenCL 1.2).
inline std::vector<std::string> program_kernel_names(cl_program program) {
  std::size_t n = 0;
  check(clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, 0, nullptr, &n), "clGetProgramInfo",
        "CL_PROGRAM_KERNEL_NAMES");
  std::string all(n, '\0');
  if (n) {
    check(clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, n, all.data(), nullptr),
          "clGetProgramInfo", "CL_PROGRAM_KERNEL_NAMES");
  }
  std::vector<std::string> out;
  std::string cur;
  for (char c : all) {
    if (c == ';' || c == '\0') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ' && c != '\n') {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

/// The programs of `dev`: per element type (double only with cl_khr_fp64) fill, reduce,
/// transpose, random and nn (both index widths), the GEMM with the device's
/// configuration, the inference plans' steps, and a representative fused expression,
/// relu(a * b + c).
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
  // The inference plans' steps (inference/opencl/).
  out.push_back({kernels::inference_float_program(),
                 detail::kernel_names_in(kernels::inference_float_source())});
  out.push_back({kernels::inference_int8_program(),
                 detail::kernel_names_in(kernels::inference_int8_source())});
  using L = TensorRef<float, Device<GPU>>;
  using E = Expr<op::relu, Expr<op::add, Expr<op::mul, L, L>, L>>;
  for (bool wide : {false, true}) {
    out.push_back(
        {codegen::expression_program<float, E>(wide), {"locus_expr_flat", "locus_expr_bcast"}});
  }
  return out;
}

}  // namespace locus::backend::opencl
