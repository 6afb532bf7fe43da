// The device memory pool: RAII back to baseline, reuse, the settable limit, and an
// out-of-memory error that leaves the device usable.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using Pool = backend::opencl::memory_pool;

TEST(OpenCLMemory, SizeClassesBoundTheWaste) {
  EXPECT_EQ(Pool::size_class(1), 256u);
  EXPECT_EQ(Pool::size_class(4096), 4096u);
  for (std::size_t b : {4097ul, 10000ul, 1ul << 20, (1ul << 20) + 1, 123456789ul}) {
    const std::size_t c = Pool::size_class(b);
    EXPECT_GE(c, b);
    EXPECT_LE(c, b + b / 4 + 1) << b;
    EXPECT_EQ(Pool::size_class(c), c);  // a class maps to itself
  }
}

TEST(OpenCLMemory, CreatingAndDestroyingTensorsReturnsToBaseline) {
  const auto base = memory_info<G>();
  {
    std::vector<Tensor<float, G>> keep;
    for (int i = 0; i < 1000; ++i) {
      const std::size_t n = 1 + static_cast<std::size_t>(i * 37 % 5000);
      Tensor<float, G> t = Tensor<float, G>::full({n}, 1.f) * 2.f;
      if (i % 10 == 0) keep.push_back(std::move(t));
    }
    EXPECT_GT(memory_info<G>().in_use, base.in_use);
    EXPECT_EQ(memory_info<G>().live_buffers, base.live_buffers + keep.size());
  }
  const auto after = memory_info<G>();
  EXPECT_EQ(after.in_use, base.in_use);
  EXPECT_EQ(after.live_buffers, base.live_buffers);
  EXPECT_GT(after.cached, 0u);  // kept for reuse, not leaked
  EXPECT_EQ(after.device_memory, devices()[opencl::physical_device(0)].global_memory);
  release_cached_memory<G>();
  EXPECT_EQ(memory_info<G>().cached, 0u);
}

TEST(OpenCLMemory, FreedBuffersAreReused) {
  release_cached_memory<G>();
  { Tensor<float, G> t(Shape{10000}); }
  const auto cached = memory_info<G>().cached;
  EXPECT_GE(cached, 40000u);
  { Tensor<float, G> t(Shape{9990}); }  // same size class: served from the cache
  EXPECT_EQ(memory_info<G>().cached, cached);
  EXPECT_GE(memory_info<G>().peak, 40000u);
}

TEST(OpenCLMemory, LimitThrowsOutOfMemoryAndTheDeviceStaysUsable) {
  const auto base = memory_info<G>();
  set_memory_limit<G>(base.in_use + (1u << 20));
  EXPECT_EQ(memory_info<G>().limit, base.in_use + (1u << 20));
  Tensor<float, G> small = Tensor<float, G>::full({1000}, 3.f);
  try {
    Tensor<float, G> big(Shape{4u << 20});  // 16 MiB
    FAIL() << "allocation above the limit succeeded";
  } catch (const out_of_memory_error& e) {
    EXPECT_EQ(e.requested(), (4u << 20) * sizeof(float));
    EXPECT_LT(e.available(), e.requested());
    const std::string m = e.what();
    EXPECT_NE(m.find(std::to_string(e.requested()) + " bytes requested"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(e.available()) + " bytes available"), std::string::npos) << m;
  }
  // Fill the limit with cached buffers: the next allocation releases them first.
  {
    std::vector<Tensor<float, G>> v;
    for (int i = 0; i < 3; ++i) v.emplace_back(Shape{50000});
  }
  EXPECT_NO_THROW((Tensor<float, G>(Shape{200000})));
  // Still usable, and the accounting is intact.
  Tensor<float, G> r = small * 2.f + 1.f;
  EXPECT_EQ(to<C>(r)(999), 7.f);
  set_memory_limit<G>(0);
  EXPECT_EQ(memory_info<G>().limit, memory_info<G>().device_memory);
  Tensor<float, G> big(Shape{4u << 20});
  EXPECT_EQ(big.size(), 4u << 20);
}

TEST(OpenCLMemory, AllocationBeyondTheDeviceIsOutOfMemory) {
  const auto info = memory_info<G>();
  EXPECT_THROW((Tensor<float, G>(Shape{info.device_memory})), out_of_memory_error);
  Tensor<float, G> t = Tensor<float, G>::ones({10}) * 4.f;
  EXPECT_EQ(to<C>(t)(9), 4.f);
}

}  // namespace
