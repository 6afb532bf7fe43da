// SGEMM throughput: locus::backend::cpu::gemm against OpenBLAS cblas_sgemm, both on two
// threads, side by side in one run so both see the same machine state. Square sizes plus
// the skinny shapes a small CNN's training step produces (Dense forward/backward, conv
// im2col). Each pair is registered back to back so drift (thermal, other load) hits both.
//
//   g++ -std=c++20 -O3 -march=native -Iinclude bench/bench_gemm.cpp -lbenchmark -lopenblas
//       -pthread
#include <locus/backend/cpu/gemm.hpp>
#include <locus/backend/cpu/thread_pool.hpp>

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

// Not declared by every cblas.h (the netlib one lacks it); the OpenBLAS library has it.
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" char* openblas_get_corename(void);

namespace {

constexpr int kThreads = 2;

struct shape {
  const char* label;
  bool ta, tb;
  std::size_t m, n, k;
};

struct operands {
  std::vector<float> a, b, c;
  std::size_t lda, ldb, ldc;
};

operands make(const shape& s) {
  operands o;
  o.lda = s.ta ? s.m : s.k;
  o.ldb = s.tb ? s.k : s.n;
  o.ldc = s.n;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  o.a.resize(s.m * s.k);
  o.b.resize(s.k * s.n);
  o.c.resize(s.m * s.n);
  for (auto& x : o.a) x = d(rng);
  for (auto& x : o.b) x = d(rng);
  for (auto& x : o.c) x = d(rng);
  return o;
}

void set_counters(benchmark::State& state, const shape& s) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) / 1e9,
      benchmark::Counter::kIsIterationInvariantRate);
}

void bm_locus(benchmark::State& state, shape s) {
  locus::backend::cpu::set_num_threads(kThreads);
  operands o = make(s);
  for (auto _ : state) {
    locus::backend::cpu::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, o.a.data(), o.lda, o.b.data(),
                                     o.ldb, 0.0f, o.c.data(), o.ldc);
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s);
}

void bm_openblas(benchmark::State& state, shape s) {
  openblas_set_num_threads(kThreads);
  operands o = make(s);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), 1.0f,
                o.a.data(), static_cast<int>(o.lda), o.b.data(), static_cast<int>(o.ldb), 0.0f,
                o.c.data(), static_cast<int>(o.ldc));
    benchmark::DoNotOptimize(o.c.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s);
}

// The peer at its best. OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernel by
// CPU model when the library loads; a model it does not know (Debian's 0.3.21 on newer
// Xeons) gets a generic kernel, measured at 30-38 GFLOP/s where its Cooperlake kernel runs
// 175-222, and a ratio against that says nothing. The kernel is fixed at load time, so
// when OpenBLAS chose a weaker x86 kernel than the CPU's instruction set supports and the
// user did not choose one (OPENBLAS_CORETYPE), the program runs itself again with the
// matching OPENBLAS_CORETYPE. Other vendors' kernels (Zen, ...) are left as they are.
const char* best_openblas_core_for_this_cpu() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

// Intel kernels of OpenBLAS from weakest to strongest, as openblas_get_corename spells them.
int openblas_core_rank(const std::string& name) {
  static const char* const order[] = {"Prescott",    "Core2",   "Penryn",   "Dunnington", "Nehalem",
                                      "Sandybridge", "Haswell", "SkylakeX", "Cooperlake"};
  const auto* it = std::find_if(std::begin(order), std::end(order), [&](const char* o) {
    return std::equal(name.begin(), name.end(), o, o + std::char_traits<char>::length(o),
                      [](char a, char b) { return std::tolower(a) == std::tolower(b); });
  });
  return it == std::end(order) ? -1 : static_cast<int>(it - std::begin(order));
}

void use_best_openblas_kernel(char** argv) {
  const std::string chosen = openblas_get_corename();
  const char* best = best_openblas_core_for_this_cpu();
  const bool user_chose = std::getenv("OPENBLAS_CORETYPE") != nullptr;
  const int have = openblas_core_rank(chosen);
  if (best && !user_chose && have >= 0 && have < openblas_core_rank(best)) {
    std::fprintf(stderr,
                 "bench_gemm: OpenBLAS chose its %s kernel on a CPU that runs %s; running again "
                 "with OPENBLAS_CORETYPE=%s\n",
                 chosen.c_str(), best, best);
    setenv("OPENBLAS_CORETYPE", best, 1);
    execv("/proc/self/exe", argv);
    std::perror("bench_gemm: execv /proc/self/exe (going on with OpenBLAS's own choice)");
  }
  const std::string coretype = user_chose ? std::getenv("OPENBLAS_CORETYPE") : "(not set)";
  std::fprintf(stderr, "bench_gemm: OpenBLAS kernel %s, OPENBLAS_CORETYPE=%s\n", chosen.c_str(),
               coretype.c_str());
  benchmark::AddCustomContext("openblas_kernel", chosen);
  benchmark::AddCustomContext("openblas_coretype", coretype);
}

void register_pair(const shape& s, double min_time) {
  const std::string name = std::string(s.label);
  // Real time: the work runs on two threads, the main thread's CPU time would flatter both.
  benchmark::RegisterBenchmark(("locus/" + name).c_str(), bm_locus, s)
      ->UseRealTime()
      ->MinTime(min_time)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("openblas/" + name).c_str(), bm_openblas, s)
      ->UseRealTime()
      ->MinTime(min_time)
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  use_best_openblas_kernel(argv);
  // Square SGEMM, C = A * B.
  register_pair({"sgemm_nn/256", false, false, 256, 256, 256}, 0.2);
  register_pair({"sgemm_nn/512", false, false, 512, 512, 512}, 0.3);
  register_pair({"sgemm_nn/1024", false, false, 1024, 1024, 1024}, 0.5);
  register_pair({"sgemm_nn/2048", false, false, 2048, 2048, 2048}, 1.0);
  // Neural-network shapes (m x n x k): Dense 5408 -> 10 at batch 32, forward, backward to the
  // input (W^T) and to the weights (X^T); a 3x3 conv with 32 filters on 26x26 via im2col.
  register_pair({"dense_fwd_32x10x5408", false, false, 32, 10, 5408}, 0.2);
  register_pair({"dense_bwd_x_32x5408x10_nt", false, true, 32, 5408, 10}, 0.2);
  register_pair({"dense_bwd_w_5408x10x32_tn", true, false, 5408, 10, 32}, 0.2);
  register_pair({"conv_im2col_676x32x9", false, false, 676, 32, 9}, 0.2);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
