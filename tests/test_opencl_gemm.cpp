// Tests of the OpenCL GEMM kernels (include/locus/backend/opencl/kernels/gemm.hpp) against a
// double-precision host reference, on the first OpenCL device (PoCL in CI).
//
// Every case runs with two configurations: the one choose_gemm_config() picks for the device
// and the GPU configuration (tiled local-memory kernel + narrow direct kernels) forced onto
// the same device, so the GPU path is exercised even where no GPU is present.
#include <locus/backend/opencl/kernels/gemm.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

namespace k = locus::backend::opencl::kernels;

struct cl_env {
  cl_device_id dev = nullptr;
  cl_context ctx = nullptr;
  cl_command_queue q = nullptr;
  bool fp64 = false;
  std::string error;

  cl_env() {
    cl_uint np = 0;
    if (clGetPlatformIDs(0, nullptr, &np) != CL_SUCCESS || np == 0) {
      error = "no OpenCL platform";
      return;
    }
    std::vector<cl_platform_id> ps(np);
    clGetPlatformIDs(np, ps.data(), nullptr);
    for (cl_platform_id p : ps)
      if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 1, &dev, nullptr) == CL_SUCCESS) break;
    if (!dev) {
      error = "no OpenCL device";
      return;
    }
    cl_int err = CL_SUCCESS;
    ctx = clCreateContext(nullptr, 1, &dev, nullptr, nullptr, &err);
    if (err == CL_SUCCESS) q = clCreateCommandQueue(ctx, dev, 0, &err);
    if (err != CL_SUCCESS) error = "context/queue creation failed: " + std::to_string(err);
    std::size_t len = 0;
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, nullptr, &len);
    std::string ext(len, '\0');
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, len, ext.data(), nullptr);
    fp64 = ext.find("cl_khr_fp64") != std::string::npos;
  }
  ~cl_env() {
    for (auto& [key, p] : programs) {
      k::release_gemm_kernels(p.kernels);
      if (p.program) clReleaseProgram(p.program);
    }
    if (q) clReleaseCommandQueue(q);
    if (ctx) clReleaseContext(ctx);
  }

  struct built {
    k::gemm_config cfg;
    cl_program program = nullptr;
    k::gemm_kernels kernels;
    std::string error;
  };
  std::map<std::pair<bool, bool>, built> programs;  // (gpu config, fp64) -> program

  // Builds (once) the program for one configuration, as the OpenCL runtime would.
  built& get(bool gpu_config, bool use_fp64) {
    auto [it, fresh] = programs.try_emplace({gpu_config, use_fp64});
    built& b = it->second;
    if (!fresh) return b;
    if (gpu_config) {
      std::size_t max_wg = 0;
      cl_ulong local_mem = 0;
      clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, nullptr);
      clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, nullptr);
      b.cfg = k::make_gemm_config(k::gemm_device_kind::gpu, use_fp64, max_wg, local_mem, true);
      b.cfg.tiled_min_mn = 64;  // take the tiled path from 64x64 up so the tests reach it
    } else {
      b.cfg = k::choose_gemm_config(dev, use_fp64);
    }
    const char* src = k::gemm_source();
    cl_int err = CL_SUCCESS;
    b.program = clCreateProgramWithSource(ctx, 1, &src, nullptr, &err);
    if (err == CL_SUCCESS) {
      const std::string opts = b.cfg.build_options();
      err = clBuildProgram(b.program, 1, &dev, opts.c_str(), nullptr, nullptr);
      if (err != CL_SUCCESS) {
        std::size_t len = 0;
        clGetProgramBuildInfo(b.program, dev, CL_PROGRAM_BUILD_LOG, 0, nullptr, &len);
        std::string log(len, '\0');
        clGetProgramBuildInfo(b.program, dev, CL_PROGRAM_BUILD_LOG, len, log.data(), nullptr);
        b.error = "build failed (" + std::to_string(err) + ") with " + opts + ":\n" + log;
        return b;
      }
      err = k::create_gemm_kernels(b.program, &b.kernels);
    }
    if (err != CL_SUCCESS) b.error = "program/kernel creation failed: " + std::to_string(err);
    return b;
  }
};

cl_env& env() {
  static cl_env e;
  return e;
}

struct gemm_case {
  std::size_t batch = 1, m = 1, n = 1, k = 1;
  bool ta = false, tb = false;
  double alpha = 1.0, beta = 0.0;
  std::size_t a_off = 0, b_off = 0, c_off = 0;  // element offsets into the buffers
  std::size_t pad = 0;                          // extra elements per row (ld = cols + pad)
  bool share_a = false, share_b = false;        // batch stride 0
  bool nan_c = false;                           // C starts as NaN (beta must be 0)
  // Epilogue: C = act(... + bias), bias per column read from bias_off.
  bool bias = false;
  std::size_t bias_off = 0;
  locus::gemm_activation act = locus::gemm_activation::linear;
};

std::string describe(const gemm_case& c) {
  return "batch=" + std::to_string(c.batch) + " m=" + std::to_string(c.m) +
         " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) + " ta=" + std::to_string(c.ta) +
         " tb=" + std::to_string(c.tb) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " pad=" + std::to_string(c.pad) +
         " bias=" + std::to_string(c.bias) + " act=" + std::to_string(static_cast<int>(c.act));
}

double apply_act(locus::gemm_activation act, double x) {
  switch (act) {
    case locus::gemm_activation::relu:
      return x > 0 ? x : 0;
    case locus::gemm_activation::sigmoid:
      return 1 / (1 + std::exp(-x));
    case locus::gemm_activation::tanh:
      return std::tanh(x);
    case locus::gemm_activation::linear:
      break;
  }
  return x;
}

struct mem_deleter {
  void operator()(cl_mem m) const {
    if (m) clReleaseMemObject(m);
  }
};
using mem_ptr = std::unique_ptr<std::remove_pointer_t<cl_mem>, mem_deleter>;

template <class T>
mem_ptr upload(const std::vector<T>& host) {
  cl_int err = CL_SUCCESS;
  // Never zero-sized: OpenCL rejects empty buffers, and empty products still pass one.
  std::vector<T> data = host;
  if (data.empty()) data.resize(1);
  cl_mem m = clCreateBuffer(env().ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                            data.size() * sizeof(T), data.data(), &err);
  EXPECT_EQ(err, CL_SUCCESS);
  return mem_ptr(m);
}

// Runs one case through enqueue_gemm and checks every element of C (and that C's padding,
// which no product touches, keeps its sentinel value).
template <class T>
void check(bool gpu_config, const gemm_case& c) {
  SCOPED_TRACE(describe(c));
  auto& b = env().get(gpu_config, sizeof(T) == sizeof(double));
  ASSERT_TRUE(b.error.empty()) << b.error;

  // op(A) is m x k: stored k x m when transposed. Likewise op(B) is k x n.
  const std::size_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const std::size_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const std::size_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  const std::size_t a_mat = a_rows * lda, b_mat = b_rows * ldb, c_mat = c.m * ldc;
  const std::size_t sa = c.share_a ? 0 : a_mat + 3, sb = c.share_b ? 0 : b_mat + 5, sc = c_mat + 7;
  const std::size_t nbat = c.batch ? c.batch : 1;
  std::vector<T> A(c.a_off + (nbat - 1) * sa + a_mat), B(c.b_off + (nbat - 1) * sb + b_mat),
      C(c.c_off + (nbat - 1) * sc + c_mat);

  std::mt19937 rng(static_cast<unsigned>(c.m * 131 + c.n * 31 + c.k * 7 + c.ta * 2 + c.tb));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (T& x : A) x = static_cast<T>(dist(rng));
  for (T& x : B) x = static_cast<T>(dist(rng));
  const T sentinel = static_cast<T>(1234.5);
  for (T& x : C) x = sentinel;
  for (std::size_t bi = 0; bi < c.batch; ++bi)
    for (std::size_t i = 0; i < c.m; ++i)
      for (std::size_t j = 0; j < c.n; ++j)
        C[c.c_off + bi * sc + i * ldc + j] =
            c.nan_c ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(dist(rng));

  std::vector<T> bias(c.bias_off + c.n + 1);
  for (T& x : bias) x = static_cast<T>(dist(rng));
  auto da = upload(A), db = upload(B), dc = upload(C), dbias = upload(bias);
  k::gemm_call call;
  call.batch = c.batch;
  call.m = c.m;
  call.n = c.n;
  call.k = c.k;
  call.trans_a = c.ta;
  call.trans_b = c.tb;
  call.alpha = c.alpha;
  call.beta = c.beta;
  call.a = da.get();
  call.a_offset = c.a_off;
  call.lda = lda;
  call.stride_a = sa;
  call.b = db.get();
  call.b_offset = c.b_off;
  call.ldb = ldb;
  call.stride_b = sb;
  call.c = dc.get();
  call.c_offset = c.c_off;
  call.ldc = ldc;
  call.stride_c = sc;
  call.bias = c.bias ? dbias.get() : nullptr;
  call.bias_offset = c.bias_off;
  call.act = c.act;
  unsigned launches = 0;
  ASSERT_EQ(k::enqueue_gemm(env().q, b.kernels, b.cfg, call, &launches), CL_SUCCESS);
  const bool empty = c.batch == 0 || c.m == 0 || c.n == 0;
  EXPECT_EQ(launches, empty ? 0u : call.has_epilogue() ? 2u : 1u);
  std::vector<T> out(C.size());
  if (out.empty()) return;
  ASSERT_EQ(clEnqueueReadBuffer(env().q, dc.get(), CL_TRUE, 0, out.size() * sizeof(T), out.data(),
                                0, nullptr, nullptr),
            CL_SUCCESS);

  const double eps = std::numeric_limits<T>::epsilon();
  std::vector<bool> written(C.size(), false);
  int failures = 0;
  for (std::size_t bi = 0; bi < c.batch; ++bi) {
    const T* a = A.data() + c.a_off + bi * sa;
    const T* bb = B.data() + c.b_off + bi * sb;
    for (std::size_t i = 0; i < c.m; ++i)
      for (std::size_t j = 0; j < c.n; ++j) {
        double ref = 0, mag = 0;
        for (std::size_t p = 0; p < c.k; ++p) {
          const double av = c.ta ? a[p * lda + i] : a[i * lda + p];
          const double bv = c.tb ? bb[j * ldb + p] : bb[p * ldb + j];
          ref += av * bv;
          mag += std::fabs(av * bv);
        }
        const std::size_t ci = c.c_off + bi * sc + i * ldc + j;
        written[ci] = true;
        ref *= c.alpha;
        mag *= std::fabs(c.alpha);
        if (c.beta != 0.0) {
          ref += c.beta * static_cast<double>(C[ci]);
          mag += std::fabs(c.beta * static_cast<double>(C[ci]));
        }
        if (c.bias) {
          ref += static_cast<double>(bias[c.bias_off + j]);
          mag += std::fabs(static_cast<double>(bias[c.bias_off + j]));
        }
        ref = apply_act(c.act, ref);  // 1-Lipschitz: the bound below still holds
        // Rounding of a length-k sum grows like sqrt(k) for random data; 16x headroom.
        const double tol = 16 * eps * std::sqrt(static_cast<double>(c.k) + 1) * (mag + 1);
        const double got = out[ci];
        if (!(std::fabs(got - ref) <= tol) && ++failures <= 5)
          ADD_FAILURE() << "C[" << bi << "][" << i << "][" << j << "] = " << got << ", expected "
                        << ref << " (tol " << tol << ")";
      }
  }
  for (std::size_t x = 0; x < out.size(); ++x)
    if (!written[x] && out[x] != sentinel && ++failures <= 10)
      ADD_FAILURE() << "element " << x << " outside C was overwritten with " << out[x];
  EXPECT_EQ(failures, 0);
}

// Parameters: (forced GPU configuration, double precision).
class OpenclGemm : public ::testing::TestWithParam<std::tuple<bool, bool>> {
 protected:
  void SetUp() override {
    if (!env().error.empty()) GTEST_SKIP() << env().error;
    if (fp64() && !env().fp64) GTEST_SKIP() << "device has no cl_khr_fp64";
  }
  bool gpu() const { return std::get<0>(GetParam()); }
  bool fp64() const { return std::get<1>(GetParam()); }
  void run(const gemm_case& c) {
    if (fp64())
      check<double>(gpu(), c);
    else
      check<float>(gpu(), c);
  }
  static constexpr bool transposes[4][2] = {
      {false, false}, {false, true}, {true, false}, {true, true}};
};

const std::vector<std::size_t> sizes = {0, 1, 2, 3, 7, 17, 33, 64, 65, 127, 129, 300};

TEST_P(OpenclGemm, SquareSizesAllTransposes) {
  for (std::size_t s : sizes)
    for (auto [ta, tb] : transposes) {
      gemm_case c;
      c.m = c.n = c.k = s;
      c.ta = ta;
      c.tb = tb;
      run(c);
    }
}

TEST_P(OpenclGemm, MixedSizesAllTransposes) {
  // Every size appears as m, n and k, paired with different neighbours.
  const std::size_t ns = sizes.size();
  for (std::size_t i = 0; i < ns; ++i)
    for (auto [ta, tb] : transposes) {
      gemm_case c;
      c.m = sizes[i];
      c.n = sizes[(i + 5) % ns];
      c.k = sizes[(i + 9) % ns];
      c.ta = ta;
      c.tb = tb;
      c.alpha = 0.5;
      c.beta = -1.25;
      run(c);
    }
}

TEST_P(OpenclGemm, NeuralNetworkSkinnyShapes) {
  // Dense layer forward/backward on 5408 = 13*13*32 features, and a 3x3 conv via im2col.
  const std::size_t shapes[][3] = {{32, 10, 5408}, {32, 5408, 10}, {5408, 10, 32},
                                   {21632, 32, 9}, {10, 5408, 32}, {1, 10, 5408}};
  for (auto& s : shapes)
    for (auto [ta, tb] : transposes) {
      gemm_case c;
      c.m = s[0];
      c.n = s[1];
      c.k = s[2];
      c.ta = ta;
      c.tb = tb;
      c.beta = 1.0;  // gradient accumulation
      run(c);
    }
}

TEST_P(OpenclGemm, OffsetsAndLeadingDimensions) {
  for (auto [ta, tb] : transposes)
    for (std::size_t s : {5, 40, 130}) {
      gemm_case c;
      c.m = s;
      c.n = s + 3;
      c.k = s + 1;
      c.ta = ta;
      c.tb = tb;
      c.a_off = 3;
      c.b_off = 17;
      c.c_off = 5;
      c.pad = 9;
      c.alpha = 2.0;
      c.beta = 0.5;
      run(c);
    }
}

TEST_P(OpenclGemm, BatchedWithSharedOperands) {
  for (auto [ta, tb] : transposes)
    for (int shared = 0; shared < 3; ++shared) {
      gemm_case c;
      c.batch = 3;
      c.m = 37;
      c.n = 70;
      c.k = 19;
      c.ta = ta;
      c.tb = tb;
      c.share_a = shared == 1;
      c.share_b = shared == 2;
      c.a_off = 1;
      c.b_off = 2;
      c.c_off = 3;
      c.beta = 1.0;
      run(c);
    }
}

TEST_P(OpenclGemm, BetaZeroNeverReadsC) {
  for (auto [ta, tb] : transposes)
    for (std::size_t s : {1, 17, 65, 200}) {
      gemm_case c;
      c.batch = 2;
      c.m = s;
      c.n = s + 2;
      c.k = s + 4;
      c.ta = ta;
      c.tb = tb;
      c.alpha = -1.5;
      c.beta = 0.0;
      c.nan_c = true;
      run(c);
    }
}

TEST_P(OpenclGemm, GeneralAlphaBeta) {
  for (auto [ta, tb] : transposes)
    for (auto [alpha, beta] : {std::pair{0.75, -0.5}, {-2.0, 3.0}, {0.0, 2.0}, {1.0, 1.0}}) {
      gemm_case c;
      c.m = 70;
      c.n = 45;
      c.k = 33;
      c.ta = ta;
      c.tb = tb;
      c.alpha = alpha;
      c.beta = beta;
      run(c);
    }
}

TEST_P(OpenclGemm, KZeroScalesC) {
  for (double beta : {0.0, 2.0}) {
    gemm_case c;
    c.m = 20;
    c.n = 33;
    c.k = 0;
    c.beta = beta;
    c.nan_c = beta == 0.0;
    run(c);
  }
}

TEST_P(OpenclGemm, EmptyProductsEnqueueNothing) {
  for (auto [b, m, n] :
       {std::tuple<std::size_t, std::size_t, std::size_t>{0, 5, 5}, {2, 0, 5}, {2, 5, 0}}) {
    gemm_case c;
    c.batch = b;
    c.m = m;
    c.n = n;
    c.k = 4;
    run(c);
  }
}

TEST_P(OpenclGemm, EpilogueEveryKernel) {
  // Shapes that reach every kernel: nn, tn, tt (C^T), nt (dot products), nt_packed and, in
  // the GPU configuration, tiled; edges, offsets, padding and batches with shared operands.
  const locus::gemm_activation acts[] = {
      locus::gemm_activation::linear, locus::gemm_activation::relu, locus::gemm_activation::sigmoid,
      locus::gemm_activation::tanh};
  const std::vector<std::array<std::size_t, 3>> shapes = {
      {7, 5, 3}, {65, 33, 17}, {32, 10, 300}, {129, 127, 65}};
  int variant = 0;
  for (const auto& sh : shapes)
    for (const auto& t : transposes)
      for (auto act : acts) {
        gemm_case c;
        c.m = sh[0];
        c.n = sh[1];
        c.k = sh[2];
        c.ta = t[0];
        c.tb = t[1];
        c.act = act;
        switch (variant++ % 4) {
          case 0:  // bias at an offset, C starts as NaN
            c.bias = true;
            c.bias_off = 3;
            c.nan_c = true;
            break;
          case 1:  // general alpha and beta, padded rows, offsets into every buffer
            c.bias = true;
            c.alpha = -1.5;
            c.beta = 0.5;
            c.pad = 3;
            c.a_off = 5;
            c.b_off = 7;
            c.c_off = 2;
            break;
          case 2:  // no bias: the activation alone
            break;
          default:  // a batch sharing A and the bias
            c.bias = true;
            c.batch = 3;
            c.share_a = true;
        }
        run(c);
      }
  // k == 0: C = act(beta C + bias).
  gemm_case c;
  c.m = 9;
  c.n = 11;
  c.k = 0;
  c.beta = 2;
  c.bias = true;
  c.act = locus::gemm_activation::tanh;
  run(c);
}

TEST(OpenclGemmConfig, BuildOptionsDescribeTheConfig) {
  k::gemm_config cfg = k::make_gemm_config(k::gemm_device_kind::gpu, false, 1024, 49152, true);
  const std::string opts = cfg.build_options();
  EXPECT_NE(opts.find("-DLOCUS_T=float"), std::string::npos);
  EXPECT_NE(opts.find("-DLOCUS_TS_M=64"), std::string::npos);
  EXPECT_EQ(cfg.tiled_local_m() * cfg.tiled_local_n(), 256u);
  // A device limited to 64 work-items per group gets smaller tiles, never an invalid launch.
  cfg = k::make_gemm_config(k::gemm_device_kind::gpu, true, 64, 16384, true);
  EXPECT_LE(cfg.tiled_local_m() * cfg.tiled_local_n(), 64u);
  EXPECT_LE(cfg.direct_local, 64u);
  EXPECT_NE(cfg.build_options().find("-DLOCUS_T=double"), std::string::npos);
  EXPECT_EQ(k::gemm_kernel_names().size(), 7u);
}

INSTANTIATE_TEST_SUITE_P(Configs, OpenclGemm,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "GpuConfig"
                                                                      : "DeviceConfig") +
                                  (std::get<1>(info.param) ? "_f64" : "_f32");
                         });

}  // namespace
