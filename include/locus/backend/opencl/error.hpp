// OpenCL error codes as names, and the one place that turns a failed call into a typed
// exception. Every OpenCL call in the backend goes through check(), so a failure always
// names the call and the code (CL_INVALID_VALUE, not "-30") and is never ignored.
#pragma once

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <cstddef>
#include <string>

#include "../../error.hpp"

namespace locus {

/// An operand size the OpenCL kernels cannot index: their index arithmetic is 32-bit
/// (OpenCL C int), so some sizes must stay below a limit near 2^31. Thrown before anything
/// is allocated or enqueued, so the device stays usable; what() names the operation, the
/// size and the limit. The same operation on smaller operands, or on Device<CPU>, works.
class size_limit_error : public device_error {
 public:
  size_limit_error(const std::string& what, std::size_t size, std::size_t limit)
      : device_error(what), size_(size), limit_(limit) {}
  /// The offending size and the largest size accepted.
  std::size_t size() const noexcept { return size_; }
  std::size_t limit() const noexcept { return limit_; }

 private:
  std::size_t size_;
  std::size_t limit_;
};

}  // namespace locus

namespace locus::backend::opencl {

/// The ICD loader's "no platform" code (cl_khr_icd); spelled here because cl_ext.h is
/// not guaranteed to define it under every CL_TARGET_OPENCL_VERSION.
inline constexpr cl_int platform_not_found_khr = -1001;

/// "CL_INVALID_VALUE" for -30, and so on; unknown codes are printed as numbers.
inline std::string error_name(cl_int code) {
  switch (code) {
#define LOCUS_CL_CODE_(C) \
  case C:                 \
    return #C;
    LOCUS_CL_CODE_(CL_SUCCESS)
    LOCUS_CL_CODE_(CL_DEVICE_NOT_FOUND)
    LOCUS_CL_CODE_(CL_DEVICE_NOT_AVAILABLE)
    LOCUS_CL_CODE_(CL_COMPILER_NOT_AVAILABLE)
    LOCUS_CL_CODE_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    LOCUS_CL_CODE_(CL_OUT_OF_RESOURCES)
    LOCUS_CL_CODE_(CL_OUT_OF_HOST_MEMORY)
    LOCUS_CL_CODE_(CL_PROFILING_INFO_NOT_AVAILABLE)
    LOCUS_CL_CODE_(CL_MEM_COPY_OVERLAP)
    LOCUS_CL_CODE_(CL_IMAGE_FORMAT_MISMATCH)
    LOCUS_CL_CODE_(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    LOCUS_CL_CODE_(CL_BUILD_PROGRAM_FAILURE)
    LOCUS_CL_CODE_(CL_MAP_FAILURE)
    LOCUS_CL_CODE_(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    LOCUS_CL_CODE_(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    LOCUS_CL_CODE_(CL_COMPILE_PROGRAM_FAILURE)
    LOCUS_CL_CODE_(CL_LINKER_NOT_AVAILABLE)
    LOCUS_CL_CODE_(CL_LINK_PROGRAM_FAILURE)
    LOCUS_CL_CODE_(CL_DEVICE_PARTITION_FAILED)
    LOCUS_CL_CODE_(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    LOCUS_CL_CODE_(CL_INVALID_VALUE)
    LOCUS_CL_CODE_(CL_INVALID_DEVICE_TYPE)
    LOCUS_CL_CODE_(CL_INVALID_PLATFORM)
    LOCUS_CL_CODE_(CL_INVALID_DEVICE)
    LOCUS_CL_CODE_(CL_INVALID_CONTEXT)
    LOCUS_CL_CODE_(CL_INVALID_QUEUE_PROPERTIES)
    LOCUS_CL_CODE_(CL_INVALID_COMMAND_QUEUE)
    LOCUS_CL_CODE_(CL_INVALID_HOST_PTR)
    LOCUS_CL_CODE_(CL_INVALID_MEM_OBJECT)
    LOCUS_CL_CODE_(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    LOCUS_CL_CODE_(CL_INVALID_IMAGE_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_SAMPLER)
    LOCUS_CL_CODE_(CL_INVALID_BINARY)
    LOCUS_CL_CODE_(CL_INVALID_BUILD_OPTIONS)
    LOCUS_CL_CODE_(CL_INVALID_PROGRAM)
    LOCUS_CL_CODE_(CL_INVALID_PROGRAM_EXECUTABLE)
    LOCUS_CL_CODE_(CL_INVALID_KERNEL_NAME)
    LOCUS_CL_CODE_(CL_INVALID_KERNEL_DEFINITION)
    LOCUS_CL_CODE_(CL_INVALID_KERNEL)
    LOCUS_CL_CODE_(CL_INVALID_ARG_INDEX)
    LOCUS_CL_CODE_(CL_INVALID_ARG_VALUE)
    LOCUS_CL_CODE_(CL_INVALID_ARG_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_KERNEL_ARGS)
    LOCUS_CL_CODE_(CL_INVALID_WORK_DIMENSION)
    LOCUS_CL_CODE_(CL_INVALID_WORK_GROUP_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_WORK_ITEM_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_GLOBAL_OFFSET)
    LOCUS_CL_CODE_(CL_INVALID_EVENT_WAIT_LIST)
    LOCUS_CL_CODE_(CL_INVALID_EVENT)
    LOCUS_CL_CODE_(CL_INVALID_OPERATION)
    LOCUS_CL_CODE_(CL_INVALID_GL_OBJECT)
    LOCUS_CL_CODE_(CL_INVALID_BUFFER_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_MIP_LEVEL)
    LOCUS_CL_CODE_(CL_INVALID_GLOBAL_WORK_SIZE)
    LOCUS_CL_CODE_(CL_INVALID_PROPERTY)
    LOCUS_CL_CODE_(CL_INVALID_IMAGE_DESCRIPTOR)
    LOCUS_CL_CODE_(CL_INVALID_COMPILER_OPTIONS)
    LOCUS_CL_CODE_(CL_INVALID_LINKER_OPTIONS)
    LOCUS_CL_CODE_(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef LOCUS_CL_CODE_
    case platform_not_found_khr:
      return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
      return "OpenCL error " + std::to_string(code);
  }
}

/// True for the codes a driver uses to say "out of device or host memory".
inline bool is_out_of_memory(cl_int code) {
  return code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES ||
         code == CL_OUT_OF_HOST_MEMORY;
}

/// Throws size_limit_error unless `size` <= `limit`: "locus: <operation>: <what> = <size>
/// exceeds the limit of <limit> (<why>)". For checks made before anything is enqueued.
inline void check_size_limit(const std::string& operation, const std::string& what,
                             std::size_t size, std::size_t limit, const std::string& why) {
  if (size <= limit) return;
  throw size_limit_error("locus: " + operation + ": " + what + " = " + std::to_string(size) +
                             " exceeds the limit of " + std::to_string(limit) + " (" + why + ")",
                         size, limit);
}

/// Throws opencl_error naming `call` (and optional context, e.g. the kernel) on failure.
inline void check(cl_int code, const char* call, const std::string& context = {}) {
  if (code == CL_SUCCESS) return;
  std::string msg = std::string("locus: OpenCL call ") + call + " failed with " + error_name(code) +
                    " (" + std::to_string(code) + ")";
  if (!context.empty()) msg += " [" + context + "]";
  throw opencl_error(msg, code);
}

}  // namespace locus::backend::opencl
