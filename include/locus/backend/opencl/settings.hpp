// Process-wide settings of the OpenCL backend: the CPU-device opt-in, the logical to
// physical device mapping and the on-disk kernel cache directory. Each has an environment
// variable and an API call; the API call wins once made.
#pragma once

#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "platform.hpp"

namespace locus::backend::opencl {

struct settings {
  std::mutex mutex;
  std::optional<bool> allow_cpu;                    // API override of LOCUS_OPENCL_ALLOW_CPU
  std::optional<std::vector<std::size_t>> mapping;  // API override of LOCUS_GPU_DEVICES
  std::optional<std::string> cache_dir;             // API override of LOCUS_KERNEL_CACHE_DIR

  static settings& get() {
    // Leaked on purpose: kernels and buffers may be released during static destruction.
    static settings* s = new settings;
    return *s;
  }
};

/// LOCUS_OPENCL_ALLOW_CPU=1 or locus::opencl::allow_cpu_devices(true).
inline bool cpu_devices_allowed() {
  auto& s = settings::get();
  std::lock_guard lk(s.mutex);
  return s.allow_cpu ? *s.allow_cpu : detail::env_flag("LOCUS_OPENCL_ALLOW_CPU");
}

/// Parses "1,0" into {1, 0}; throws argument_error naming `source` on anything else.
inline std::vector<std::size_t> parse_device_list(const std::string& text, const char* source) {
  std::vector<std::size_t> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i >= text.size()) break;
    std::size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j == i || (j < text.size() && text[j] != ',' && text[j] != ' ')) {
      throw argument_error(std::string("locus: ") + source + "=\"" + text +
                           "\" is not a comma-separated list of device indices (e.g. \"1,0\")");
    }
    out.push_back(static_cast<std::size_t>(std::stoull(text.substr(i, j - i))));
    i = j;
  }
  return out;
}

/// The mapping in force and where it came from; empty when devices are taken in order.
inline std::vector<std::size_t> device_mapping(std::string* source = nullptr) {
  auto& s = settings::get();
  {
    std::lock_guard lk(s.mutex);
    if (s.mapping && !s.mapping->empty()) {
      if (source) *source = "locus::opencl::select_devices";
      return *s.mapping;
    }
  }
  if (const char* v = std::getenv("LOCUS_GPU_DEVICES"); v && *v) {
    if (source) *source = "LOCUS_GPU_DEVICES";
    return parse_device_list(v, "LOCUS_GPU_DEVICES");
  }
  return {};
}

/// The on-disk kernel cache directory; empty means the disk cache is off.
inline std::string kernel_cache_dir() {
  auto& s = settings::get();
  std::lock_guard lk(s.mutex);
  if (s.cache_dir) return *s.cache_dir;
  const char* v = std::getenv("LOCUS_KERNEL_CACHE_DIR");
  return v ? std::string(v) : std::string();
}

}  // namespace locus::backend::opencl
