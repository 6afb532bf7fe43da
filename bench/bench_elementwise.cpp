// A fused element-wise expression (d = a * b + c over 1e7 floats) on Device<CPU>, side by
// side with a STREAM triad loop on the same threads. Bytes are counted the STREAM way
// (reads plus writes, no write-allocate): 16 per element for a * b + c, 12 for the
// triad. The ratio of the two bandwidths is the figure of merit.
#include <benchmark/benchmark.h>

#include <locus/locus.hpp>

#include <cstddef>
#include <vector>

namespace {

using locus::Device;
using locus::Tensor;
using Cpu = Device<locus::CPU>;
constexpr std::size_t n = 10'000'000;

void BM_LocusFusedMulAdd(benchmark::State& state) {
  const auto a = Tensor<float, Cpu>::uniform({n}, 1), b = Tensor<float, Cpu>::uniform({n}, 2);
  const auto c = Tensor<float, Cpu>::uniform({n}, 3);
  Tensor<float, Cpu> d(locus::uninitialized, {n});
  for (auto _ : state) {
    d = a * b + c;
    benchmark::DoNotOptimize(d.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(16.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// The STREAM triad, a[i] = b[i] + s * c[i], split over the same thread pool so both sides
// use every core; the compiler vectorises the loop with -march=native.
void BM_StreamTriad(benchmark::State& state) {
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const float s = 3.0f;
  for (auto _ : state) {
    locus::backend::cpu::parallel_for(n, 1 << 15, [&](std::size_t lo, std::size_t hi) {
      float* __restrict pa = a.data();
      const float* __restrict pb = b.data();
      const float* __restrict pc = c.data();
      for (std::size_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
    });
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(12.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// A broadcast expression (bias add + relu over [N, 512]) for reference.
void BM_LocusBiasRelu(benchmark::State& state) {
  const auto x = Tensor<float, Cpu>::uniform({n / 512, 512}, 4, -1.0f, 1.0f);
  const auto bias = Tensor<float, Cpu>::uniform({512}, 5);
  Tensor<float, Cpu> y(locus::uninitialized, x.shape());
  for (auto _ : state) {
    y = relu(x + bias);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(8.0 * (n / 512) * 512, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

}  // namespace

BENCHMARK(BM_LocusFusedMulAdd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StreamTriad)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LocusBiasRelu)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
