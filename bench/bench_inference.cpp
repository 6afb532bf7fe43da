// Inference of the two Fashion-MNIST CNNs (the headline cnn of examples/headline_cnn_model.hpp
// and the residual cnn of examples/residual_cnn_model.hpp) three ways, on real test images:
//
//   predict  Model::predict(x, 256): the model's own forward pass (the baseline)
//   fp32     locus::InferencePlan<Dev>(model, {.max_batch = 256}).predict_into(x, y)
//   int8     locus::QuantizedPlan<Dev> (quantize(plan, calibrate(plan, 512 training images),
//            min/max calibration as the ONNX Runtime peer's)).predict_into(x, y)
//
//   inference_<model>_<kind>_<dev>/batch256  items/s: 256 test images per call, 8 distinct
//                                            chunks in turn
//   inference_<model>_<kind>_<dev>/latency   time per call of one test image (64 in turn),
//                                            the 10 probabilities on the host at the end
//
// model: cnn, residual; dev: cpu (Device<CPU>), gpu (Device<GPU>, any OpenCL device; PoCL
// needs LOCUS_OPENCL_ALLOW_CPU=1). The weights are the models' initial
// values (seed 42): the time does not depend on them. Times and rates are wall-clock
// (UseRealTime: the CPU backend runs on LOCUS_NUM_THREADS threads); a GPU benchmark waits
// for the device at the end of each iteration. If the GPU cannot be opened its benchmarks
// are skipped with the error. bench/run_inference_comparison.sh compares the CPU figures
// with ONNX Runtime (bench/onnx_peer.py).
#include <locus/locus.hpp>

#include <benchmark/benchmark.h>

#include "guarded.hpp"

#include "../examples/headline_cnn_model.hpp"
#include "../examples/residual_cnn_model.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace locus;

constexpr std::size_t kBatch = 256;
constexpr std::size_t kChunks = 8;  // distinct test batches, used in turn
constexpr std::size_t kLatencyImages = 64;
constexpr std::size_t kCalibrationImages = 512;  // training images, as the ONNX Runtime peer

const data::fashion_mnist& host_data() {
  static const data::fashion_mnist d = data::load_fashion_mnist(
      data::default_fashion_mnist_dir(), kCalibrationImages, kChunks * kBatch);
  return d;
}

using locus_bench::device_label;
using locus_bench::guarded;
using locus_bench::is_gpu;
using locus_bench::wait_for;

// The test images, cut once and moved to Dev once.
template <class Dev>
struct device_data {
  std::vector<Tensor<float, Dev>> batches;  // kChunks x [256, 28, 28, 1]
  std::vector<Tensor<float, Dev>> ones;     // kLatencyImages x [1, 28, 28, 1]

  device_data() {
    const auto& d = host_data();
    for (std::size_t c = 0; c < kChunks; ++c)
      batches.push_back(to<Dev>(d.test_images.slice(c * kBatch, (c + 1) * kBatch)));
    for (std::size_t i = 0; i < kLatencyImages; ++i)
      ones.push_back(to<Dev>(d.test_images.slice(i, i + 1)));
    wait_for<Dev>();
  }

  // Opened on first use; a failure (no OpenCL device, ...) is rethrown on every call.
  static device_data& get() {
    static const std::unique_ptr<device_data> d = std::make_unique<device_data>();
    return *d;
  }
};

enum class net { cnn, residual };
enum class kind { predict, fp32, int8 };

template <class Dev, net N>
std::unique_ptr<Model<Dev>> make_model() {
  if constexpr (N == net::cnn) {
    return std::make_unique<Sequential<Dev>>(headline_example::headline_cnn<Dev>(/*seed=*/42));
  } else {
    return std::make_unique<Model<Dev>>(residual_example::residual_cnn(), /*seed=*/42);
  }
}

// One way to infer: run(x, y) leaves the outputs of x in y (predict replaces y; the plans
// write into it).
template <class Dev, net N, kind K>
class inferrer {
 public:
  using tensor = Tensor<float, Dev>;

  inferrer() : model_(make_model<Dev, N>()) {
    if constexpr (K != kind::predict) plan_.emplace(*model_, InferenceOptions{.max_batch = kBatch});
    if constexpr (K == kind::int8) {
      quantized_.emplace(quantize(*plan_, calibrate(*plan_, host_data().train_images)));
    }
  }

  void run(const tensor& x, tensor& y) const {
    if constexpr (K == kind::predict) {
      y = model_->predict(x, kBatch);
    } else if constexpr (K == kind::fp32) {
      plan_->predict_into(x, y);
    } else {
      quantized_->predict_into(x, y);
    }
  }

  std::string label() const {
    if constexpr (K == kind::int8 && !is_gpu<Dev>) {
      return device_label<Dev>() + ", int8 kernel " +
             inference::cpu::to_string(quantized_->kernel());
    } else {
      return device_label<Dev>();
    }
  }

 private:
  std::unique_ptr<Model<Dev>> model_;
  std::optional<InferencePlan<Dev>> plan_;
  std::optional<QuantizedPlan<Dev>> quantized_;
};

template <class Dev, net N, kind K>
void batch256(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    const inferrer<Dev, N, K> infer;
    state.SetLabel(infer.label());
    Tensor<float, Dev> y(Shape{kBatch, 10});
    for (int w = 0; w < 3; ++w) infer.run(d.batches[0], y);
    wait_for<Dev>();
    std::size_t it = 0;
    for (auto _ : state) {
      infer.run(d.batches[it++ % kChunks], y);
      wait_for<Dev>();
      benchmark::DoNotOptimize(y);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  });
}

template <class Dev, net N, kind K>
void latency(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    const inferrer<Dev, N, K> infer;
    state.SetLabel(infer.label());
    Tensor<float, Dev> y(Shape{1, 10});
    for (int w = 0; w < 10; ++w) infer.run(d.ones[0], y);
    wait_for<Dev>();
    std::size_t it = 0;
    for (auto _ : state) {
      infer.run(d.ones[it++ % kLatencyImages], y);
      if constexpr (is_gpu<Dev>) {
        const auto host = to<Device<CPU>>(y);  // blocking download: the answer is here
        benchmark::DoNotOptimize(host.data());
      } else {
        benchmark::DoNotOptimize(y.data());
      }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  });
}

template <class Dev, net N, kind K>
void register_kind(const std::string& name) {
  benchmark::RegisterBenchmark((name + "/batch256").c_str(), batch256<Dev, N, K>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark((name + "/latency").c_str(), latency<Dev, N, K>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
}

template <class Dev, net N>
void register_net(const std::string& model, const std::string& dev) {
  register_kind<Dev, N, kind::predict>("inference_" + model + "_predict_" + dev);
  register_kind<Dev, N, kind::fp32>("inference_" + model + "_fp32_" + dev);
  register_kind<Dev, N, kind::int8>("inference_" + model + "_int8_" + dev);
}

[[maybe_unused]] const bool registered = [] {
  register_net<Device<CPU>, net::cnn>("cnn", "cpu");
  register_net<Device<CPU>, net::residual>("residual", "cpu");
  register_net<Device<GPU>, net::cnn>("cnn", "gpu");
  register_net<Device<GPU>, net::residual>("residual", "gpu");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
