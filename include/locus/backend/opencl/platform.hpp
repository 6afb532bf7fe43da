// Discovery of OpenCL platforms and devices, the ICD files that name them, and the
// eligibility rule for Device<GPU, N>.
//
// Discovery runs once per process (the ICD loader does not see drivers installed later),
// but eligibility is a pure function of a device_info and the CPU opt-in, re-evaluated on
// every call, so the opt-in can be toggled and tested at run time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "error.hpp"

namespace locus::backend::opencl {

/// Everything locus knows about one OpenCL device. `index` is its position in
/// locus::devices() (platforms in ICD order, devices in platform order).
struct device_info {
  std::size_t index = 0;
  std::string name, vendor, type;  // type: "GPU", "CPU", "ACCELERATOR", "OTHER"
  std::string platform_name, platform_vendor, platform_version;
  std::string version;           // CL_DEVICE_VERSION, e.g. "OpenCL 3.0 CUDA"
  std::string opencl_c_version;  // CL_DEVICE_OPENCL_C_VERSION, e.g. "OpenCL C 1.2"
  std::string driver_version;
  std::string extensions;
  bool is_gpu = false, is_cpu = false;
  bool fp64 = false;  // cl_khr_fp64
  std::uint64_t global_memory = 0, max_allocation = 0, local_memory = 0;
  std::uint32_t compute_units = 0;
  std::size_t max_work_group_size = 0;
  cl_platform_id platform = nullptr;
  cl_device_id id = nullptr;

  bool is_pocl() const {
    return platform_name.find("Portable Computing Language") != std::string::npos ||
           platform_name.find("PoCL") != std::string::npos ||
           platform_name.find("pocl") != std::string::npos;
  }
};

/// Result of asking the ICD loader for platforms and devices.
struct discovery {
  cl_int platform_status = CL_SUCCESS;  // clGetPlatformIDs result (-1001: no platform)
  std::vector<std::string> platforms;   // "name (version)"
  std::vector<device_info> devices;
};

namespace detail {

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ' || s.back() == '\n')) s.pop_back();
  std::size_t b = 0;
  while (b < s.size() && s[b] == ' ') ++b;
  return s.substr(b);
}

inline std::string platform_string(cl_platform_id p, cl_platform_info what) {
  std::size_t n = 0;
  if (clGetPlatformInfo(p, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::string s(n, '\0');
  clGetPlatformInfo(p, what, n, s.data(), nullptr);
  return trim(s);
}

inline std::string device_string(cl_device_id d, cl_device_info what) {
  std::size_t n = 0;
  if (clGetDeviceInfo(d, what, 0, nullptr, &n) != CL_SUCCESS || n == 0) return {};
  std::string s(n, '\0');
  clGetDeviceInfo(d, what, n, s.data(), nullptr);
  return trim(s);
}

template <class V>
V device_value(cl_device_id d, cl_device_info what) {
  V v{};
  clGetDeviceInfo(d, what, sizeof(V), &v, nullptr);
  return v;
}

inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return false;
  const std::string s(v);
  return s == "1" || s == "true" || s == "TRUE" || s == "yes" || s == "on" || s == "ON";
}

}  // namespace detail

/// Reads one device's properties.
inline device_info describe_device(cl_platform_id p, cl_device_id d, std::size_t index) {
  device_info i;
  i.index = index;
  i.platform = p;
  i.id = d;
  i.name = detail::device_string(d, CL_DEVICE_NAME);
  i.vendor = detail::device_string(d, CL_DEVICE_VENDOR);
  i.version = detail::device_string(d, CL_DEVICE_VERSION);
  i.opencl_c_version = detail::device_string(d, CL_DEVICE_OPENCL_C_VERSION);
  i.driver_version = detail::device_string(d, CL_DRIVER_VERSION);
  i.extensions = detail::device_string(d, CL_DEVICE_EXTENSIONS);
  i.platform_name = detail::platform_string(p, CL_PLATFORM_NAME);
  i.platform_vendor = detail::platform_string(p, CL_PLATFORM_VENDOR);
  i.platform_version = detail::platform_string(p, CL_PLATFORM_VERSION);
  const auto type = detail::device_value<cl_device_type>(d, CL_DEVICE_TYPE);
  i.is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
  i.is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  i.type = i.is_gpu                              ? "GPU"
           : i.is_cpu                            ? "CPU"
           : (type & CL_DEVICE_TYPE_ACCELERATOR) ? "ACCELERATOR"
                                                 : "OTHER";
  // cl_khr_fp64 is the 1.2 spelling; a 1.2 device may also report a double FP config.
  i.fp64 = (" " + i.extensions + " ").find(" cl_khr_fp64 ") != std::string::npos ||
           detail::device_value<cl_device_fp_config>(d, CL_DEVICE_DOUBLE_FP_CONFIG) != 0;
  i.global_memory = detail::device_value<cl_ulong>(d, CL_DEVICE_GLOBAL_MEM_SIZE);
  i.max_allocation = detail::device_value<cl_ulong>(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  i.local_memory = detail::device_value<cl_ulong>(d, CL_DEVICE_LOCAL_MEM_SIZE);
  i.compute_units = detail::device_value<cl_uint>(d, CL_DEVICE_MAX_COMPUTE_UNITS);
  i.max_work_group_size = detail::device_value<std::size_t>(d, CL_DEVICE_MAX_WORK_GROUP_SIZE);
  return i;
}

/// Asks the ICD loader once; later calls return the same answer.
inline const discovery& discover() {
  static const discovery result = [] {
    discovery r;
    cl_uint np = 0;
    r.platform_status = clGetPlatformIDs(0, nullptr, &np);
    if (r.platform_status != CL_SUCCESS || np == 0) {
      if (r.platform_status == CL_SUCCESS) r.platform_status = platform_not_found_khr;
      return r;
    }
    std::vector<cl_platform_id> ps(np);
    clGetPlatformIDs(np, ps.data(), nullptr);
    for (cl_platform_id p : ps) {
      r.platforms.push_back(detail::platform_string(p, CL_PLATFORM_NAME) + " (" +
                            detail::platform_string(p, CL_PLATFORM_VERSION) + ")");
      cl_uint nd = 0;
      if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, nullptr, &nd) != CL_SUCCESS || nd == 0) continue;
      std::vector<cl_device_id> ds(nd);
      clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, nd, ds.data(), nullptr);
      for (cl_device_id d : ds) r.devices.push_back(describe_device(p, d, r.devices.size()));
    }
    return r;
  }();
  return result;
}

/// The ICD files the loader reads: OCL_ICD_VENDORS (a directory or one file) if set,
/// else /etc/OpenCL/vendors/*.icd. Each entry is "path -> library".
inline std::vector<std::string> icd_files() {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  auto add = [&](const fs::path& p) {
    std::string lib;
    if (FILE* f = std::fopen(p.c_str(), "r")) {
      char line[512] = {};
      if (std::fgets(line, sizeof line, f)) lib = detail::trim(line);
      std::fclose(f);
    }
    out.push_back(p.string() + " -> " + (lib.empty() ? "(unreadable)" : lib));
  };
  auto scan = [&](const fs::path& dir) {
    std::error_code ec;
    if (fs::is_regular_file(dir, ec)) {
      add(dir);
      return;
    }
    std::vector<fs::path> files;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      if (it->path().extension() == ".icd") files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add(f);
  };
  if (const char* v = std::getenv("OCL_ICD_VENDORS"); v && *v) {
    scan(v);
  } else {
    scan("/etc/OpenCL/vendors");
  }
  return out;
}

/// The eligibility rule, as a pure function: GPU-type devices always; CPU-type devices
/// only with the explicit opt-in; accelerators and others never (they are not what a
/// user means by "the GPU", and locus does not guess).
inline bool is_eligible(const device_info& d, bool allow_cpu) {
  return d.is_gpu || (d.is_cpu && allow_cpu);
}

/// One line for messages and locus::devices(): what the device is and how locus sees it.
inline std::string describe(const device_info& d, bool allow_cpu) {
  std::string s = "[" + std::to_string(d.index) + "] " + d.name + " (" + d.type + ", " +
                  d.platform_name + ", " + d.version + ", driver " + d.driver_version + ", " +
                  std::to_string(d.global_memory >> 20) + " MiB, " +
                  std::to_string(d.compute_units) + " compute units)";
  if (d.is_cpu) {
    const std::string what = std::string("CPU device") + (d.is_pocl() ? " (PoCL)" : "");
    s += allow_cpu ? ": " + what + ", accepted as GPU by explicit opt-in"
                   : ": " + what +
                         ", not accepted as GPU without opt-in (LOCUS_OPENCL_ALLOW_CPU=1 or "
                         "locus::opencl::allow_cpu_devices(true))";
  } else if (!d.is_gpu) {
    s += ": not a GPU, never used by locus";
  }
  return s;
}

/// The message of no_platform_error: what to install, and which ICD files exist.
inline std::string no_platform_message(cl_int status, const std::vector<std::string>& icds) {
  std::string m =
      "locus: no OpenCL platform found (clGetPlatformIDs returned " + error_name(status) +
      "), so Device<GPU> cannot be opened and locus will not fall back to the CPU.\n"
      "  Install a vendor OpenCL driver (e.g. NVIDIA's driver, which ships libnvidia-opencl "
      "and /etc/OpenCL/vendors/nvidia.icd), or for testing on a CPU: apt-get install "
      "pocl-opencl-icd and set LOCUS_OPENCL_ALLOW_CPU=1.\n  ICD files found: ";
  if (icds.empty()) {
    m += "none (looked in " +
         std::string(std::getenv("OCL_ICD_VENDORS") ? std::getenv("OCL_ICD_VENDORS")
                                                    : "/etc/OpenCL/vendors") +
         ")";
  } else {
    for (const auto& f : icds) m += "\n    " + f;
  }
  return m;
}

}  // namespace locus::backend::opencl
