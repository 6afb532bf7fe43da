// Inference plans (float) and int8 quantization: results against Model::predict, the
// lowering of every layer kind it folds or fuses, refusals, allocation-free and concurrent
// calls, the three int8 kernels against each other, calibration, and the accuracy bound of
// int8 on a trained CNN. Typed tests run on the host and on PoCL.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "../examples/headline_cnn_model.hpp"
#include "../examples/residual_cnn_model.hpp"
#include "test_devices.hpp"

// ---- allocation counting -------------------------------------------------------------------
// Allocations of the program are counted while `counting` is set (any thread: the CPU plan's
// pool workers included). Normally by replacing operator new, which counts what C++ code
// allocates; under AddressSanitizer, whose runtime owns operator new (a replacement would
// pair its allocations with the sanitizer's frees in the OpenCL driver's libraries), by the
// sanitizer's allocation hook, which also sees the driver's own mallocs.
#if defined(__SANITIZE_ADDRESS__)
#define LOCUS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOCUS_TEST_ASAN 1
#endif
#endif
#ifndef LOCUS_TEST_ASAN
#define LOCUS_TEST_ASAN 0
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> allocations{0};
void count_one() {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if LOCUS_TEST_ASAN
// <sanitizer/allocator_interface.h>'s declaration (GCC does not ship the header).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void on_malloc(const volatile void*, std::size_t) {
  count_one();
}
void on_free(const volatile void*) {}
[[maybe_unused]] const int hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
namespace {
void* counted(std::size_t n, std::size_t align) {
  count_one();
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

// The replacements pair operator new with free(), which is what they allocate with; GCC
// cannot see that through the replacement and warns at every delete.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  return counted(n, 0);
}
void* operator new[](std::size_t n) {
  return counted(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace {

using namespace locus;
using namespace locus_test;
using inference::StepKind;

template <class Dev>
class Inference : public ::testing::Test {};
TYPED_TEST_SUITE(Inference, TestDevices, DeviceNames);

Tensor<float, CPUDev> images(std::size_t n, std::uint64_t seed) {
  return Tensor<float, CPUDev>::uniform({n, 28, 28, 1}, seed);
}

double max_diff(const Tensor<float, CPUDev>& a, const Tensor<float, CPUDev>& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
  return m;
}

bool bitwise_equal(const Tensor<float, CPUDev>& a, const Tensor<float, CPUDev>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Non-trivial batch-normalisation statistics and scales (a fresh model's fold is the identity).
template <class Dev>
void randomise_normalisation(Model<Dev>& m, std::uint64_t seed) {
  for (auto& [name, t] : m.weights()) {
    const bool bn = name.find("batch_normalization") != std::string::npos;
    if (!bn) continue;
    const bool positive = name.ends_with("moving_variance") || name.ends_with("gamma");
    *t = to<Dev>(Tensor<float, CPUDev>::uniform(t->shape(), seed++, positive ? 0.5f : -0.5f,
                                                positive ? 2.0f : 0.5f));
  }
}

std::vector<StepKind> kinds(const inference::Graph& g) {
  std::vector<StepKind> k;
  for (const auto& s : g.steps) k.push_back(s.kind);
  return k;
}

// ---- float plans ---------------------------------------------------------------------------

TYPED_TEST(Inference, HeadlineMatchesPredictInPasses) {
  using Dev = TypeParam;
  auto model = headline_example::headline_cnn<Dev>(3);
  // 37 samples through buffers for 16: three passes on a device, micro-batches on the host.
  const InferencePlan<Dev> plan(model, {.max_batch = 16});
  EXPECT_EQ(kinds(plan.graph()),
            (std::vector<StepKind>{StepKind::conv2d, StepKind::pool, StepKind::dense}));
  EXPECT_TRUE(plan.graph().steps[2].softmax);
  const auto x = on<Dev>(images(37, 1));
  EXPECT_LE(max_diff(host(plan.predict(x)), host(model.predict(x))), 1e-5);
}

TYPED_TEST(Inference, ResidualFoldsBatchNormAndMatchesPredict) {
  using Dev = TypeParam;
  Model<Dev> model(residual_example::residual_cnn(), 5);
  randomise_normalisation(model, 100);
  const InferencePlan<Dev> plan(model);
  // 9 convolutions with their batch normalisations folded, 3 adds with their relus, 2 pools,
  // the global pooling and the dense head: 16 steps for 28 layers.
  EXPECT_EQ(plan.graph().steps.size(), 16u);
  for (const auto& s : plan.graph().steps) {
    if (s.kind == StepKind::conv2d) {
      EXPECT_NE(s.name.find("batch_normalization"), std::string::npos);
    }
  }
  const auto x = on<Dev>(images(20, 2));
  EXPECT_LE(max_diff(host(plan.predict(x)), host(model.predict(x))), 1e-5);
}

/// Every lowering: a standalone normalisation (affine), activations that cannot move into
/// their producer, average pooling with 'same' padding and strides, global max pooling, a
/// three-way add, reshapes and dropout (no steps), a softmax layer.
nn::Functional every_kind() {
  const Input x({12, 12, 3});
  auto a = Conv2D(8, {3, 3}, Activation::relu, {1, 1}, Padding::same)(x);
  auto b = BatchNormalization()(a);        // after a relu: not foldable, an affine step
  auto c = layers::Activation("tanh")(b);  // moves into the affine step
  auto p = AveragePooling2D({3, 3}, {2, 2}, Padding::same)(c);
  auto q = layers::Activation("sigmoid")(p);  // after pooling: a step of its own
  auto d = Conv2D(8, {1, 1})(q);
  auto e = Conv2D(8, {1, 1}, Activation::relu)(q);
  auto f = Add()({d, e, q});
  auto g = GlobalMaxPooling2D()(f);
  auto h = Dropout(0.5)(Reshape({2, 4})(g));
  auto i = Dense(6)(Flatten()(h));
  auto j = BatchNormalization()(i);  // folded into the dense step
  return nn::Functional(x, Softmax()(ReLU()(j)), "every_kind");
}

TYPED_TEST(Inference, LowersEveryLayerKindAndMatchesPredict) {
  using Dev = TypeParam;
  Model<Dev> model(every_kind(), 9);
  randomise_normalisation(model, 200);
  const InferencePlan<Dev> plan(model, {.max_batch = 8});
  EXPECT_EQ(kinds(plan.graph()),
            (std::vector<StepKind>{StepKind::conv2d, StepKind::affine, StepKind::pool,
                                   StepKind::activation, StepKind::conv2d, StepKind::conv2d,
                                   StepKind::add, StepKind::global_pool, StepKind::dense}));
  const auto& dense = plan.graph().steps.back();
  EXPECT_EQ(dense.act, gemm_activation::relu);
  EXPECT_TRUE(dense.softmax);
  const auto x = on<Dev>(Tensor<float, CPUDev>::uniform({11, 12, 12, 3}, 4, -1.0f, 1.0f));
  EXPECT_LE(max_diff(host(plan.predict(x)), host(model.predict(x))), 1e-5);
}

TYPED_TEST(Inference, RefusesLayersWithoutLowering) {
  using Dev = TypeParam;
  const Input x({4, 6});
  Model<Dev> model(nn::Functional(x, Dense(3)(LayerNormalization().named("norm")(x))), 1);
  try {
    const InferencePlan<Dev> plan(model);
    FAIL() << "a LayerNormalization was lowered";
  } catch (const unsupported_error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'norm'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Model::predict"), std::string::npos) << e.what();
  }
}

TYPED_TEST(Inference, ChecksShapesAndTakesEmptyBatches) {
  using Dev = TypeParam;
  auto model = headline_example::headline_cnn<Dev>(3);
  const InferencePlan<Dev> plan(model);
  EXPECT_THROW((void)plan.predict(on<Dev>(Tensor<float, CPUDev>::zeros({2, 28, 27, 1}))),
               shape_error);
  Tensor<float, Dev> wrong(uninitialized, {3, 10});
  EXPECT_THROW(plan.predict_into(on<Dev>(images(2, 1)), wrong), shape_error);
  const auto empty = plan.predict(on<Dev>(Tensor<float, CPUDev>::zeros({0, 28, 28, 1})));
  EXPECT_EQ(empty.shape(), (Shape{0, 10}));
}

/// Allocations (host operator new; device buffers) made by `f`.
template <class Dev, class F>
std::pair<std::size_t, std::size_t> allocations_of(F&& f) {
  std::size_t device = 0;
  if constexpr (!HostDevice<Dev>) device = locus::memory_info<Dev>().allocations;
  allocations.store(0);
  counting.store(true);
  f();
  counting.store(false);
  if constexpr (!HostDevice<Dev>) {
    backend_for<Dev>::synchronize();
    device = locus::memory_info<Dev>().allocations - device;
  }
  return {allocations.load(), device};
}

TYPED_TEST(Inference, PredictIntoAllocatesNothing) {
  using Dev = TypeParam;
  Model<Dev> model(residual_example::residual_cnn(), 5);
  const InferencePlan<Dev> plan(model, {.max_batch = 8});
  const auto x = on<Dev>(images(19, 3));  // passes and a partial last one
  Tensor<float, Dev> y(uninitialized, {19, 10});
  plan.predict_into(x, y);  // first call: the device compiles its programs
  const auto [host_allocs, device_allocs] = allocations_of<Dev>([&] {
    for (int i = 0; i < 3; ++i) plan.predict_into(x, y);
  });
  // Under AddressSanitizer the count includes the OpenCL driver's own mallocs (PoCL
  // allocates per enqueued command), so it says nothing about locus on a device there.
  if (HostDevice<Dev> || !LOCUS_TEST_ASAN) {
    EXPECT_EQ(host_allocs, 0u);
  }
  EXPECT_EQ(device_allocs, 0u);
  // The counter sees allocations at all (a predict allocates its result).
  EXPECT_GT((allocations_of<Dev>([&] { (void)plan.predict(x); }).first +
             allocations_of<Dev>([&] { (void)plan.predict(x); }).second),
            0u);

  const auto cal = calibrate(plan, images(16, 4));
  const QuantizedPlan<Dev> q = quantize(plan, cal);
  q.predict_into(x, y);
  const auto [qh, qd] = allocations_of<Dev>([&] {
    for (int i = 0; i < 3; ++i) q.predict_into(x, y);
  });
  if (HostDevice<Dev> || !LOCUS_TEST_ASAN) {
    EXPECT_EQ(qh, 0u);
  }
  EXPECT_EQ(qd, 0u);
}

TYPED_TEST(Inference, ConcurrentCallsGiveTheSingleThreadedResults) {
  using Dev = TypeParam;
  auto model = headline_example::headline_cnn<Dev>(3);
  const InferencePlan<Dev> plan(model, {.max_batch = 32});
  const auto q = quantize(plan, calibrate(plan, images(32, 9)));
  constexpr int threads = 4, calls = 6;
  std::vector<Tensor<float, Dev>> xs;
  std::vector<Tensor<float, CPUDev>> want, want_q;
  for (int t = 0; t < threads; ++t) {
    xs.push_back(on<Dev>(images(40, 50 + t)));
    want.push_back(host(plan.predict(xs.back())));
    want_q.push_back(host(q.predict(xs.back())));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Tensor<float, Dev> y(uninitialized, {40, 10}), yq(uninitialized, {40, 10});
      for (int c = 0; c < calls; ++c) {
        plan.predict_into(xs[t], y);
        q.predict_into(xs[t], yq);
        if (!bitwise_equal(host(y), want[t]) || !bitwise_equal(host(yq), want_q[t])) ++mismatches;
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- int8 ----------------------------------------------------------------------------------

TEST(InferenceInt8, KernelsAgreeBitwise) {
  Model<CPUDev> residual(residual_example::residual_cnn(), 5);
  randomise_normalisation(residual, 300);
  auto headline = headline_example::headline_cnn<CPUDev>(3);
  const auto x = images(23, 6);
  for (Model<CPUDev>* m : {static_cast<Model<CPUDev>*>(&headline), &residual}) {
    const InferencePlan<CPUDev> plan(*m);
    const auto cal = calibrate(plan, images(64, 7));
    const auto reference = quantize(plan, cal, {.kernel = Int8Kernel::portable}).predict(x);
    for (auto k : {Int8Kernel::amx, Int8Kernel::avx512_vnni, Int8Kernel::avx2}) {
      if (!inference::cpu::int8_kernel_available(k)) continue;
      const auto q = quantize(plan, cal, {.kernel = k});
      EXPECT_EQ(q.kernel(), k);
      EXPECT_TRUE(bitwise_equal(q.predict(x), reference)) << inference::cpu::to_string(k);
    }
  }
}

TEST(InferenceInt8, AutomaticPicksTheBestKernelAndRefusesMissingOnes) {
  using inference::cpu::int8_kernel_available;
  using inference::cpu::resolve_int8_kernel;
  const Int8Kernel best = int8_kernel_available(Int8Kernel::amx)           ? Int8Kernel::amx
                          : int8_kernel_available(Int8Kernel::avx512_vnni) ? Int8Kernel::avx512_vnni
                          : int8_kernel_available(Int8Kernel::avx2)        ? Int8Kernel::avx2
                                                                           : Int8Kernel::portable;
  EXPECT_EQ(resolve_int8_kernel(Int8Kernel::automatic), best);
  for (auto k :
       {Int8Kernel::amx, Int8Kernel::avx512_vnni, Int8Kernel::avx2, Int8Kernel::portable}) {
    if (int8_kernel_available(k)) {
      EXPECT_EQ(resolve_int8_kernel(k), k);
    } else {
      EXPECT_THROW(resolve_int8_kernel(k), unsupported_error);
    }
  }
}

/// The same quantization on the device (OpenCL kernels, the pooling a step of its own) and
/// on the host (the headline's convolution and pooling fused): the residual CNN and the
/// headline CNN.
TYPED_TEST(Inference, Int8OnTheDeviceMatchesTheHost) {
  using Dev = TypeParam;
  Model<Dev> residual(residual_example::residual_cnn(), 5);
  randomise_normalisation(residual, 400);
  auto headline = headline_example::headline_cnn<Dev>(3);
  for (Model<Dev>* model : {&residual, static_cast<Model<Dev>*>(&headline)}) {
    const InferencePlan<Dev> plan(*model, {.max_batch = 8});
    const auto cal = calibrate(plan, images(32, 8));
    const auto x = images(13, 10);
    const auto on_device = host(quantize(plan, cal).predict(on<Dev>(x)));
    const InferencePlan<CPUDev> host_plan(to<CPUDev>(*model));
    const auto on_host = quantize(host_plan, cal).predict(x);
    EXPECT_LE(max_diff(on_device, on_host), 1e-3);
    // and close to float (random weights: outputs near uniform, so compare values).
    EXPECT_LE(max_diff(on_host, host_plan.predict(x)), 5e-2);
  }
}

TEST(InferenceInt8, CalibrationRanges) {
  auto model = headline_example::headline_cnn<CPUDev>(3);
  const InferencePlan<CPUDev> plan(model);
  auto x = images(40, 11);
  x.data()[5] = 3.0f;  // one outlier in the input
  const auto mm = calibrate(plan, x, {.method = CalibrationMethod::min_max});
  const std::size_t in = plan.graph().input;
  EXPECT_DOUBLE_EQ(mm.hi[in], 3.0);
  EXPECT_GE(mm.lo[in], 0.0);
  const auto pc = calibrate(plan, x, {.method = CalibrationMethod::percentile, .percentile = 99.9});
  EXPECT_LT(pc.hi[in], 1.01);  // the outlier is clipped
  for (std::size_t v = 0; v < mm.lo.size(); ++v) {
    if (std::isnan(mm.lo[v])) continue;
    EXPECT_GE(pc.lo[v], mm.lo[v]);
    EXPECT_LE(pc.hi[v], mm.hi[v]);
  }
  const auto all = calibrate(plan, x, {.method = CalibrationMethod::percentile, .percentile = 100});
  EXPECT_DOUBLE_EQ(all.hi[in], 3.0);
  // uint8 parameters contain 0 exactly.
  const QuantParams p = QuantParams::from_range(0.5, 2.0);
  EXPECT_EQ(p.zero_point, 0);
  EXPECT_FLOAT_EQ(p.scale, 2.0f / 255.0f);
  const QuantParams s = QuantParams::from_range(-1.0, 1.0);
  EXPECT_NEAR(s.scale * (0 - s.zero_point), -1.0, s.scale);
}

TEST(InferenceInt8, RefusesBadCalibration) {
  auto model = headline_example::headline_cnn<CPUDev>(3);
  const InferencePlan<CPUDev> plan(model);
  EXPECT_THROW(calibrate(plan, images(0, 1)), argument_error);
  auto bad = images(4, 1);
  bad.data()[7] = std::nanf("");
  EXPECT_THROW(calibrate(plan, bad), argument_error);
  EXPECT_THROW(
      calibrate(plan, images(4, 1), {.method = CalibrationMethod::percentile, .percentile = 0.0}),
      argument_error);
  EXPECT_THROW(calibrate(plan, Tensor<float, CPUDev>::zeros({4, 28, 28, 2})), shape_error);
  Model<CPUDev> other(residual_example::residual_cnn(), 1);
  const InferencePlan<CPUDev> other_plan(other);
  EXPECT_THROW((void)quantize(plan, calibrate(other_plan, images(4, 1))), argument_error);
}

/// fp32 and int8 test accuracy of the headline CNN trained on part of Fashion-MNIST: the
/// bound of the issue (at most 0.5 points lost), on 1,000 test images.
TEST(InferenceInt8, HeadlineAccuracyWithinHalfAPoint) {
  const auto data = data::load_fashion_mnist();
  auto model = headline_example::headline_cnn<CPUDev>(42);
  model.fit(data.train_images.slice(0, 4096), data.train_labels.slice(0, 4096),
            {.epochs = 1, .verbose = 0});
  const InferencePlan<CPUDev> plan(model);
  const auto q = quantize(plan, calibrate(plan, data.train_images.slice(4096, 4096 + 512)));
  const auto x = data.test_images.slice(0, 1000);
  const auto labels = data.test_labels.slice(0, 1000);
  auto accuracy = [&](const Tensor<float, CPUDev>& p) {
    std::size_t right = 0;
    for (std::size_t i = 0; i < 1000; ++i) {
      const float* r = p.data() + i * 10;
      right += static_cast<std::int32_t>(std::max_element(r, r + 10) - r) == labels.data()[i];
    }
    return static_cast<double>(right) / 1000.0;
  };
  const double fp32 = accuracy(plan.predict(x)), int8 = accuracy(q.predict(x));
  EXPECT_GT(fp32, 0.6);
  EXPECT_LE(fp32 - int8, 0.005) << "fp32 " << fp32 << ", int8 " << int8;
}

}  // namespace
