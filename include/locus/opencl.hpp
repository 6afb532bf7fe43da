// The user-facing API of the OpenCL runtime: which devices exist, which one each
// Device<GPU, N> uses, the CPU-device opt-in, memory limits and statistics, and the
// kernel cache.
//
//   for (const auto& d : locus::devices()) std::cout << d.description << '\n';
//   locus::opencl::allow_cpu_devices(true);            // or LOCUS_OPENCL_ALLOW_CPU=1
//   locus::opencl::select_devices({1, 0});             // or LOCUS_GPU_DEVICES=1,0
//   locus::set_memory_limit<locus::Device<locus::GPU>>(2ull << 30);
//   locus::opencl::set_kernel_cache_dir("/var/cache/locus"); // or LOCUS_KERNEL_CACHE_DIR
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "backend/opencl/backend.hpp"
#include "backend/opencl/buffer.hpp"
#include "backend/opencl/platform.hpp"
#include "backend/opencl/runtime.hpp"
#include "backend/opencl/settings.hpp"
#include "device.hpp"

namespace locus {

/// One OpenCL device as locus sees it (see backend/opencl/platform.hpp for the fields).
struct device_record : backend::opencl::device_info {
  bool eligible = false;                // usable as some Device<GPU, N> under current settings
  bool cpu_accepted_by_opt_in = false;  // a CPU device, eligible only because of the opt-in
  std::string
      description;  // one line, e.g. "... CPU device (PoCL), accepted as GPU by explicit opt-in"
};

/// Every OpenCL device found, in the order Device<GPU, N> and LOCUS_GPU_DEVICES count
/// them. Empty when no platform exists (no exception: listing is not using).
inline std::vector<device_record> devices() {
  namespace ocl = backend::opencl;
  const bool allow = ocl::cpu_devices_allowed();
  std::vector<device_record> out;
  for (const auto& d : ocl::discover().devices) {
    device_record r;
    static_cast<ocl::device_info&>(r) = d;
    r.eligible = ocl::is_eligible(d, allow);
    r.cpu_accepted_by_opt_in = r.eligible && !d.is_gpu && d.is_cpu;
    r.description = ocl::describe(d, allow);
    out.push_back(std::move(r));
  }
  return out;
}

using memory_stats = backend::opencl::memory_stats;

/// Caps the device memory locus may hold on Dev (live tensors plus the pool's cache);
/// 0 restores the default, the device's global memory. Exceeding it throws
/// out_of_memory_error.
template <OpenCLDevice Dev>
void set_memory_limit(std::size_t bytes) {
  backend::opencl::device_of<Dev::index>().pool->set_limit(bytes);
}

/// Bytes in use, cached for reuse, the limit, and the device's global memory.
template <OpenCLDevice Dev>
memory_stats memory_info() {
  return backend::opencl::device_of<Dev::index>().pool->stats();
}

/// Frees the buffers the pool keeps for reuse on Dev.
template <OpenCLDevice Dev>
void release_cached_memory() {
  backend::opencl::device_of<Dev::index>().pool->release_cached();
}

/// What Dev is: "Device<GPU, 1> = [1] <name> (CPU, ...): CPU device (PoCL), accepted as GPU
/// by explicit opt-in". Opens the device (throws the typed error if it cannot).
template <OpenCLDevice Dev>
std::string device_description() {
  const auto& dc = backend::opencl::device_of<Dev::index>();
  return device_name<Dev>() + " = " + backend::opencl::describe(dc.info, !dc.info.is_gpu);
}

/// Blocks until every command queued on Dev has finished.
template <OpenCLDevice Dev>
void synchronize() {
  backend_for<Dev>::synchronize();
}

namespace opencl {

using backend::opencl::device_info;
using backend::opencl::fp64_unsupported_error;
using backend::opencl::kernel_cache_stats;

/// Accept (or refuse) CPU OpenCL devices as Device<GPU, N>; overrides
/// LOCUS_OPENCL_ALLOW_CPU. Affects devices not yet in use.
inline void allow_cpu_devices(bool allow) {
  auto& s = backend::opencl::settings::get();
  std::lock_guard lk(s.mutex);
  s.allow_cpu = allow;
}

/// Whether CPU OpenCL devices are accepted now (API setting, else the environment).
inline bool cpu_devices_allowed() {
  return backend::opencl::cpu_devices_allowed();
}

/// Device<GPU, i> uses devices()[physical[i]]; overrides LOCUS_GPU_DEVICES. An empty list
/// drops the override (back to LOCUS_GPU_DEVICES, else eligible devices in order). Throws
/// argument_error if it would move a Device<GPU, N> that is already in use: devices in
/// use keep their binding until the process ends.
inline void select_devices(const std::vector<std::size_t>& physical) {
  if (!physical.empty()) backend::opencl::runtime::instance().check_remap(physical);
  auto& s = backend::opencl::settings::get();
  std::lock_guard lk(s.mutex);
  if (physical.empty()) {
    s.mapping.reset();
  } else {
    s.mapping = physical;
  }
}

/// The index in devices() that Device<GPU, logical> uses (or would use, if not opened
/// yet); throws no_platform_error, no_device_error or not_a_gpu_error like opening would.
inline std::size_t physical_device(std::size_t logical) {
  return backend::opencl::runtime::instance().physical_index(logical);
}

/// Turns the on-disk kernel binary cache on (a directory) or off (""); overrides
/// LOCUS_KERNEL_CACHE_DIR.
inline void set_kernel_cache_dir(const std::string& path) {
  auto& s = backend::opencl::settings::get();
  std::lock_guard lk(s.mutex);
  s.cache_dir = path;
}

/// The directory of the on-disk kernel cache ("" when off).
inline std::string kernel_cache_dir() {
  return backend::opencl::kernel_cache_dir();
}

/// The ICD files the OpenCL loader reads ("path -> library").
inline std::vector<std::string> icd_files() {
  return backend::opencl::icd_files();
}

/// Drops every compiled program and kernel object held in memory, on every device (the
/// next launch loads from the disk cache or rebuilds). For benchmarks and tests; do not
/// call while another thread launches work.
inline void clear_kernel_memory_cache() {
  for (auto* dc : backend::opencl::runtime::instance().contexts()) {
    std::lock_guard lk(dc->mutex);
    dc->programs->clear();
  }
}

/// Program cache counters of Dev's device.
template <OpenCLDevice Dev>
kernel_cache_stats kernel_cache_info() {
  return backend::opencl::device_of<Dev::index>().programs->stats();
}

}  // namespace opencl
}  // namespace locus
