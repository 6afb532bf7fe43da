// fill: dst[i] = value.
#pragma once

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

template <class T>
const program_source& fill_program() {
  static const program_source src(std::string("locus_fill<") + cl_type_name<T>() + ">",
                                  type_prelude<T>() + R"CLC(
__kernel void locus_fill(__global T* dst, ulong n, T value) {
  const size_t i = get_global_id(0);
  if (i < n) dst[i] = value;
}
)CLC",
                                  base_options());
  return src;
}

}  // namespace locus::backend::opencl::kernels
