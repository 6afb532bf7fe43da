// The kernel catalog (backend/opencl/catalog.hpp), which locus-doctor and the benchmarks
// build, must cover every OpenCL program the library can build.
//
// Nothing here lists the library's kernels by hand: the library's own sources are the
// reference. Every __kernel defined anywhere under include/locus (raw-string OpenCL C
// and generated code alike) must be a kernel of some catalog program, and each catalog
// entry must list exactly the kernels its built program contains, as the driver reports
// them. A new program source that is not added to the catalog fails the first check.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <locus/backend/opencl/catalog.hpp>
#include <locus/locus.hpp>

#ifndef LOCUS_SOURCE_DIR
#error "LOCUS_SOURCE_DIR must name the source tree (tests/CMakeLists.txt defines it)"
#endif

namespace {

using namespace locus;
using G = Device<GPU>;
namespace ocl = backend::opencl;
namespace fs = std::filesystem;

// A kernel definition found in the sources (`pasted`: only the beginning of its name is
// known) and the file that holds it.
struct found_kernel {
  std::string name;
  std::string file;
  bool prefix = false;
};

// Every kernel defined in the library's headers.
std::vector<found_kernel> kernels_in_sources() {
  const fs::path root = fs::path(LOCUS_SOURCE_DIR) / "include" / "locus";
  std::vector<found_kernel> out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string file = fs::relative(entry.path(), root).string();
    for (auto& k : ocl::detail::kernel_definitions_in(text)) {
      out.push_back({std::move(k.name), file, k.pasted});
    }
  }
  return out;
}

// Builds every catalog program on Device<GPU> and returns, per entry, the kernels the
// driver reports for it.
std::vector<std::vector<std::string>> built_catalog(const std::vector<ocl::catalog_entry>& cat) {
  auto& dc = backend_for<G>::ctx();
  std::lock_guard lk(dc.mutex);
  std::vector<std::vector<std::string>> out;
  for (const auto& e : cat)
    out.push_back(ocl::program_kernel_names(dc.programs->program(e.source)));
  return out;
}

TEST(OpenCLCatalog, EveryKernelTheLibraryDefinesIsInTheCatalog) {
  const auto found = kernels_in_sources();
  const auto cat = ocl::kernel_catalog(backend_for<G>::ctx().info);
  const auto built = built_catalog(cat);
  std::set<std::string> in_catalog;
  for (std::size_t i = 0; i < cat.size(); ++i) {
    in_catalog.insert(cat[i].kernels.begin(), cat[i].kernels.end());
    in_catalog.insert(built[i].begin(), built[i].end());
  }
  for (const auto& k : found) {
    const bool covered =
        k.prefix ? std::any_of(in_catalog.begin(), in_catalog.end(),
                               [&](const std::string& c) { return c.rfind(k.name, 0) == 0; })
                 : in_catalog.count(k.name) > 0;
    EXPECT_TRUE(covered) << "kernel " << k.name << (k.prefix ? "..." : "") << " (defined in "
                         << k.file << ") is in no program of kernel_catalog(): add its program "
                         << "to include/locus/backend/opencl/catalog.hpp";
  }
  // And the other way round, which also proves the source scan works: every catalog
  // kernel is one the scan found.
  for (const auto& c : in_catalog) {
    const bool seen = std::any_of(found.begin(), found.end(), [&](const found_kernel& k) {
      return k.prefix ? c.rfind(k.name, 0) == 0 : c == k.name;
    });
    EXPECT_TRUE(seen) << "catalog kernel " << c << " was not found in the sources";
  }
}

TEST(OpenCLCatalog, EachEntryListsExactlyTheKernelsOfItsProgram) {
  const auto cat = ocl::kernel_catalog(backend_for<G>::ctx().info);
  const auto built = built_catalog(cat);
  ASSERT_EQ(built.size(), cat.size());
  std::set<std::pair<std::string, std::string>> programs;  // (text hash, options): no duplicates
  for (std::size_t i = 0; i < cat.size(); ++i) {
    const std::set<std::string> listed(cat[i].kernels.begin(), cat[i].kernels.end());
    const std::set<std::string> actual(built[i].begin(), built[i].end());
    EXPECT_EQ(listed, actual) << cat[i].source.name;
    EXPECT_TRUE(programs.emplace(std::to_string(cat[i].source.hash), cat[i].source.options).second)
        << cat[i].source.name << " is in the catalog twice";
  }
}

TEST(OpenCLCatalog, EveryCatalogKernelBuilds) {
  auto& dc = backend_for<G>::ctx();
  for (const auto& e : ocl::kernel_catalog(dc.info)) {
    std::lock_guard lk(dc.mutex);
    for (const auto& k : e.kernels) {
      EXPECT_NO_THROW((void)dc.programs->kernel(e.source, k.c_str()))
          << k << " of " << e.source.name;
    }
  }
}

}  // namespace
