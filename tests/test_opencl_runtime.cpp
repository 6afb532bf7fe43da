// The OpenCL runtime: discovery, the CPU-device opt-in, logical -> physical mapping, the
// typed errors and their messages, launch counting, and the absence of hidden transfers.
// Runs with LOCUS_OPENCL_ALLOW_CPU=1 and POCL_DEVICES="pthread pthread" (two devices).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;
namespace ocl = locus::backend::opencl;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Restores the API settings a test changes, whatever happens in it.
struct settings_guard {
  ~settings_guard() {
    opencl::allow_cpu_devices(true);
    opencl::select_devices({});
    unsetenv("LOCUS_GPU_DEVICES");
  }
};

TEST(OpenCLRuntime, ListsDevicesWithTheirCapabilities) {
  const auto ds = devices();
  ASSERT_GE(ds.size(), 2u) << "the tests expect POCL_DEVICES=\"pthread pthread\"";
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const auto& d = ds[i];
    EXPECT_EQ(d.index, i);
    EXPECT_FALSE(d.name.empty());
    EXPECT_FALSE(d.vendor.empty());
    EXPECT_TRUE(d.type == "GPU" || d.type == "CPU" || d.type == "ACCELERATOR" || d.type == "OTHER");
    EXPECT_GT(d.global_memory, 0u);
    EXPECT_GT(d.compute_units, 0u);
    EXPECT_TRUE(contains(d.version, "OpenCL")) << d.version;
    EXPECT_TRUE(contains(d.opencl_c_version, "OpenCL C")) << d.opencl_c_version;
    EXPECT_FALSE(d.driver_version.empty());
    EXPECT_FALSE(d.extensions.empty());
    EXPECT_TRUE(contains(d.description, d.name));
    if (d.is_cpu && !d.is_gpu) {
      EXPECT_TRUE(d.cpu_accepted_by_opt_in);
      EXPECT_TRUE(contains(d.description, "accepted as GPU by explicit opt-in")) << d.description;
      if (d.is_pocl()) {
        EXPECT_TRUE(contains(d.description, "CPU device (PoCL)")) << d.description;
      }
    }
  }
}

TEST(OpenCLRuntime, EligibilityRuleIsAPureFunction) {
  ocl::device_info gpu, cpu, acc;
  gpu.is_gpu = true;
  cpu.is_cpu = true;
  EXPECT_TRUE(ocl::is_eligible(gpu, false));
  EXPECT_TRUE(ocl::is_eligible(gpu, true));
  EXPECT_FALSE(ocl::is_eligible(cpu, false));
  EXPECT_TRUE(ocl::is_eligible(cpu, true));
  EXPECT_FALSE(ocl::is_eligible(acc, true));
  cpu.platform_name = "Portable Computing Language";
  cpu.name = "pthread";
  cpu.type = "CPU";
  EXPECT_TRUE(
      contains(ocl::describe(cpu, true), "CPU device (PoCL), accepted as GPU by explicit opt-in"));
  EXPECT_TRUE(contains(ocl::describe(cpu, false), "LOCUS_OPENCL_ALLOW_CPU=1"));
}

TEST(OpenCLRuntime, CpuDeviceIsRefusedWithoutOptIn) {
  settings_guard guard;
  opencl::allow_cpu_devices(false);
  EXPECT_FALSE(opencl::cpu_devices_allowed());
  try {
    (void)opencl::physical_device(1);
    FAIL() << "a CPU device was accepted without the opt-in";
  } catch (const not_a_gpu_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "LOCUS_OPENCL_ALLOW_CPU=1")) << m;
    EXPECT_TRUE(contains(m, "locus::opencl::allow_cpu_devices(true)")) << m;
    EXPECT_TRUE(contains(m, "Device<GPU, 1>")) << m;
  }
  // Also through an explicit mapping.
  opencl::select_devices({0, 1, 1});
  EXPECT_THROW((void)opencl::physical_device(2), not_a_gpu_error);
  for (const auto& d : devices()) {
    EXPECT_FALSE(d.eligible);
    EXPECT_TRUE(contains(d.description, "not accepted as GPU without opt-in")) << d.description;
  }
  opencl::allow_cpu_devices(true);
  EXPECT_EQ(opencl::physical_device(2), 1u);
}

TEST(OpenCLRuntime, SecondDeviceWorksAndIsADifferentDevice) {
  EXPECT_NE(opencl::physical_device(0), opencl::physical_device(1));
  EXPECT_NE(&backend_for<G>::ctx(), &backend_for<G1>::ctx());
  EXPECT_TRUE(contains(device_description<G1>(), "Device<GPU, 1> = [1]"))
      << device_description<G1>();
  EXPECT_TRUE(contains(device_description<G>(), "Device<GPU, 0> = [0]"));
  Tensor<float, C> h{1.f, 2.f, 3.f};
  auto a = to<G1>(h);
  Tensor<float, G1> r = a * a + 1.f;
  auto back = to<C>(r);
  EXPECT_EQ(back(0), 2.f);
  EXPECT_EQ(back(2), 10.f);
  // And across the two devices, explicitly.
  auto on0 = to<G>(r);
  EXPECT_EQ(to<C>(on0)(1), 5.f);
}

TEST(OpenCLRuntime, EnvironmentMappingOverridesTheDefault) {
  settings_guard guard;
  setenv("LOCUS_GPU_DEVICES", "0,1,1", 1);
  EXPECT_EQ(opencl::physical_device(2), 1u);
  // Device<GPU, 2> is used nowhere else: binding it here follows the mapping.
  using G2 = Device<GPU, 2>;
  EXPECT_TRUE(contains(device_description<G2>(), "Device<GPU, 2> = [1]"))
      << device_description<G2>();
  Tensor<int, G2> t = Tensor<int, G2>::full({4}, 7) * 3;
  EXPECT_EQ(to<C>(t)(3), 21);
  setenv("LOCUS_GPU_DEVICES", "1,x", 1);
  EXPECT_THROW((void)opencl::physical_device(3), argument_error);
  setenv("LOCUS_GPU_DEVICES", "0,1,1,7", 1);
  try {
    (void)opencl::physical_device(3);
    FAIL();
  } catch (const no_device_error& e) {
    EXPECT_TRUE(contains(e.what(), "LOCUS_GPU_DEVICES maps Device<GPU, 3> to OpenCL device [7]"))
        << e.what();
  }
}

TEST(OpenCLRuntime, ApiMappingOverridesTheEnvironmentAndProtectsBoundDevices) {
  settings_guard guard;
  setenv("LOCUS_GPU_DEVICES", "0,0,0,0", 1);
  opencl::select_devices({0, 1, 1, 1});
  EXPECT_EQ(opencl::physical_device(3), 1u);
  (void)backend_for<G>::ctx();  // make sure Device<GPU, 0> is bound to [0]
  EXPECT_THROW(opencl::select_devices({1, 0}), argument_error);
  EXPECT_EQ(opencl::physical_device(0), 0u);
}

TEST(OpenCLRuntime, MissingDeviceListsWhatWasFound) {
  settings_guard guard;
  try {
    (void)opencl::physical_device(3);
    FAIL() << "Device<GPU, 3> resolved with two devices";
  } catch (const no_device_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "Device<GPU, 3>")) << m;
    for (const auto& d : devices()) {
      EXPECT_TRUE(contains(m, "[" + std::to_string(d.index) + "] " + d.name)) << m;
    }
  }
  // Opening the device itself throws the same type.
  EXPECT_THROW((Tensor<float, Device<GPU, 3>>(Shape{2})), no_device_error);
}

TEST(OpenCLRuntime, NoPlatformMessageSaysWhatToInstall) {
  const std::string m =
      ocl::no_platform_message(ocl::platform_not_found_khr, {"/x/a.icd -> liba.so"});
  EXPECT_TRUE(contains(m, "CL_PLATFORM_NOT_FOUND_KHR")) << m;
  EXPECT_TRUE(contains(m, "apt-get install pocl-opencl-icd")) << m;
  EXPECT_TRUE(contains(m, "LOCUS_OPENCL_ALLOW_CPU=1")) << m;
  EXPECT_TRUE(contains(m, "NVIDIA")) << m;
  EXPECT_TRUE(contains(m, "/x/a.icd -> liba.so")) << m;
  bool pocl = false;
  for (const auto& f : opencl::icd_files()) pocl = pocl || contains(f, "pocl");
  EXPECT_TRUE(pocl) << "expected the PoCL ICD file among the ICD files";
}

TEST(OpenCLRuntime, ErrorsNameTheCallAndTheCode) {
  EXPECT_EQ(ocl::error_name(CL_INVALID_VALUE), "CL_INVALID_VALUE");
  EXPECT_EQ(ocl::error_name(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
  try {
    ocl::check(CL_INVALID_KERNEL_ARGS, "clEnqueueNDRangeKernel", "my_kernel");
    FAIL();
  } catch (const opencl_error& e) {
    EXPECT_EQ(e.code(), CL_INVALID_KERNEL_ARGS);
    EXPECT_TRUE(contains(e.what(), "clEnqueueNDRangeKernel"));
    EXPECT_TRUE(contains(e.what(), "CL_INVALID_KERNEL_ARGS"));
    EXPECT_TRUE(contains(e.what(), "my_kernel"));
  }
  // A real failing call: overlapping regions of one buffer (CL_MEM_COPY_OVERLAP).
  backend_for<G>::buffer<float> a(4), b(4);
  try {
    backend_for<G>::copy(a, 0, a, 1, 2);
    FAIL();
  } catch (const opencl_error& e) {
    EXPECT_EQ(e.code(), CL_MEM_COPY_OVERLAP);
    EXPECT_TRUE(contains(e.what(), "clEnqueueCopyBuffer")) << e.what();
  }
  // Out of range is caught before OpenCL (a pool buffer may be larger than asked for).
  EXPECT_THROW(backend_for<G>::copy(a, 2, b, 0, 4), argument_error);
}

TEST(OpenCLRuntime, KernelBuildFailureCarriesTheLog) {
  auto& dc = backend_for<G>::ctx();
  const ocl::program_source broken(
      "deliberately_broken_kernel",
      "__kernel void f(__global float* x) { x[0] = no_such_symbol_42; }",
      "-cl-std=CL1.2 -DLOCUS_TEST=1");
  try {
    std::lock_guard lk(dc.mutex);
    (void)dc.programs->kernel(broken, "f");
    FAIL() << "a broken kernel built";
  } catch (const kernel_build_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "no_such_symbol_42")) << m;  // the build log
    EXPECT_TRUE(contains(m, "deliberately_broken_kernel")) << m;
    EXPECT_TRUE(contains(m, dc.info.name)) << m;
    EXPECT_TRUE(contains(m, "driver: " + dc.info.driver_version)) << m;
    EXPECT_TRUE(contains(m, "-DLOCUS_TEST=1")) << m;
  }
  // The device is still fine.
  Tensor<float, G> t = Tensor<float, G>::ones({3}) + 1.f;
  EXPECT_EQ(to<C>(t)(2), 2.f);
}

TEST(OpenCLRuntime, EveryKernelLaunchIsCounted) {
  auto a = Tensor<float, G>::full({100}, 2.f);  // one fill
  auto b = Tensor<float, G>::full({100}, 3.f);
  reset_stats<G>();
  Tensor<float, G> r = a * b + a;  // one fused kernel
  EXPECT_EQ(stats<G>().kernel_launches, 1u);
  Tensor<float, G> s = sqrt(r) * exp(-a) + where(greater(a, b), a, b);  // still one
  EXPECT_EQ(stats<G>().kernel_launches, 2u);
  auto u = Tensor<float, G>::uniform({10}, 1);
  EXPECT_EQ(stats<G>().kernel_launches, 3u);
  auto m = sum(s);
  EXPECT_GE(stats<G>().kernel_launches, 4u);
  EXPECT_EQ(stats<G>().transfer_calls(), 0u);
}

TEST(OpenCLRuntime, GpuChainMakesNoHostTransfers) {
  Tensor<float, C> h = Tensor<float, C>::uniform({64, 32}, 7);
  auto x = to<G>(h);
  auto w = Tensor<float, G>::normal({32, 16}, 3);
  auto bias = Tensor<float, G>::zeros({16});
  auto& dc = backend_for<G>::ctx();
  reset_stats<G>();
  const auto writes = dc.host_writes.load(), reads = dc.host_reads.load();
  for (int step = 0; step < 5; ++step) {
    Tensor<float, G> y = relu(matmul(x, w) + bias);
    auto s = sum(y, 0);
    auto m = mean(y);
    auto mx = max(y, 1);
    auto am = argmax(y, 1);
    Tensor<float, G> z = sigmoid(y) * 0.5f + tanh(y);
    auto t = transpose(z);
    bias = bias - s * 0.001f;
  }
  const auto st = stats<G>();
  EXPECT_EQ(st.transfer_calls(), 0u);
  EXPECT_EQ(st.host_to_device_bytes + st.device_to_host_bytes, 0u);
  EXPECT_EQ(dc.host_writes.load(), writes);
  EXPECT_EQ(dc.host_reads.load(), reads);
  EXPECT_GT(st.kernel_launches, 5u * 8u);
}

TEST(OpenCLRuntime, ConcurrentLaunchesFromManyThreads) {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 25; ++i) {
        auto a = Tensor<float, G>::full({257}, static_cast<float>(t));
        Tensor<float, G> b = a * 2.f + static_cast<float>(i);
        const auto h = to<C>(b);
        good += h(256) == 2.f * t + i;
      }
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 25);
}

}  // namespace
