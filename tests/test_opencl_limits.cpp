// Sizes the OpenCL kernels cannot index. The GEMM kernels compute indices in 32-bit int
// and argmax returns int32: a size past the limit must be refused with
// locus::size_limit_error (naming the operation, the size and the limit) before anything
// is built, allocated or enqueued, never truncated into out-of-bounds device accesses.
//
// Tensors that large would need gigabytes, so the checks are exercised through the real
// entry points the tensor operations call (backend_for<Device<GPU>>::gemm and ::argmax)
// with small buffers and a size argument past the limit: the check must come before the
// buffers are touched. The limit itself is checked against the launch enqueue_gemm plans:
// at the limit, every index the kernels form still fits an int.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
namespace ocl = backend::opencl;
namespace K = backend::opencl::kernels;
using B = backend_for<G>;

constexpr std::size_t int_max = static_cast<std::size_t>(std::numeric_limits<cl_int>::max());

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The configuration the backend uses on this device, and the GPU one (tiled kernel).
std::vector<K::gemm_config> configs(bool fp64) {
  const auto& info = B::ctx().info;
  return {K::choose_gemm_config(info.id, fp64),
          K::make_gemm_config(K::gemm_device_kind::gpu, fp64, info.max_work_group_size,
                              info.local_memory, true)};
}

// The largest value each int expression of the kernel `p.kernel` reaches for this call
// (mirrors the index arithmetic of gemm_source(); see gemm_index_headroom).
std::size_t largest_int_index(const K::gemm_config& cfg, const K::gemm_call& call,
                              const K::gemm_launch_plan& p) {
  std::size_t top = 0;
  auto see = [&](std::size_t v) { top = std::max(top, v); };
  const auto kc = static_cast<std::size_t>(cfg.direct_kc);
  const auto vw = static_cast<std::size_t>(cfg.vector_width);
  if (p.kernel == K::gemm_kernel_kind::tiled) {
    const std::size_t groups_m = p.global[1] / p.local[1], groups_n = p.global[0] / p.local[0];
    see((groups_m - 1) * p.block_rows + p.block_rows - 1);   // gm0 + r
    see((groups_n - 1) * p.block_cols + p.block_cols - 1);   // gn0 + r
    see(call.k - 1 + static_cast<std::size_t>(cfg.tile_k));  // t += TSK
  } else {
    see((p.global[0] - 1) * p.block_rows + p.block_rows - 1);  // r0 + i, i0 + i
    see((p.global[1] - 1) * p.block_cols + p.block_cols);      // c0 + DN, j0 + j
    if (p.kernel == K::gemm_kernel_kind::nt) {
      see(call.k + vw);  // p += VW
    } else {
      see(call.k - 1 + kc);  // kb += KC
    }
  }
  see(p.rows);
  see(p.cols);
  see(call.k);
  return top;
}

TEST(OpenCLSizeLimits, GemmLimitKeepsEveryKernelIndexInsideAnInt) {
  for (bool fp64 : {false, true}) {
    for (const auto& cfg : configs(fp64)) {
      const std::size_t lim = K::gemm_max_extent(cfg);
      ASSERT_LT(lim, int_max);
      for (int ta = 0; ta < 2; ++ta) {
        for (int tb = 0; tb < 2; ++tb) {
          // Each size at the limit in turn (the others small, which selects every kernel:
          // direct, nt for long k, tiled for large m * n on the GPU configuration), then all.
          for (int which = 0; which < 4; ++which) {
            K::gemm_call call;
            call.trans_a = ta != 0;
            call.trans_b = tb != 0;
            call.m = which == 0 || which == 3 ? lim : 3;
            call.n = which == 1 || which == 3 ? lim : 5;
            call.k = which == 2 || which == 3 ? lim : 7;
            call.lda = call.ldb = call.ldc = K::gemm_max_leading_dimension();
            ASSERT_FALSE(K::find_gemm_size_violation(call, cfg));
            const auto plan = K::plan_gemm_launch(cfg, call);
            EXPECT_LE(largest_int_index(cfg, call, plan), int_max)
                << "kernel " << static_cast<int>(plan.kernel) << " ta " << ta << " tb " << tb
                << " size " << which << (fp64 ? " fp64" : " fp32");
          }
        }
      }
    }
  }
}

TEST(OpenCLSizeLimits, GemmSizeCheckNamesTheFirstSizePastItsLimit) {
  for (const auto& cfg : configs(false)) {
    const std::size_t lim = K::gemm_max_extent(cfg), ld = K::gemm_max_leading_dimension();
    K::gemm_call ok;
    ok.m = ok.n = ok.k = lim;
    ok.lda = ok.ldb = ok.ldc = ld;
    EXPECT_FALSE(K::find_gemm_size_violation(ok, cfg));
    struct one {
      const char* what;
      std::size_t K::gemm_call::*field;
      std::size_t limit;
    };
    const one cases[] = {{"m", &K::gemm_call::m, lim},    {"n", &K::gemm_call::n, lim},
                         {"k", &K::gemm_call::k, lim},    {"lda", &K::gemm_call::lda, ld},
                         {"ldb", &K::gemm_call::ldb, ld}, {"ldc", &K::gemm_call::ldc, ld}};
    for (const auto& c : cases) {
      for (std::size_t v : {c.limit + 1, int_max + 1, std::size_t{1} << 32, std::size_t{1} << 40}) {
        K::gemm_call bad = ok;
        bad.*c.field = v;
        const auto r = K::find_gemm_size_violation(bad, cfg);
        ASSERT_TRUE(r) << c.what << " = " << v;
        EXPECT_STREQ(r.what, c.what);
        EXPECT_EQ(r.size, v);
        EXPECT_EQ(r.limit, c.limit);
        // enqueue_gemm itself refuses it too, before touching the queue or the kernels.
        unsigned launches = 0;
        EXPECT_EQ(K::enqueue_gemm(nullptr, K::gemm_kernels{}, cfg, bad, &launches),
                  CL_INVALID_VALUE);
        EXPECT_EQ(launches, 0u);
      }
    }
  }
}

// A GEMM call on small real buffers whose sizes claim more: the backend must refuse it
// before it reads the buffers.
template <class T>
void expect_refused(const char* what, std::size_t huge) {
  B::buffer<T> a(16), b(16), c(16);
  gemm_args<B::buffer<T>, T> g{};
  g.batch = 1;
  g.m = g.n = g.k = 2;
  g.alpha = T(1);
  g.beta = T(0);
  g.a = &a;
  g.b = &b;
  g.c = &c;
  g.lda = g.ldb = g.ldc = 2;
  const std::string w = what;
  std::size_t* field = w == "m"     ? &g.m
                       : w == "n"   ? &g.n
                       : w == "k"   ? &g.k
                       : w == "lda" ? &g.lda
                       : w == "ldb" ? &g.ldb
                                    : &g.ldc;
  *field = huge;
  const auto launches = stats<G>().kernel_launches;
  const auto mem = memory_info<G>();
  const auto cache = opencl::kernel_cache_info<G>();
  try {
    B::gemm(g);
    B::synchronize();
    ADD_FAILURE() << "a GEMM with " << what << " = " << huge << " was not refused";
  } catch (const size_limit_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "GEMM")) << m;
    EXPECT_TRUE(contains(m, w + " = " + std::to_string(huge))) << m;
    EXPECT_TRUE(contains(m, "limit of " + std::to_string(e.limit()))) << m;
    EXPECT_EQ(e.size(), huge);
    EXPECT_LE(e.limit(), int_max);
  }
  // Nothing enqueued, allocated or even looked up in the program cache.
  EXPECT_EQ(stats<G>().kernel_launches, launches);
  EXPECT_EQ(memory_info<G>().in_use, mem.in_use);
  EXPECT_EQ(memory_info<G>().live_buffers, mem.live_buffers);
  const auto cache2 = opencl::kernel_cache_info<G>();
  EXPECT_EQ(cache2.memory_hits, cache.memory_hits);
  EXPECT_EQ(cache2.source_builds, cache.source_builds);
}

TEST(OpenCLSizeLimits, GemmPastTheLimitIsRefusedBeforeAnythingIsEnqueued) {
  for (const char* what : {"m", "n", "k", "lda", "ldb", "ldc"}) {
    for (std::size_t huge : {int_max + 1, std::size_t{3} << 30, std::size_t{1} << 33}) {
      SCOPED_TRACE(std::string(what) + " = " + std::to_string(huge));
      expect_refused<float>(what, huge);
      if (devices()[opencl::physical_device(0)].fp64) expect_refused<double>(what, huge);
    }
  }
  // Just below 2^31 but past the limit (the last work-group's overshoot would wrap).
  expect_refused<float>("k", K::gemm_max_extent(K::choose_gemm_config(B::ctx().info.id)) + 1);
  // The device is still fine, and an ordinary product still works.
  Tensor<float, C> ha = Tensor<float, C>::full({3, 4}, 1.f),
                   hb = Tensor<float, C>::full({4, 2}, 2.f);
  const auto r = to<C>(matmul(to<G>(ha), to<G>(hb)));
  EXPECT_EQ(r(2, 1), 8.f);
}

TEST(OpenCLSizeLimits, ArgmaxRefusesAnAxisItsInt32IndicesCannotCover) {
  B::buffer<float> src(16);
  B::buffer<std::int32_t> dst(16);
  const std::size_t lim = int_max + 1;  // indices 0 .. 2^31 - 1 fit an int32
  for (std::size_t inner : {std::size_t{1}, std::size_t{2}}) {
    for (std::size_t len : {lim + 1, std::size_t{1} << 32, std::size_t{1} << 40}) {
      const auto launches = stats<G>().kernel_launches;
      try {
        B::argmax(src, 1, len, inner, dst);
        B::synchronize();
        ADD_FAILURE() << "argmax over " << len << " elements was not refused";
      } catch (const size_limit_error& e) {
        const std::string m = e.what();
        EXPECT_TRUE(contains(m, "argmax")) << m;
        EXPECT_TRUE(contains(m, std::to_string(len))) << m;
        EXPECT_TRUE(contains(m, std::to_string(lim))) << m;
        EXPECT_EQ(e.size(), len);
        EXPECT_EQ(e.limit(), lim);
      }
      EXPECT_EQ(stats<G>().kernel_launches, launches);
    }
  }
  Tensor<float, C> h{1.f, 5.f, 2.f};
  EXPECT_EQ(to<C>(argmax(to<G>(h), 0)).item(), 1);
}

}  // namespace
