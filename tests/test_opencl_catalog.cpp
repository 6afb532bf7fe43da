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

// A kernel name found in the sources; `prefix` when the name is completed by token
// pasting (locus_reduce_rows_##NAME), so that only its beginning is known.
struct found_kernel {
  std::string name;
  std::string file;
  bool prefix = false;
};

bool ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Every kernel definition in `text`: the token __kernel, then (attributes, no ';', '{' or
// '}') the token void, the name, and an optional "##" that pastes more onto it.
void scan_kernels(const std::string& text, const std::string& file,
                  std::vector<found_kernel>& out) {
  const std::string key = "__kernel", v = "void";
  auto token_at = [&](std::size_t at, const std::string& t) {
    return text.compare(at, t.size(), t) == 0 && (at == 0 || !ident_char(text[at - 1])) &&
           (at + t.size() >= text.size() || !ident_char(text[at + t.size()]));
  };
  for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    // No token test before it: in C++ source it may follow an escape such as "\n".
    if (ident_char(text[at + key.size()])) continue;
    std::size_t p = at + key.size();
    while (p < text.size() && !token_at(p, v) && text[p] != ';' && text[p] != '{' && text[p] != '}')
      ++p;
    if (p >= text.size() || !token_at(p, v)) continue;
    p += v.size();
    while (p < text.size() && (text[p] == ' ' || text[p] == '\n' || text[p] == '\t')) ++p;
    const std::size_t b = p;
    while (p < text.size() && ident_char(text[p])) ++p;
    if (p == b) continue;
    found_kernel k{text.substr(b, p - b), file, false};
    while (p < text.size() && text[p] == ' ') ++p;
    k.prefix = text.compare(p, 2, "##") == 0;
    out.push_back(k);
  }
}

// Every kernel defined in the library's headers.
std::vector<found_kernel> kernels_in_sources() {
  const fs::path root = fs::path(LOCUS_SOURCE_DIR) / "include" / "locus";
  std::vector<found_kernel> out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    scan_kernels(text, fs::relative(entry.path(), root).string(), out);
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
