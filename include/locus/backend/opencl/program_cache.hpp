// Compiled OpenCL programs and kernel objects, cached per device in memory and
// (opt-in) on disk.
//
// In memory: one cl_program per (source, options) and one cl_kernel per kernel name, so a
// launch costs a hash lookup, never a clCreateKernel (users of OpenCL libraries complain
// most about first-run and per-call compilation). On disk: program binaries keyed by a
// hash of source, options, device name, driver version and platform name/version, so a
// driver update or another device never loads a stale binary. Entries carry a magic, a
// length and a checksum: a corrupt or truncated file is detected before the driver sees
// it, and the program is rebuilt from source and the entry rewritten. Writes go to a
// temporary file that is renamed into place, so a concurrent reader never sees half a
// file.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <list>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include "error.hpp"
#include "platform.hpp"
#include "settings.hpp"

namespace locus::backend::opencl {

/// 64-bit FNV-1a, continued from `h` (so several strings can be chained).
inline std::uint64_t fnv1a(const void* data, std::size_t n,
                           std::uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
inline std::uint64_t fnv1a(const std::string& s, std::uint64_t h = 0xcbf29ce484222325ull) {
  // The length goes in too, so ("ab","c") and ("a","bc") hash differently.
  const std::uint64_t n = s.size();
  return fnv1a(s.data(), s.size(), fnv1a(&n, sizeof n, h));
}

/// One OpenCL program's source. Make these function-local statics: the cache recognises
/// a source by its address first, and hashes its text only once.
struct program_source {
  std::string name;     // for messages: "locus_reduce<float>", "expression a*b+c"...
  std::string text;     // OpenCL C 1.2
  std::string options;  // clBuildProgram options
  std::uint64_t hash;

  program_source(std::string n, std::string t, std::string o = {})
      : name(std::move(n)),
        text(std::move(t)),
        options(std::move(o)),
        hash(fnv1a(options, fnv1a(text))) {}
};

/// Counters of one device's program cache (tests and benchmarks read them).
struct kernel_cache_stats {
  std::uint64_t memory_hits = 0;    // program found in memory
  std::uint64_t disk_hits = 0;      // program loaded from a disk binary
  std::uint64_t source_builds = 0;  // program compiled from source
  std::uint64_t disk_writes = 0;    // binaries written to disk
  std::uint64_t disk_rejected = 0;  // disk entries found corrupt, truncated or unloadable
};

/// A kernel object with the work-group size the device allows for it.
struct kernel_handle {
  cl_kernel kernel = nullptr;
  std::size_t max_work_group = 1;
};

class program_cache {
 public:
  program_cache(cl_context ctx, const device_info& dev) : ctx_(ctx), dev_(dev) {}
  ~program_cache() { clear(); }
  program_cache(const program_cache&) = delete;
  program_cache& operator=(const program_cache&) = delete;

  /// The kernel `kernel_name` of `src`, building the program on first use.
  /// Not thread-safe: the caller holds the device mutex (clSetKernelArg needs it anyway).
  kernel_handle kernel(const program_source& src, const char* kernel_name) {
    entry& e = program_entry(src);
    for (auto& k : e.kernels) {
      if (k.first == kernel_name) return k.second;
    }
    cl_int err = CL_SUCCESS;
    kernel_handle h;
    h.kernel = clCreateKernel(e.program, kernel_name, &err);
    check(err, "clCreateKernel", std::string(kernel_name) + " in " + src.name);
    std::size_t wg = 1;
    clGetKernelWorkGroupInfo(h.kernel, dev_.id, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, nullptr);
    h.max_work_group = wg ? wg : 1;
    e.kernels.emplace_back(kernel_name, h);
    return h;
  }

  /// The built program of `src` (built now if needed). Same locking rule as kernel().
  cl_program program(const program_source& src) { return program_entry(src).program; }

  /// Drops every program and kernel object of this device (the disk cache stays).
  void clear() {
    for (auto& [h, bucket] : programs_) {
      for (auto& e : bucket) {
        for (auto& k : e.kernels) clReleaseKernel(k.second.kernel);
        clReleaseProgram(e.program);
      }
    }
    programs_.clear();
  }

  kernel_cache_stats stats() const {
    kernel_cache_stats s;
    s.memory_hits = memory_hits_.load();
    s.disk_hits = disk_hits_.load();
    s.source_builds = source_builds_.load();
    s.disk_writes = disk_writes_.load();
    s.disk_rejected = disk_rejected_.load();
    return s;
  }

  /// Path of the disk entry of `src` on this device ("" when the disk cache is off).
  std::string disk_path(const program_source& src) const {
    const std::string dir = kernel_cache_dir();
    if (dir.empty()) return {};
    // Two independent 64-bit hashes: 128 bits make an accidental collision negligible.
    const std::string key_parts[] = {src.text,           src.options,
                                     dev_.name,          dev_.driver_version,
                                     dev_.platform_name, dev_.platform_version};
    std::uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
    for (const auto& p : key_parts) {
      h1 = fnv1a(p, h1);
      h2 = fnv1a(p, h2 * 31 + 7);
    }
    char name[64];
    std::snprintf(name, sizeof name, "%016llx%016llx.clbin", static_cast<unsigned long long>(h1),
                  static_cast<unsigned long long>(h2));
    return (std::filesystem::path(dir) / name).string();
  }

 private:
  struct entry {
    const std::string* text_address;  // fast path: the same static program_source
    std::string text, options;
    cl_program program;
    std::list<std::pair<std::string, kernel_handle>> kernels;
  };

  entry& program_entry(const program_source& src) {
    auto& bucket = programs_[src.hash];
    for (auto& e : bucket) {
      if (e.text_address == &src.text || (e.text == src.text && e.options == src.options)) {
        ++memory_hits_;
        return e;
      }
    }
    cl_program p = load_or_build(src);
    bucket.push_back(entry{&src.text, src.text, src.options, p, {}});
    return bucket.back();
  }

  static constexpr char magic_[8] = {'L', 'O', 'C', 'U', 'S', 'C', 'L', 'B'};
  static constexpr std::uint32_t format_version_ = 1;

  // A binary from disk, or nullptr when there is none or it is unusable (counted).
  cl_program try_load(const program_source& src, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return nullptr;
    std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t header = sizeof magic_ + sizeof(std::uint32_t) + 2 * sizeof(std::uint64_t);
    auto reject = [&]() -> cl_program {
      ++disk_rejected_;
      return nullptr;
    };
    if (file.size() < header || std::memcmp(file.data(), magic_, sizeof magic_) != 0)
      return reject();
    std::uint32_t version = 0;
    std::uint64_t size = 0, sum = 0;
    std::memcpy(&version, file.data() + 8, sizeof version);
    std::memcpy(&size, file.data() + 12, sizeof size);
    std::memcpy(&sum, file.data() + 20, sizeof sum);
    if (version != format_version_ || size != file.size() - header || size == 0 ||
        fnv1a(file.data() + header, size) != sum) {
      return reject();
    }
    const auto* bin = reinterpret_cast<const unsigned char*>(file.data() + header);
    const std::size_t bin_size = size;
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program p = clCreateProgramWithBinary(ctx_, 1, &dev_.id, &bin_size, &bin, &status, &err);
    if (err != CL_SUCCESS || status != CL_SUCCESS || !p) {
      if (p) clReleaseProgram(p);
      return reject();
    }
    if (clBuildProgram(p, 1, &dev_.id, src.options.c_str(), nullptr, nullptr) != CL_SUCCESS) {
      clReleaseProgram(p);
      return reject();
    }
    return p;
  }

  // Best effort: a cache that cannot be written costs a rebuild next time, nothing more.
  void try_store(cl_program p, const std::string& path) {
    std::size_t size = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, nullptr) != CL_SUCCESS ||
        size == 0) {
      return;
    }
    std::vector<unsigned char> bin(size);
    unsigned char* ptr = bin.data();
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof ptr, &ptr, nullptr) != CL_SUCCESS) return;
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    static std::atomic<unsigned> counter{0};
    const std::string tmp =
        path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return;
      const std::uint64_t n = size, sum = fnv1a(bin.data(), size);
      out.write(magic_, sizeof magic_);
      out.write(reinterpret_cast<const char*>(&format_version_), sizeof format_version_);
      out.write(reinterpret_cast<const char*>(&n), sizeof n);
      out.write(reinterpret_cast<const char*>(&sum), sizeof sum);
      out.write(reinterpret_cast<const char*>(bin.data()), static_cast<std::streamsize>(size));
      if (!out.flush()) {
        out.close();
        fs::remove(tmp, ec);
        return;
      }
    }
    fs::rename(tmp, path, ec);
    if (ec) {
      fs::remove(tmp, ec);
      return;
    }
    ++disk_writes_;
  }

  cl_program load_or_build(const program_source& src) {
    const std::string path = disk_path(src);
    if (!path.empty()) {
      if (cl_program p = try_load(src, path)) {
        ++disk_hits_;
        return p;
      }
    }
    const char* text = src.text.c_str();
    const std::size_t len = src.text.size();
    cl_int err = CL_SUCCESS;
    cl_program p = clCreateProgramWithSource(ctx_, 1, &text, &len, &err);
    check(err, "clCreateProgramWithSource", src.name);
    err = clBuildProgram(p, 1, &dev_.id, src.options.c_str(), nullptr, nullptr);
    if (err != CL_SUCCESS) {
      std::size_t n = 0;
      clGetProgramBuildInfo(p, dev_.id, CL_PROGRAM_BUILD_LOG, 0, nullptr, &n);
      std::string log(n, '\0');
      if (n) clGetProgramBuildInfo(p, dev_.id, CL_PROGRAM_BUILD_LOG, n, log.data(), nullptr);
      clReleaseProgram(p);
      throw kernel_build_error("locus: OpenCL kernel build failed (" + error_name(err) +
                               ")\n  kernel: " + src.name + "\n  device: " + dev_.name + " [" +
                               std::to_string(dev_.index) + "] on " + dev_.platform_name + " (" +
                               dev_.platform_version + ")\n  driver: " + dev_.driver_version +
                               "\n  options: \"" + src.options + "\"\n  build log:\n" +
                               detail::trim(log));
    }
    ++source_builds_;
    if (!path.empty()) try_store(p, path);
    return p;
  }

  cl_context ctx_;
  const device_info& dev_;
  std::unordered_map<std::uint64_t, std::list<entry>> programs_;
  std::atomic<std::uint64_t> memory_hits_{0}, disk_hits_{0}, source_builds_{0}, disk_writes_{0},
      disk_rejected_{0};
};

}  // namespace locus::backend::opencl
