// locus::to<> between the host, Device<GPU> and Device<GPU, 1> (PoCL exposes two devices in
// tests), with exact transfer counters; work on a device makes no hidden host transfer.
#include <cstdint>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

using GPU1 = Device<GPU, 1>;

void reset_all() {
  reset_stats<CPUDev>();
  reset_stats<GPUDev>();
  reset_stats<GPU1>();
}

// Expected counters of one device; everything not named is 0.
struct expect_t {
  std::uint64_t h2d_bytes = 0, h2d_calls = 0, d2h_bytes = 0, d2h_calls = 0, d2d_bytes = 0,
                d2d_calls = 0;
};

::testing::AssertionResult counters_are(const transfer_stats& s, const expect_t& e,
                                        bool any_launches = false) {
  if (s.host_to_device_bytes == e.h2d_bytes && s.host_to_device_calls == e.h2d_calls &&
      s.device_to_host_bytes == e.d2h_bytes && s.device_to_host_calls == e.d2h_calls &&
      s.device_to_device_bytes == e.d2d_bytes && s.device_to_device_calls == e.d2d_calls &&
      (any_launches || s.kernel_launches == 0)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "counters h2d " << s.host_to_device_bytes << " B / " << s.host_to_device_calls
         << " calls, d2h " << s.device_to_host_bytes << " B / " << s.device_to_host_calls
         << " calls, d2d " << s.device_to_device_bytes << " B / " << s.device_to_device_calls
         << " calls, launches " << s.kernel_launches << "; expected h2d " << e.h2d_bytes << "/"
         << e.h2d_calls << ", d2h " << e.d2h_bytes << "/" << e.d2h_calls << ", d2d " << e.d2d_bytes
         << "/" << e.d2d_calls << (any_launches ? "" : ", no launches");
}

template <class Dev>
class TransferTest : public ::testing::Test {};
TYPED_TEST_SUITE(TransferTest, TestDevices, DeviceNames);

template <class Dev, class T>
void check_round_trip(const Shape& s, std::uint64_t seed) {
  const auto h = random_host<T>(s, seed, T(-1000), T(1000));
  const std::uint64_t bytes = s.size() * sizeof(T);
  reset_all();
  const auto d = to<Dev>(h);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(d)>, Tensor<T, Dev>>);
  EXPECT_EQ(d.shape(), s);
  if constexpr (HostDevice<Dev>) {
    EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));  // same device: an uncounted copy
  } else {
    EXPECT_TRUE(counters_are(stats<Dev>(), {.h2d_bytes = bytes, .h2d_calls = 1}));
    EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  }
  reset_all();
  const auto back = to<CPUDev>(d);
  if constexpr (!HostDevice<Dev>) {
    EXPECT_TRUE(counters_are(stats<Dev>(), {.d2h_bytes = bytes, .d2h_calls = 1}));
  }
  EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  EXPECT_TRUE(bitwise_equal(back, h));
}

TYPED_TEST(TransferTest, RoundTripIsExactAndCountedPerDirection) {
  using Dev = TypeParam;
  check_round_trip<Dev, float>({3, 5}, 1);
  check_round_trip<Dev, float>({1 << 16}, 2);
  check_round_trip<Dev, double>({7, 3, 2}, 3);
  check_round_trip<Dev, std::int32_t>({129}, 4);
  check_round_trip<Dev, float>(Shape{}, 5);
  // The host copy is independent of the device tensor.
  auto h = Tensor<float, CPUDev>{1.f, 2.f};
  const auto d = to<Dev>(h);
  h(0) = 100.f;
  EXPECT_TRUE(near_ref(d, Ref{1, 2}, 0, 0));
}

TYPED_TEST(TransferTest, ToTheSameDeviceCountsNothing) {
  using Dev = TypeParam;
  const auto d = on<Dev>(random_host<float>({64}, 11));
  reset_all();
  auto same = to<Dev>(d);
  EXPECT_TRUE(counters_are(stats<Dev>(), {}));
  EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  EXPECT_TRUE(bitwise_equal(same, d));
  // A deep copy: changing it leaves the source alone.
  same += 1.f;
  EXPECT_FALSE(bitwise_equal(same, d));
  reset_all();
  const auto moved = to<Dev>(std::move(same));
  EXPECT_TRUE(counters_are(stats<Dev>(), {}));
  EXPECT_EQ(moved.shape(), Shape{64});
}

TYPED_TEST(TransferTest, ExpressionsAreEvaluatedOnTheirDeviceThenCopied) {
  using Dev = TypeParam;
  const auto h = random_host<float>({10, 10}, 21);
  const auto d = on<Dev>(h);
  reset_all();
  const auto r = to<CPUDev>(d * 2.f + 1.f);
  EXPECT_TRUE(near_ref(r, ref(h) * 2.0 + 1.0));
  if constexpr (!HostDevice<Dev>) {
    EXPECT_TRUE(counters_are(stats<Dev>(), {.d2h_bytes = 400, .d2h_calls = 1}, true));
    EXPECT_GE(stats<Dev>().kernel_launches, 1u);
  } else {
    EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  }
}

TYPED_TEST(TransferTest, ToTheSecondGPU) {
  using Dev = TypeParam;
  const auto h = random_host<float>({33, 17}, 31);
  const std::uint64_t bytes = h.size() * sizeof(float);
  const auto d = on<Dev>(h);
  reset_all();
  const auto g1 = to<GPU1>(d);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(g1)>, Tensor<float, GPU1>>);
  if constexpr (HostDevice<Dev>) {
    EXPECT_TRUE(counters_are(stats<GPU1>(), {.h2d_bytes = bytes, .h2d_calls = 1}));
  } else {
    // GPU to GPU: device-to-device on the source, host-to-device on the target.
    EXPECT_TRUE(counters_are(stats<Dev>(), {.d2d_bytes = bytes, .d2d_calls = 1}));
    EXPECT_TRUE(counters_are(stats<GPU1>(), {.h2d_bytes = bytes, .h2d_calls = 1}));
  }
  EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  reset_all();
  const auto back = to<Dev>(g1);
  if constexpr (HostDevice<Dev>) {
    EXPECT_TRUE(counters_are(stats<GPU1>(), {.d2h_bytes = bytes, .d2h_calls = 1}));
  } else {
    EXPECT_TRUE(counters_are(stats<GPU1>(), {.d2d_bytes = bytes, .d2d_calls = 1}));
    EXPECT_TRUE(counters_are(stats<Dev>(), {.h2d_bytes = bytes, .h2d_calls = 1}));
  }
  EXPECT_TRUE(bitwise_equal(back, h));
  EXPECT_TRUE(bitwise_equal(g1, h));
}

// A chain of element-wise ops, reductions, matmul, transpose, reshape, slice and creation on
// one device moves no byte across devices; on an OpenCL device it launches kernels.
TYPED_TEST(TransferTest, DeviceWorkMakesNoHostTransfer) {
  using Dev = TypeParam;
  const auto ha = random_host<float>({32, 48}, 41), hb = random_host<float>({48, 16}, 42);
  const auto a = on<Dev>(ha), b = on<Dev>(hb);
  reset_all();
  Tensor<float, Dev> x = relu(a * 2.f - 0.5f) + sigmoid(a);
  x += Tensor<float, Dev>::ones({48});
  const auto y = matmul(x, b);
  const auto z = matmul(y, y, {true, false});
  const auto s = sum(z, 0) + mean(z, -1, false) * max(z) - min(y);
  const auto am = argmax(y, 1);
  const auto t = transpose(y).reshape({-1}).slice(3, 100);
  const auto r = Tensor<float, Dev>::uniform({97}, 7) * Tensor<float, Dev>::normal({97}, 8);
  Tensor<float, Dev> w = where(greater(t, 0.f), t, r * exp(t));
  const auto c = cast<std::int32_t>(w * 10.f);
  const auto total = sum(eval(c));
  const transfer_stats st = stats<Dev>();
  EXPECT_TRUE(counters_are(st, {}, true)) << "a hidden transfer happened on " << device_name<Dev>();
  EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  if constexpr (HostDevice<Dev>) {
    EXPECT_EQ(st.kernel_launches, 0u);
    EXPECT_TRUE(counters_are(stats<GPUDev>(), {}));
  } else {
    EXPECT_GE(st.kernel_launches, 15u);
    EXPECT_TRUE(counters_are(stats<GPU1>(), {}));
  }
  EXPECT_TRUE(counters_are(stats<GPU1>(), {}));
  // The chain computed the right thing (checked after the counters: this reads results).
  Ref rx = xt::maximum(ref(ha) * 2.0 - 0.5, 0.0) + 1.0 / (1.0 + xt::exp(-ref(ha))) + 1.0;
  EXPECT_TRUE(near_ref(y, ref_matmul(rx, ref(hb)), 1e-5, 1e-4));
  EXPECT_EQ(s.shape(), Shape{16});
  EXPECT_EQ(am.shape(), Shape{32});
  EXPECT_EQ(total.rank(), 0u);
  EXPECT_TRUE(same_values(w, on<OtherDev<Dev>>(host(w))));
}

// Device<GPU, 1> is a device of its own: work there is correct and counted there only.
TEST(SecondGPU, ComputesLikeTheHostAndCountsSeparately) {
  const auto ha = random_host<float>({17, 65}, 51), hb = random_host<float>({65, 9}, 52);
  const auto a = to<GPU1>(ha), b = to<GPU1>(hb);
  reset_all();
  const Tensor<float, GPU1> e = tanh(a) * 3.f + square(a);
  const auto p = matmul(e, b);
  const auto s = sum(p, 1);
  const auto m = argmax(p, 0);
  EXPECT_TRUE(counters_are(stats<GPU1>(), {}, true));
  EXPECT_GE(stats<GPU1>().kernel_launches, 4u);
  EXPECT_TRUE(counters_are(stats<GPUDev>(), {}));
  EXPECT_TRUE(counters_are(stats<CPUDev>(), {}));
  const Ref re = xt::tanh(ref(ha)) * 3.0 + ref(ha) * ref(ha);
  EXPECT_TRUE(near_ref(e, re));
  const Ref rp = ref_matmul(re, ref(hb));
  EXPECT_TRUE(near_ref(p, rp, 1e-5, 1e-3));
  EXPECT_TRUE(near_ref(s, Ref(xt::sum(rp, {1})), 1e-5, 1e-3));
  // Same results as Device<GPU, 0> and the host.
  const Tensor<float, GPUDev> e0 = tanh(to<GPUDev>(ha)) * 3.f + square(to<GPUDev>(ha));
  EXPECT_TRUE(same_values(e, e0));
  EXPECT_TRUE(
      same_values(p, matmul(Tensor<float, CPUDev>(tanh(ha) * 3.f + square(ha)), hb), 1e-5, 1e-4));
  EXPECT_TRUE(same_values(m, argmax(to<GPUDev>(p), 0)));
}

TEST(SecondGPU, RandomNumbersAreTheSameOnBothGPUs) {
  EXPECT_TRUE(bitwise_equal(Tensor<float, GPU1>::uniform({1000}, 9),
                            Tensor<float, GPUDev>::uniform({1000}, 9)));
  EXPECT_TRUE(bitwise_equal(Tensor<float, GPU1>::uniform({1000}, 9),
                            Tensor<float, CPUDev>::uniform({1000}, 9)));
}

}  // namespace
