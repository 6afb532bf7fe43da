// transpose2d: dst (cols x rows) = src (rows x cols)^T through a tile in local memory,
// so that both the reads and the writes of a work-group touch contiguous addresses.
// The tile has one extra column so that reading it by columns hits distinct local-memory
// banks.
#pragma once

#include "../program_cache.hpp"
#include "common.hpp"

namespace locus::backend::opencl::kernels {

inline constexpr std::size_t transpose_tile = 16;

template <class T>
const program_source& transpose_program() {
  static const program_source src(std::string("locus_transpose2d<") + cl_type_name<T>() + ">",
                                  type_prelude<T>() + R"CLC(
#define TILE 16
__kernel void locus_transpose2d(__global const T* src, ulong rows, ulong cols, __global T* dst) {
  __local T tile[TILE][TILE + 1];
  const size_t lx = get_local_id(0), ly = get_local_id(1);
  const size_t c0 = get_group_id(0) * TILE, r0 = get_group_id(1) * TILE;
  if (r0 + ly < rows && c0 + lx < cols) tile[ly][lx] = src[(r0 + ly) * cols + c0 + lx];
  barrier(CLK_LOCAL_MEM_FENCE);
  // Work-item (lx, ly) now writes row c0 + ly of dst, column r0 + lx.
  if (c0 + ly < cols && r0 + lx < rows) dst[(c0 + ly) * rows + r0 + lx] = tile[lx][ly];
}
)CLC",
                                  base_options());
  return src;
}

}  // namespace locus::backend::opencl::kernels
