// locus-doctor: what OpenCL sees on this machine, and whether locus can use it.
//
// Lists the ICD files, platforms and devices (type, versions, memory, extensions), then
// builds every locus kernel once on each device eligible as a Device<GPU, N> and reports
// the build time of each program and any failure with its log. Exit code 0 iff
// Device<GPU> (Device<GPU, 0>) is usable: it resolves to a device and every kernel builds
// there. CPU devices count only with LOCUS_OPENCL_ALLOW_CPU=1, exactly as in programs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include <locus/backend/opencl/catalog.hpp>
#include <locus/locus.hpp>

namespace ocl = locus::backend::opencl;

int main() {
  std::cout << "locus-doctor\n\nICD files ("
            << (std::getenv("OCL_ICD_VENDORS") ? "OCL_ICD_VENDORS" : "/etc/OpenCL/vendors")
            << "):\n";
  const auto icds = locus::opencl::icd_files();
  if (icds.empty()) std::cout << "  none\n";
  for (const auto& f : icds) std::cout << "  " << f << "\n";

  const auto& disc = ocl::discover();
  std::cout << "\nPlatforms:\n";
  if (disc.platforms.empty()) {
    std::cout << "  none (clGetPlatformIDs: " << ocl::error_name(disc.platform_status) << ")\n";
  }
  for (const auto& p : disc.platforms) std::cout << "  " << p << "\n";

  const bool allow = locus::opencl::cpu_devices_allowed();
  std::cout << "\nDevices (CPU devices accepted as GPU: "
            << (allow ? "yes, by opt-in" : "no; set LOCUS_OPENCL_ALLOW_CPU=1 to accept them")
            << "):\n";
  for (const auto& d : locus::devices()) {
    std::cout << "  " << d.description << "\n"
              << "      vendor: " << d.vendor << "\n"
              << "      device version: " << d.version << "; " << d.opencl_c_version << "\n"
              << "      driver: " << d.driver_version << "\n"
              << "      global memory: " << (d.global_memory >> 20)
              << " MiB, max buffer: " << (d.max_allocation >> 20)
              << " MiB, local memory: " << (d.local_memory >> 10)
              << " KiB, compute units: " << d.compute_units
              << ", max work-group: " << d.max_work_group_size << "\n"
              << "      fp64: " << (d.fp64 ? "yes" : "no (double tensors refused)") << "\n"
              << "      extensions: " << d.extensions << "\n"
              << "      eligible as Device<GPU, N>: " << (d.eligible ? "yes" : "no") << "\n";
  }

  std::size_t gpu0 = static_cast<std::size_t>(-1);
  try {
    gpu0 = locus::opencl::physical_device(0);
    std::cout << "\nDevice<GPU> (Device<GPU, 0>) -> device [" << gpu0 << "]\n";
  } catch (const std::exception& e) {
    std::cout << "\nDevice<GPU> is NOT usable:\n" << e.what() << "\n";
  }

  bool gpu0_ok = gpu0 != static_cast<std::size_t>(-1);
  for (const auto& d : locus::devices()) {
    if (!d.eligible) continue;
    std::cout << "\nBuilding every locus kernel on [" << d.index << "] " << d.name << ":\n";
    bool all = true;
    double total = 0;
    try {
      auto& dc = ocl::runtime::instance().physical(d.index);
      {
        // Opening the device built a program already (see runtime.hpp): start from an
        // empty memory cache so that every program below is really built (or loaded from
        // the disk cache) and timed.
        std::lock_guard lk(dc.mutex);
        dc.programs->clear();
      }
      const auto st0 = dc.programs->stats();
      for (auto& entry : ocl::kernel_catalog(d)) {
        const auto t0 = std::chrono::steady_clock::now();
        try {
          std::lock_guard lk(dc.mutex);
          // Every kernel the built program contains, whether or not the catalog lists it.
          std::vector<std::string> names = entry.kernels;
          for (auto& k : ocl::program_kernel_names(dc.programs->program(entry.source))) {
            if (std::find(names.begin(), names.end(), k) == names.end()) names.push_back(k);
          }
          for (const auto& k : names) (void)dc.programs->kernel(entry.source, k.c_str());
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          total += ms;
          std::printf("  %-48s %8.1f ms  (%zu kernels)\n", entry.source.name.c_str(), ms,
                      names.size());
        } catch (const std::exception& e) {
          all = false;
          std::printf("  %-48s FAILED\n%s\n", entry.source.name.c_str(), e.what());
        }
      }
      const auto st = dc.programs->stats();
      std::printf("  total %.1f ms (built from source: %llu, from disk cache: %llu)\n", total,
                  static_cast<unsigned long long>(st.source_builds - st0.source_builds),
                  static_cast<unsigned long long>(st.disk_hits - st0.disk_hits));
    } catch (const std::exception& e) {
      all = false;
      std::cout << "  cannot open the device: " << e.what() << "\n";
    }
    if (d.index == gpu0 && !all) gpu0_ok = false;
  }
  std::cout << "\n"
            << (gpu0_ok ? "OK: Device<GPU> is usable." : "FAIL: no usable Device<GPU>.") << "\n";
  return gpu0_ok ? 0 : 1;
}
