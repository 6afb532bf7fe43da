// locus OpenCL GEMM vs CLBlast, same device and queue (the first OpenCL device: PoCL here).
// Square row-major SGEMM (n = 256 .. 2048) and the skinny products of a small CNN/MLP.
// Each iteration enqueues one GEMM and waits for it (clFinish), so times are end to end.
// A summary table with the locus/CLBlast ratio is printed after the Google Benchmark output.
#include <locus/backend/opencl/kernels/gemm.hpp>

#include <benchmark/benchmark.h>
#include <clblast.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

namespace k = locus::backend::opencl::kernels;

struct shape {
  const char* name;
  std::size_t m, n, k;
  bool ta, tb;
};

// Square products, then the neural-network shapes: dense 5408 -> 10 layer with batch 32
// (forward, input gradient, weight gradient) and a 3x3x1 -> 32 convolution on 26x26x32
// via im2col.
const shape shapes[] = {
    {"square_256", 256, 256, 256, false, false},
    {"square_512", 512, 512, 512, false, false},
    {"square_1024", 1024, 1024, 1024, false, false},
    {"square_2048", 2048, 2048, 2048, false, false},
    {"square_1024_nt", 1024, 1024, 1024, false, true},
    {"square_1024_tn", 1024, 1024, 1024, true, false},
    {"square_1024_tt", 1024, 1024, 1024, true, true},
    {"fc_fwd_32x10x5408_nt", 32, 10, 5408, false, true},
    {"fc_dx_32x5408x10_nn", 32, 5408, 10, false, false},
    {"fc_dw_5408x10x32_tn", 5408, 10, 32, true, false},
    {"conv_21632x32x9_nn", 21632, 32, 9, false, false},
    {"conv_21632x32x9_nt", 21632, 32, 9, false, true},
};

struct bench_env {
  cl_device_id dev = nullptr;
  cl_context ctx = nullptr;
  cl_command_queue q = nullptr;
  cl_program program = nullptr;
  k::gemm_config cfg;
  k::gemm_kernels kernels;
  std::string device_name;
  // One set of buffers big enough for every shape (allocated once, like a real runtime).
  cl_mem a = nullptr, b = nullptr, c = nullptr;

  bool init() {
    cl_platform_id platform = nullptr;
    if (clGetPlatformIDs(1, &platform, nullptr) != CL_SUCCESS) return false;
    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &dev, nullptr) != CL_SUCCESS) return false;
    char name[256] = {};
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name - 1, name, nullptr);
    device_name = name;
    cl_int err = CL_SUCCESS;
    ctx = clCreateContext(nullptr, 1, &dev, nullptr, nullptr, &err);
    if (err != CL_SUCCESS) return false;
    q = clCreateCommandQueue(ctx, dev, 0, &err);
    if (err != CL_SUCCESS) return false;
    cfg = k::choose_gemm_config(dev, false);
    const char* src = k::gemm_source();
    program = clCreateProgramWithSource(ctx, 1, &src, nullptr, &err);
    if (err != CL_SUCCESS) return false;
    if (clBuildProgram(program, 1, &dev, cfg.build_options().c_str(), nullptr, nullptr) !=
        CL_SUCCESS)
      return false;
    if (k::create_gemm_kernels(program, &kernels) != CL_SUCCESS) return false;

    std::size_t max_elems = 0;
    for (const shape& s : shapes)
      max_elems = std::max({max_elems, s.m * s.k, s.k * s.n, s.m * s.n});
    std::vector<float> host(max_elems);
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& x : host) x = dist(rng);
    const std::size_t bytes = max_elems * sizeof(float);
    const cl_mem_flags flags = CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR;
    a = clCreateBuffer(ctx, flags, bytes, host.data(), &err);
    if (err == CL_SUCCESS) b = clCreateBuffer(ctx, flags, bytes, host.data(), &err);
    if (err == CL_SUCCESS) c = clCreateBuffer(ctx, flags, bytes, host.data(), &err);
    return err == CL_SUCCESS;
  }

  ~bench_env() {
    k::release_gemm_kernels(kernels);
    for (cl_mem m : {a, b, c})
      if (m) clReleaseMemObject(m);
    if (program) clReleaseProgram(program);
    if (q) clReleaseCommandQueue(q);
    if (ctx) clReleaseContext(ctx);
  }
};

bench_env& env() {
  static bench_env e;
  return e;
}

// Leading dimensions of the stored (possibly transposed) operands, packed.
std::size_t lda_of(const shape& s) {
  return s.ta ? s.m : s.k;
}
std::size_t ldb_of(const shape& s) {
  return s.tb ? s.k : s.n;
}

cl_int run_locus(const shape& s) {
  k::gemm_call call;
  call.m = s.m;
  call.n = s.n;
  call.k = s.k;
  call.trans_a = s.ta;
  call.trans_b = s.tb;
  call.alpha = 1.0;
  call.beta = 0.0;
  call.a = env().a;
  call.lda = lda_of(s);
  call.b = env().b;
  call.ldb = ldb_of(s);
  call.c = env().c;
  call.ldc = s.n;
  unsigned launches = 0;
  const cl_int err = k::enqueue_gemm(env().q, env().kernels, env().cfg, call, &launches);
  return err != CL_SUCCESS ? err : clFinish(env().q);
}

bool run_clblast(const shape& s) {
  using clblast::Transpose;
  const auto st = clblast::Gemm<float>(
      clblast::Layout::kRowMajor, s.ta ? Transpose::kYes : Transpose::kNo,
      s.tb ? Transpose::kYes : Transpose::kNo, s.m, s.n, s.k, 1.0f, env().a, 0, lda_of(s), env().b,
      0, ldb_of(s), 0.0f, env().c, 0, s.n, &env().q, nullptr);
  return st == clblast::StatusCode::kSuccess && clFinish(env().q) == CL_SUCCESS;
}

void set_flops(benchmark::State& state, const shape& s) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(s.m * s.n * s.k) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void bm_locus(benchmark::State& state, const shape& s) {
  if (run_locus(s) != CL_SUCCESS) {  // also JIT-compiles PoCL's specialisation
    state.SkipWithError("locus gemm failed");
    return;
  }
  for (auto _ : state)
    if (run_locus(s) != CL_SUCCESS) {
      state.SkipWithError("locus gemm failed");
      break;
    }
  set_flops(state, s);
}

void bm_clblast(benchmark::State& state, const shape& s) {
  // The first call of a shape class compiles CLBlast's kernels: keep it out of the timing.
  if (!run_clblast(s)) {
    state.SkipWithError("clblast::Gemm failed");
    return;
  }
  for (auto _ : state)
    if (!run_clblast(s)) {
      state.SkipWithError("clblast::Gemm failed");
      break;
    }
  set_flops(state, s);
}

// Collects GFLOP/s per benchmark name for the summary table.
class summary_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> gflops;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      auto it = r.counters.find("GFLOP/s");
      if (it != r.counters.end() && !r.error_occurred)
        gflops[r.run_name.function_name] = it->second;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (!env().init()) {
    std::fprintf(stderr, "OpenCL setup or GEMM program build failed\n");
    return 1;
  }
  for (const shape& s : shapes) {
    // CLBlast on a CPU device runs large products at a few GFLOP/s: bound its time so the
    // whole binary stays within about two minutes.
    const double big = 2.0 * static_cast<double>(s.m * s.n * s.k);
    auto* l = benchmark::RegisterBenchmark((std::string("locus/") + s.name).c_str(), bm_locus, s);
    auto* c =
        benchmark::RegisterBenchmark((std::string("clblast/") + s.name).c_str(), bm_clblast, s);
    for (auto* bm : {l, c}) bm->Unit(benchmark::kMillisecond)->UseRealTime();
    l->MinTime(0.3);
    if (big > 4e9)
      c->Iterations(1);
    else
      c->MinTime(0.3);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  summary_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nDevice: %s\nlocus build options: %s\n", env().device_name.c_str(),
              env().cfg.build_options().c_str());
  std::printf("%-24s %12s %12s %8s\n", "shape", "locus GF/s", "CLBlast GF/s", "ratio");
  for (const shape& s : shapes) {
    auto l = reporter.gflops.find(std::string("locus/") + s.name);
    auto c = reporter.gflops.find(std::string("clblast/") + s.name);
    if (l == reporter.gflops.end() || c == reporter.gflops.end()) continue;
    std::printf("%-24s %12.1f %12.1f %7.1fx\n", s.name, l->second, c->second,
                l->second / c->second);
  }
  benchmark::Shutdown();
  return 0;
}
