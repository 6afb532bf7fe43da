// What the OpenCL runners of the inference plans share: weights uploaded once, 32-bit
// index arguments, and one-dimensional launches of their programs' kernels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "../../backend/backend.hpp"
#include "../../backend/opencl/launch.hpp"
#include "../../device.hpp"
#include "../../error.hpp"

namespace locus::inference::opencl {

/// A device buffer holding v (at least one element: an empty weight is a valid argument).
template <AnyDevice Dev, class E>
typename backend_for<Dev>::template buffer<E> upload(const std::vector<E>& v) {
  typename backend_for<Dev>::template buffer<E> b(std::max<std::size_t>(v.size(), 1));
  backend_for<Dev>::upload(b, v.data(), v.size());
  return b;
}

/// An element count for the kernels' uint indices; a pass too large for them is refused.
inline backend::opencl::raw_arg u32(std::size_t v) {
  if (v > 0xffffffffu)
    throw unsupported_error("locus: an inference pass of " + std::to_string(v) +
                            " elements exceeds the OpenCL steps' 32-bit index; lower max_batch");
  return backend::opencl::raw_arg::value(static_cast<cl_uint>(v));
}

/// Enqueues `kernel` of `program` over n work-items (groups of up to 64).
template <AnyDevice Dev>
void launch(const backend::opencl::program_source& program, const char* kernel, std::size_t n,
            const backend::opencl::raw_arg* args, std::size_t count) {
  namespace ocl = backend::opencl;
  using B = backend_for<Dev>;
  auto& dc = B::ctx();
  const auto h = ocl::lookup(dc, program, kernel);
  const std::size_t local[1] = {ocl::pow2_floor(std::size_t{64}, h.max_work_group)};
  const std::size_t global[1] = {ocl::round_up(std::max<std::size_t>(n, 1), local[0])};
  ocl::launch_raw(dc, B::launches(), program, kernel, 1, global, local, args, count);
}

}  // namespace locus::inference::opencl
