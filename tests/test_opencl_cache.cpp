// The kernel program cache: in-memory hits, the opt-in on-disk binary cache, and silent
// recovery from corrupt or truncated entries.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <locus/locus.hpp>

extern char** environ;

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

// Runs this test binary again as a fresh process, with only `test` selected, in the
// environment of this one less LOCUS_KERNEL_CACHE_DIR (and gtest's own variables), plus
// LOCUS_TEST_FRESH_PROCESS=1. Returns its exit status; its output goes to *output.
int run_fresh_process(const std::string& test, std::string* output) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string v = *e;
    if (v.rfind("LOCUS_KERNEL_CACHE_DIR=", 0) == 0 || v.rfind("GTEST_", 0) == 0) continue;
    env.push_back(v);
  }
  env.push_back("LOCUS_TEST_FRESH_PROCESS=1");
  std::vector<char*> envp;
  for (auto& v : env) envp.push_back(v.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe", filter = "--gtest_filter=" + test;
  char* argv[] = {exe.data(), filter.data(), nullptr};
  const std::string log =
      (fs::temp_directory_path() / ("locus_fresh_process_" + std::to_string(::getpid()) + ".log"))
          .string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    *output = "posix_spawn failed: " + std::to_string(rc);
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::error_code ec;
  fs::remove(log, ec);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The default, as a program that sets nothing gets it: checked in a fresh process, since
// in this one other tests have called set_kernel_cache_dir() already.
TEST(OpenCLCache, DiskCacheIsOffByDefault) {
  if (std::getenv("LOCUS_TEST_FRESH_PROCESS")) {
    // The fresh process: no LOCUS_KERNEL_CACHE_DIR and no API call before this point.
    ASSERT_EQ(std::getenv("LOCUS_KERNEL_CACHE_DIR"), nullptr);
    EXPECT_EQ(opencl::kernel_cache_dir(), "");
    const ocl::program_source src(
        "default_cache_probe",
        "// " + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) +
            "\n__kernel void twice(__global float* x) { x[get_global_id(0)] *= 2.0f; }\n",
        "-cl-std=CL1.2");
    auto& dc = backend_for<G>::ctx();  // opens the device: it builds a program already
    EXPECT_EQ(dc.programs->disk_path(src), "");
    {
      std::lock_guard lk(dc.mutex);
      (void)dc.programs->kernel(src, "twice");
    }
    Tensor<float, G> t = Tensor<float, G>::full({8}, 2.f) * 3.f;
    EXPECT_EQ(to<C>(t)(7), 6.f);
    // Nothing in this whole process touched a disk cache.
    const auto st = opencl::kernel_cache_info<G>();
    EXPECT_GE(st.source_builds, 3u);
    EXPECT_EQ(st.disk_writes, 0u);
    EXPECT_EQ(st.disk_hits, 0u);
    EXPECT_EQ(st.disk_rejected, 0u);
    return;
  }
  std::string out;
  const int status = run_fresh_process("OpenCLCache.DiskCacheIsOffByDefault", &out);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(out.find("[  PASSED  ] 1 test") != std::string::npos) << out;
}

}  // namespace
