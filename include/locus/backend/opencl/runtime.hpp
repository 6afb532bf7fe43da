// Per-device OpenCL state (context, in-order queue, program cache, memory pool) and the
// mapping from Device<GPU, N> to a physical device.
//
// State is created lazily, on the first use of a device, and exactly once even when
// several threads race to it (a mutex guards creation). The binding of a logical index N
// to a physical device is fixed at its first use: buffers already allocated belong to
// that device's context and could not follow a later remapping.
//
// The runtime is deliberately never destroyed. Tensors in static storage may outlive any
// static runtime object, and some drivers unload their ICD before static destructors
// run; leaving the process to reclaim device memory avoids both crashes.
//
// Work still queued at exit is finished before the driver's own static state dies.
// Launches return without waiting, so a program may reach exit() (return from main) with
// kernels still queued, and PoCL compiles a kernel's work-group function only when the
// kernel runs, on its device's worker thread, with the LLVM/Clang inside the process.
// exit() then destroys LLVM's and Clang's function-local statics (the real file system of
// llvm::vfs, the pass registry...) while that thread compiles: a SEGV in
// llvm::vfs::FileSystem::exists or TargetPassConfig::addPass under
// pocl_check_kernel_disk_cache, on a thread started by libpocl-devices-pthread, after the
// program itself has finished (PoCL 3.1 / LLVM 15; PoCL's own exit-time clFinish of every
// queue is disabled in its source). In the ASan build, the test
// OpenCLRuntime.EveryKernelLaunchIsCounted run alone (it never waits) died after passing
// in 2 of 20 runs with a cold PoCL kernel cache and 30 of 30 with POCL_KERNEL_CACHE=0.
// Hence every device_context (1) warms up: builds and runs one small kernel and waits for
// it, so that the compiler's lazily created statics exist before (2) it registers an
// atexit handler that clFinish()es every locus queue. exit() runs handlers and static
// destructors in the reverse order of their registration, so the handler runs, and the
// queues are empty, before any static destructor registered earlier, the compiler's
// included. The handler takes no lock and touches only a never-freed list, and it does
// nothing in a fork()ed child (the parent's queues have no worker threads there).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <unistd.h>

#include "error.hpp"
#include "kernels/fill.hpp"
#include "memory_pool.hpp"
#include "platform.hpp"
#include "program_cache.hpp"
#include "settings.hpp"

namespace locus::backend::opencl {

namespace detail {

// The queues finished at exit: a list that is only ever prepended to, never freed.
struct exit_queue {
  cl_command_queue queue;
  pid_t owner;  // the process that created the queue
  exit_queue* next;
};
inline constinit std::atomic<exit_queue*> exit_queues{nullptr};

inline void finish_queues_at_exit() noexcept {
  const pid_t self = ::getpid();
  for (exit_queue* q = exit_queues.load(std::memory_order_acquire); q; q = q->next) {
    if (q->owner == self) clFinish(q->queue);
  }
}

/// Makes exit() wait for `queue` (see the header comment). Call it after the device has
/// built and run a kernel: the atexit registration must come after the compiler's statics.
inline void finish_at_exit(cl_command_queue queue) {
  auto* node = new exit_queue{queue, ::getpid(), exit_queues.load(std::memory_order_relaxed)};
  while (!exit_queues.compare_exchange_weak(node->next, node, std::memory_order_release,
                                            std::memory_order_relaxed)) {
  }
  // Once per device: each registration is later than the compiler statics created by that
  // device's warm-up; finishing an already finished queue costs nothing.
  std::atexit(&finish_queues_at_exit);
}

}  // namespace detail

/// Everything locus holds for one physical device.
struct device_context {
  device_info info;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  // Serialises clSetKernelArg + clEnqueueNDRangeKernel (cl_kernel objects are shared and
  // clSetKernelArg is not thread-safe) and guards the program cache.
  std::mutex mutex;
  std::unique_ptr<program_cache> programs;
  std::unique_ptr<memory_pool> pool;
  unsigned unflushed = 0;  // guarded by mutex
  // Raw host<->device traffic seen by the backend, whoever asked for it: tests use these
  // to prove that GPU work makes no hidden round trips.
  std::atomic<std::uint64_t> host_writes{0}, host_reads{0};

  /// The queue of prefetched uploads (data pipelines), made on first use: a batch crosses to
  /// the device on it while `queue` computes; the main queue waits for it by event.
  cl_command_queue transfer_queue() {
    std::lock_guard lk(mutex);
    if (!transfer_) {
      cl_int err = CL_SUCCESS;
      transfer_ = clCreateCommandQueue(context, info.id, 0, &err);
      check(err, "clCreateCommandQueue (transfer queue)", info.name);
      detail::finish_at_exit(transfer_);
    }
    return transfer_;
  }

  explicit device_context(const device_info& d) : info(d) {
    cl_int err = CL_SUCCESS;
    const cl_context_properties props[] = {
        CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(info.platform), 0};
    context = clCreateContext(props, 1, &info.id, nullptr, nullptr, &err);
    check(err, "clCreateContext", info.name);
    queue = clCreateCommandQueue(context, info.id, 0, &err);
    if (err != CL_SUCCESS) clReleaseContext(context);
    check(err, "clCreateCommandQueue", info.name);
    programs = std::make_unique<program_cache>(context, info);
    pool = std::make_unique<memory_pool>(context, info);
    warm_up();
    detail::finish_at_exit(queue);
  }

 private:
  cl_command_queue transfer_ = nullptr;  // guarded by mutex

  // Builds and runs locus_fill<float> once (with the work-group size the backend uses for
  // it, so the driver's compiled kernel is reused) and waits; see the header comment. Not
  // counted as a launch of any Device<GPU, N>: it is part of opening the device. A device
  // that fails here is not refused now: its first real launch reports the error.
  void warm_up() noexcept {
    try {
      const kernel_handle h = programs->kernel(kernels::fill_program<float>(), "locus_fill");
      cl_int err = CL_SUCCESS;
      cl_mem mem = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof(cl_float), nullptr, &err);
      if (err != CL_SUCCESS) return;
      const cl_ulong n = 1;
      const cl_float value = 0.f;
      std::size_t local = 1;
      while (local * 2 <= 256 && local * 2 <= h.max_work_group) local *= 2;
      err = clSetKernelArg(h.kernel, 0, sizeof mem, &mem);
      if (err == CL_SUCCESS) err = clSetKernelArg(h.kernel, 1, sizeof n, &n);
      if (err == CL_SUCCESS) err = clSetKernelArg(h.kernel, 2, sizeof value, &value);
      if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(queue, h.kernel, 1, nullptr, &local, &local, 0, nullptr,
                                     nullptr);
      clFinish(queue);
      clReleaseMemObject(mem);
    } catch (const std::exception&) {
    }
  }
};

/// The list of devices found, one per line, with how locus sees each.
inline std::string device_listing(bool allow_cpu) {
  const discovery& d = discover();
  std::string s;
  if (d.devices.empty()) return "    (no OpenCL devices)";
  for (const auto& dev : d.devices) s += "\n    " + describe(dev, allow_cpu);
  return s;
}

/// Which physical device (index into locus::devices()) serves Device<GPU, logical> under
/// the current settings; throws the typed error that explains why none does. Pure with
/// respect to bindings: it binds nothing, so tests can probe any configuration.
inline std::size_t resolve_device(std::size_t logical) {
  const discovery& d = discover();
  if (d.platforms.empty())
    throw no_platform_error(no_platform_message(d.platform_status, icd_files()));
  const bool allow = cpu_devices_allowed();
  const std::string name = "Device<GPU, " + std::to_string(logical) + ">";
  std::string source;
  const auto mapping = device_mapping(&source);
  auto check_eligible = [&](std::size_t g) {
    const device_info& dev = d.devices[g];
    if (is_eligible(dev, allow)) return g;
    if (dev.is_cpu) {
      throw not_a_gpu_error("locus: " + name + " maps to OpenCL device [" + std::to_string(g) +
                            "] " + dev.name + ", which is a CPU device" +
                            (dev.is_pocl() ? " (PoCL)" : "") +
                            "; locus accepts a CPU device as a GPU only by explicit opt-in: set "
                            "LOCUS_OPENCL_ALLOW_CPU=1 or call "
                            "locus::opencl::allow_cpu_devices(true). Devices found:" +
                            device_listing(allow));
    }
    throw not_a_gpu_error("locus: " + name + " maps to OpenCL device [" + std::to_string(g) + "] " +
                          dev.name + ", which is a " + dev.type +
                          " device, not a GPU. Devices found:" + device_listing(allow));
  };
  if (!mapping.empty()) {
    if (logical >= mapping.size()) {
      throw no_device_error("locus: " + name + " is not mapped: " + source + " maps only " +
                            std::to_string(mapping.size()) +
                            " logical device(s). Devices found:" + device_listing(allow));
    }
    const std::size_t g = mapping[logical];
    if (g >= d.devices.size()) {
      throw no_device_error("locus: " + source + " maps " + name + " to OpenCL device [" +
                            std::to_string(g) + "], but only " + std::to_string(d.devices.size()) +
                            " device(s) exist. Devices found:" + device_listing(allow));
    }
    return check_eligible(g);
  }
  std::vector<std::size_t> eligible;
  std::size_t cpus = 0;
  for (const auto& dev : d.devices) {
    if (is_eligible(dev, allow)) eligible.push_back(dev.index);
    if (dev.is_cpu && !dev.is_gpu) ++cpus;
  }
  if (logical < eligible.size()) return eligible[logical];
  if (!allow && cpus > 0 && logical < eligible.size() + cpus) {
    throw not_a_gpu_error(
        "locus: " + name + " requested, but only " + std::to_string(eligible.size()) +
        " GPU device(s) were found; the other OpenCL device(s) are CPU devices, which locus "
        "accepts as GPUs only by explicit opt-in: set LOCUS_OPENCL_ALLOW_CPU=1 or call "
        "locus::opencl::allow_cpu_devices(true). Devices found:" +
        device_listing(allow));
  }
  throw no_device_error(
      "locus: " + name + " requested, but only " + std::to_string(eligible.size()) +
      " eligible OpenCL device(s) were found (platforms: " + std::to_string(d.platforms.size()) +
      "). Devices found:" + device_listing(allow));
}

class runtime {
 public:
  static runtime& instance() {
    static runtime* r = new runtime;  // never destroyed: see the header comment
    return *r;
  }

  /// The context of physical device `g`, created on first use.
  device_context& physical(std::size_t g) {
    std::lock_guard lk(mutex_);
    return physical_locked(g);
  }

  /// Binds Device<GPU, logical> (first use) and returns its device state.
  device_context& bind(std::size_t logical) {
    std::lock_guard lk(mutex_);
    if (auto it = bound_.find(logical); it != bound_.end()) return *it->second;
    const std::size_t g = resolve_device(logical);
    device_context& dc = physical_locked(g);
    bound_[logical] = &dc;
    return dc;
  }

  /// The physical index Device<GPU, logical> is bound to, or resolve_device() if unbound.
  std::size_t physical_index(std::size_t logical) {
    {
      std::lock_guard lk(mutex_);
      if (auto it = bound_.find(logical); it != bound_.end()) return it->second->info.index;
    }
    return resolve_device(logical);
  }

  /// Throws argument_error if `mapping` would move an already bound logical device.
  void check_remap(const std::vector<std::size_t>& mapping) {
    std::lock_guard lk(mutex_);
    for (const auto& [logical, dc] : bound_) {
      const bool moved = logical < mapping.size() && mapping[logical] != dc->info.index;
      if (moved) {
        throw argument_error("locus::opencl::select_devices: Device<GPU, " +
                             std::to_string(logical) + "> is already in use on OpenCL device [" +
                             std::to_string(dc->info.index) + "] " + dc->info.name +
                             "; choose the mapping before the first use of a device");
      }
    }
  }

  /// Every device state created so far (for cache clearing and statistics).
  std::vector<device_context*> contexts() {
    std::lock_guard lk(mutex_);
    std::vector<device_context*> out;
    for (auto& [g, dc] : physical_) {
      if (dc) out.push_back(dc.get());
    }
    return out;
  }

 private:
  device_context& physical_locked(std::size_t g) {
    auto& slot = physical_[g];
    if (!slot) {
      const discovery& d = discover();
      if (g >= d.devices.size()) {
        throw no_device_error(
            "locus: OpenCL device [" + std::to_string(g) +
            "] does not exist. Devices found:" + device_listing(cpu_devices_allowed()));
      }
      slot = std::make_unique<device_context>(d.devices[g]);
    }
    return *slot;
  }

  std::mutex mutex_;
  std::map<std::size_t, std::unique_ptr<device_context>> physical_;
  std::map<std::size_t, device_context*> bound_;
};

/// The state of Device<GPU, N>; binds it on first use. A failed first use throws and is
/// retried on the next call (so fixing the settings and retrying works).
template <std::size_t N>
device_context& device_of() {
  static device_context* const dc = &runtime::instance().bind(N);
  return *dc;
}

}  // namespace locus::backend::opencl
