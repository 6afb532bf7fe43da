// OpenCL backend benchmarks, on Device<GPU> (PoCL's CPU device in CI, a real GPU where
// available):
//  - a fused element-wise kernel (a * b + c over 1e7 floats) against clEnqueueCopyBuffer on
//    the same device, both in GB/s counting bytes read + written (the fused kernel moves
//    16 bytes per element, the copy 8): the generated kernel should reach >= 0.7x the copy;
//  - host-to-device and device-to-host transfer rates;
//  - building the whole kernel set cold (empty disk cache) vs warm (disk cache hits).
// Run with LOCUS_OPENCL_ALLOW_CPU=1 when the device is PoCL. PoCL's own kernel cache is
// disabled here (POCL_KERNEL_CACHE=0) so that "cold" really compiles.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <unistd.h>

#include <locus/backend/opencl/catalog.hpp>
#include <locus/locus.hpp>

namespace {

using namespace locus;
using G = Device<GPU>;
using B = backend_for<G>;
namespace ocl = backend::opencl;
constexpr std::size_t n = 10'000'000;

void BM_FusedMulAdd(benchmark::State& state) {
  auto a = Tensor<float, G>::uniform({n}, 1), b = Tensor<float, G>::uniform({n}, 2),
       c = Tensor<float, G>::uniform({n}, 3);
  Tensor<float, G> r(Shape{n});
  r = a * b + c;
  synchronize<G>();
  for (auto _ : state) {
    r = a * b + c;  // same shape: evaluated in place, one kernel
    synchronize<G>();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * 4 * sizeof(float));
}

void BM_CopyBuffer(benchmark::State& state) {
  B::buffer<float> src(n), dst(n);
  B::fill(src, 1.f);
  synchronize<G>();
  for (auto _ : state) {
    B::copy(src, 0, dst, 0, n);
    synchronize<G>();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * 2 * sizeof(float));
}

void BM_HostToDevice(benchmark::State& state) {
  std::vector<float> host(n, 1.f);
  B::buffer<float> dst(n);
  for (auto _ : state) B::upload(dst, host.data(), n);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * sizeof(float));
}

void BM_DeviceToHost(benchmark::State& state) {
  std::vector<float> host(n);
  B::buffer<float> src(n);
  B::fill(src, 2.f);
  for (auto _ : state) B::download(src, host.data(), n);
  benchmark::DoNotOptimize(host.data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * sizeof(float));
}

void build_catalog() {
  auto& dc = B::ctx();
  std::lock_guard lk(dc.mutex);
  dc.programs->clear();
  for (auto& e : ocl::kernel_catalog(dc.info)) {
    for (const auto& k : e.kernels) (void)dc.programs->kernel(e.source, k.c_str());
  }
}

std::string bench_cache_dir(const char* tag) {
  return (std::filesystem::temp_directory_path() /
          ("locus_bench_cache_" + std::string(tag) + "_" + std::to_string(::getpid())))
      .string();
}

void BM_KernelSetBuildCold(benchmark::State& state) {
  const std::string dir = bench_cache_dir("cold");
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::remove_all(dir);
    opencl::set_kernel_cache_dir(dir);
    state.ResumeTiming();
    build_catalog();
  }
  std::filesystem::remove_all(dir);
  opencl::set_kernel_cache_dir("");
  state.counters["programs"] = static_cast<double>(ocl::kernel_catalog(B::ctx().info).size());
}

void BM_KernelSetBuildWarm(benchmark::State& state) {
  const std::string dir = bench_cache_dir("warm");
  opencl::set_kernel_cache_dir(dir);
  build_catalog();  // fills the disk cache
  const auto before = B::ctx().programs->stats();
  for (auto _ : state) build_catalog();
  const auto after = B::ctx().programs->stats();
  state.counters["disk_hits"] = static_cast<double>(after.disk_hits - before.disk_hits);
  state.counters["source_builds"] = static_cast<double>(after.source_builds - before.source_builds);
  std::filesystem::remove_all(dir);
  opencl::set_kernel_cache_dir("");
}

BENCHMARK(BM_FusedMulAdd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CopyBuffer)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HostToDevice)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DeviceToHost)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_KernelSetBuildCold)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_KernelSetBuildWarm)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  // Before the first OpenCL call: PoCL reads it when the platform initialises.
  setenv("POCL_KERNEL_CACHE", "0", 0);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
