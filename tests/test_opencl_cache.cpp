// The kernel program cache: in-memory hits, the opt-in on-disk binary cache, and silent
// recovery from corrupt or truncated entries.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>

#include <unistd.h>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
namespace ocl = backend::opencl;
namespace fs = std::filesystem;

struct OpenCLDiskCache : ::testing::Test {
  fs::path dir;
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("locus_cache_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    opencl::set_kernel_cache_dir(dir.string());
  }
  void TearDown() override {
    opencl::set_kernel_cache_dir("");
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  // A program no other test (or earlier run) has built.
  static ocl::program_source unique_source() {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return ocl::program_source(
        "cache_test_kernel",
        "// " + std::to_string(now) +
            "\n__kernel void twice(__global float* x) { x[get_global_id(0)] *= 2.0f; }\n",
        "-cl-std=CL1.2");
  }
  static ocl::kernel_cache_stats get(const ocl::program_source& src) {
    auto& dc = backend_for<G>::ctx();
    std::lock_guard lk(dc.mutex);
    (void)dc.programs->kernel(src, "twice");
    return dc.programs->stats();
  }
  static void forget() {
    auto& dc = backend_for<G>::ctx();
    std::lock_guard lk(dc.mutex);
    dc.programs->clear();
  }
};

TEST_F(OpenCLDiskCache, SecondLookupIsAMemoryHit) {
  const auto src = unique_source();
  const auto s1 = get(src);
  const auto s2 = get(src);
  EXPECT_EQ(s2.memory_hits, s1.memory_hits + 1);
  EXPECT_EQ(s2.source_builds, s1.source_builds);
}

TEST_F(OpenCLDiskCache, FirstBuildWritesAndNextProcessLoads) {
  const auto src = unique_source();
  const auto s0 = backend_for<G>::ctx().programs->stats();
  const auto s1 = get(src);
  EXPECT_EQ(s1.source_builds, s0.source_builds + 1);
  EXPECT_EQ(s1.disk_writes, s0.disk_writes + 1);
  const std::string path = backend_for<G>::ctx().programs->disk_path(src);
  ASSERT_TRUE(fs::exists(path)) << path;
  EXPECT_EQ(fs::path(path).parent_path(), dir);
  forget();  // as if a new process started
  const auto s2 = get(src);
  EXPECT_EQ(s2.disk_hits, s1.disk_hits + 1);
  EXPECT_EQ(s2.source_builds, s1.source_builds);
  // The key covers the options: other options, other entry.
  ocl::program_source other(src.name, src.text, "-cl-std=CL1.2 -DX=1");
  EXPECT_NE(backend_for<G>::ctx().programs->disk_path(other), path);
}

void corrupt_and_check(
    const ocl::program_source& src, const std::function<void(const std::string&)>& damage,
    const std::function<ocl::kernel_cache_stats(const ocl::program_source&)>& get,
    const std::function<void()>& forget) {
  const auto s1 = get(src);
  const std::string path = backend_for<G>::ctx().programs->disk_path(src);
  ASSERT_TRUE(fs::exists(path));
  damage(path);
  forget();
  const auto s2 = get(src);  // must neither crash nor throw
  EXPECT_EQ(s2.disk_rejected, s1.disk_rejected + 1);
  EXPECT_EQ(s2.source_builds, s1.source_builds + 1);
  EXPECT_EQ(s2.disk_writes, s1.disk_writes + 1);  // rewritten
  forget();
  const auto s3 = get(src);
  EXPECT_EQ(s3.disk_hits, s2.disk_hits + 1);  // and good again
}

TEST_F(OpenCLDiskCache, CorruptEntryIsRebuiltAndRewritten) {
  corrupt_and_check(
      unique_source(),
      [](const std::string& p) {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(fs::file_size(p) / 2));
        const char junk[16] = "garbage-garbage";
        f.write(junk, sizeof junk);
      },
      get, forget);
}

TEST_F(OpenCLDiskCache, TruncatedEntryIsRebuiltAndRewritten) {
  corrupt_and_check(
      unique_source(), [](const std::string& p) { fs::resize_file(p, fs::file_size(p) / 3); }, get,
      forget);
}

TEST_F(OpenCLDiskCache, EmptyOrForeignEntryIsRebuilt) {
  corrupt_and_check(
      unique_source(),
      [](const std::string& p) { std::ofstream(p, std::ios::trunc) << "not a binary"; }, get,
      forget);
}

TEST_F(OpenCLDiskCache, LibraryKernelsComeBackFromDisk) {
  opencl::clear_kernel_memory_cache();
  Tensor<float, G> a = Tensor<float, G>::full({100}, 2.f);
  Tensor<float, G> b = a * a + 1.f;
  const auto before = opencl::kernel_cache_info<G>();
  EXPECT_GE(before.disk_writes, 2u);
  opencl::clear_kernel_memory_cache();
  Tensor<float, G> c = Tensor<float, G>::full({100}, 2.f);
  Tensor<float, G> d = c * c + 1.f;
  const auto after = opencl::kernel_cache_info<G>();
  EXPECT_EQ(after.disk_hits, before.disk_hits + 2);
  EXPECT_EQ(after.source_builds, before.source_builds);
  EXPECT_EQ(to<C>(d)(99), 5.f);
}

TEST(OpenCLCache, DiskCacheIsOffByDefault) {
  opencl::set_kernel_cache_dir("");
  EXPECT_EQ(opencl::kernel_cache_dir(), "");
  const ocl::program_source src("x", "__kernel void twice(__global float* x) {}", "");
  EXPECT_EQ(backend_for<G>::ctx().programs->disk_path(src), "");
}

}  // namespace
