// The headline CNN of examples/fashion_mnist_cnn.cpp, timed on real Fashion-MNIST for
// Device<CPU> and Device<GPU> (any OpenCL device; PoCL needs LOCUS_OPENCL_ALLOW_CPU=1):
//
//   Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Flatten -> Dense(10, softmax),
//   Adam, sparse categorical cross-entropy (+ accuracy, as in the example).
//
//   cnn_train_fit/<dev>   items/s: one iteration is model.fit over one epoch of
//                         kFitSteps batches of 32 (shuffled, verbose 0): fit's real
//                         per-step cost, gather of the shuffled batch, running loss and
//                         accuracy sums and the end-of-epoch reads included.
//   cnn_train_step/<dev>  items/s: one iteration is one custom-loop step of 32,
//                         value_and_gradient + optimizer().apply_gradients (the step
//                         without fit's bookkeeping).
//   cnn_infer/<dev>       items/s: model.predict of 256 test images, batch 256.
//   cnn_latency/<dev>     time per iteration: model(x) of one test image, the 10
//                         probabilities on the host at the end (a download on a GPU).
//
// The same four for the residual CNN of examples/residual_cnn.cpp (functional API, Add,
// BatchNormalization, GlobalAveragePooling2D; examples/residual_cnn_model.hpp), named
// cnn_residual_train_fit/<dev>, ...
//
// Times and rates are wall-clock (UseRealTime: the CPU backend runs on LOCUS_NUM_THREADS
// threads, all cores by default); the CPU column is the whole process's CPU time. A GPU benchmark
// waits for the device at the end of each iteration. Measurement time: --benchmark_min_time
// (default 0.5 s; the comparison script passes more). If the GPU cannot be opened the GPU
// benchmarks are skipped with the error; they never fall back to the CPU.
// bench/run_cnn_comparison.sh compares with PyTorch.
#include <locus/locus.hpp>

#include <benchmark/benchmark.h>

#include "guarded.hpp"

#include "../examples/headline_cnn_model.hpp"
#include "../examples/residual_cnn_model.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace locus;

constexpr std::size_t kTrainBatch = 32;
constexpr std::size_t kFitSteps = 64;  // batches per timed fit() call (2,048 images)
constexpr std::size_t kFitChunks = 8;  // distinct training subsets, used in turn
constexpr std::size_t kInferBatch = 256;
constexpr std::size_t kInferChunks = 8;
constexpr std::size_t kLatencyImages = 64;

const data::fashion_mnist& host_data() {
  static const data::fashion_mnist d = data::load_fashion_mnist();
  return d;
}

using locus_bench::device_label;
using locus_bench::guarded;
using locus_bench::is_gpu;
using locus_bench::wait_for;

// The data, cut once into the pieces the benchmarks use and moved to Dev once.
template <class Dev>
struct device_data {
  std::vector<Tensor<float, Dev>> fit_x;  // kFitChunks x [kFitSteps * 32, 28, 28, 1]
  std::vector<Tensor<std::int32_t, Dev>> fit_y;
  std::vector<Tensor<float, Dev>> infer_x;  // kInferChunks x [256, 28, 28, 1] (test set)
  std::vector<Tensor<float, Dev>> one_x;    // kLatencyImages x [1, 28, 28, 1] (test set)

  device_data() {
    const auto& d = host_data();
    const std::size_t n = kFitSteps * kTrainBatch;
    for (std::size_t c = 0; c < kFitChunks; ++c) {
      fit_x.push_back(to<Dev>(d.train_images.slice(c * n, (c + 1) * n)));
      fit_y.push_back(to<Dev>(d.train_labels.slice(c * n, (c + 1) * n)));
    }
    for (std::size_t c = 0; c < kInferChunks; ++c)
      infer_x.push_back(to<Dev>(d.test_images.slice(c * kInferBatch, (c + 1) * kInferBatch)));
    for (std::size_t i = 0; i < kLatencyImages; ++i)
      one_x.push_back(to<Dev>(d.test_images.slice(i, i + 1)));
    wait_for<Dev>();
  }

  // Opened on first use; a failure (no OpenCL device, ...) is rethrown on every call.
  static device_data& get() {
    static const std::unique_ptr<device_data> d = std::make_unique<device_data>();
    return *d;
  }
};

/// The two networks: the headline CNN (a Sequential) and the residual CNN (a Model bound
/// from its functional description).
enum class net { headline, residual };

template <class Dev, net N>
auto make_model() {
  if constexpr (N == net::headline) {
    return std::make_unique<Sequential<Dev>>(headline_example::headline_cnn<Dev>(/*seed=*/42));
  } else {
    auto m = std::make_unique<Model<Dev>>(residual_example::residual_cnn(), /*seed=*/42);
    m->compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
    return m;
  }
}

template <class Dev>
FitOptions<Dev, float, std::int32_t> fit_options(std::size_t iteration) {
  FitOptions<Dev, float, std::int32_t> o;
  o.epochs = 1;
  o.batch_size = kTrainBatch;
  o.shuffle = true;
  o.verbose = 0;
  o.seed = iteration;
  return o;
}

template <class Dev, net N>
void cnn_train_fit(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    auto model = make_model<Dev, N>();
    state.SetLabel(device_label<Dev>());
    // Warm-up: kernels compiled, pools filled, optimizer slots created.
    model->fit(d.fit_x[0].slice(0, 4 * kTrainBatch), d.fit_y[0].slice(0, 4 * kTrainBatch),
               fit_options<Dev>(0));
    std::size_t it = 0;
    for (auto _ : state) {
      const std::size_t c = it % kFitChunks;
      // fit() reads the epoch's loss at its end, so a GPU iteration is complete on return.
      History h = model->fit(d.fit_x[c], d.fit_y[c], fit_options<Dev>(++it));
      benchmark::DoNotOptimize(h);
    }
    state.SetItemsProcessed(
        static_cast<std::int64_t>(state.iterations() * kFitSteps * kTrainBatch));
  });
}

template <class Dev, net N>
void cnn_train_step(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    auto model = make_model<Dev, N>();
    state.SetLabel(device_label<Dev>());
    // Batches cut up front (fit gathers them on the device; cnn_train_fit times that).
    std::vector<Tensor<float, Dev>> xs;
    std::vector<Tensor<std::int32_t, Dev>> ys;
    for (std::size_t s = 0; s < kFitSteps; ++s) {
      xs.push_back(d.fit_x[0].slice(s * kTrainBatch, (s + 1) * kTrainBatch));
      ys.push_back(d.fit_y[0].slice(s * kTrainBatch, (s + 1) * kTrainBatch));
    }
    const LossConfig loss = SparseCategoricalCrossentropy{};
    for (int w = 0; w < 3; ++w) {
      auto r = model->value_and_gradient(xs[0], ys[0], loss);
      model->optimizer().apply_gradients(r.grads, *model);
    }
    wait_for<Dev>();
    std::size_t it = 0;
    for (auto _ : state) {
      const std::size_t s = it++ % kFitSteps;
      auto r = model->value_and_gradient(xs[s], ys[s], loss);
      model->optimizer().apply_gradients(r.grads, *model);
      wait_for<Dev>();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kTrainBatch));
  });
}

template <class Dev, net N>
void cnn_infer(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    auto model = make_model<Dev, N>();
    state.SetLabel(device_label<Dev>());
    for (int w = 0; w < 3; ++w) benchmark::DoNotOptimize(model->predict(d.infer_x[0], kInferBatch));
    wait_for<Dev>();
    std::size_t it = 0;
    for (auto _ : state) {
      auto y = model->predict(d.infer_x[it++ % kInferChunks], kInferBatch);
      wait_for<Dev>();
      benchmark::DoNotOptimize(y);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kInferBatch));
  });
}

template <class Dev, net N>
void cnn_latency(benchmark::State& state) {
  guarded(state, [&] {
    auto& d = device_data<Dev>::get();
    auto model = make_model<Dev, N>();
    state.SetLabel(device_label<Dev>());
    for (int w = 0; w < 10; ++w) benchmark::DoNotOptimize(to<Device<CPU>>((*model)(d.one_x[0])));
    std::size_t it = 0;
    for (auto _ : state) {
      const auto y = (*model)(d.one_x[it++ % kLatencyImages]);
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

template <class Dev, net N>
void register_net(const std::string& prefix, const std::string& dev) {
  benchmark::RegisterBenchmark((prefix + "_train_fit/" + dev).c_str(), cnn_train_fit<Dev, N>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((prefix + "_train_step/" + dev).c_str(), cnn_train_step<Dev, N>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark((prefix + "_infer/" + dev).c_str(), cnn_infer<Dev, N>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark((prefix + "_latency/" + dev).c_str(), cnn_latency<Dev, N>)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
}

template <class Dev>
void register_all(const std::string& dev) {
  register_net<Dev, net::headline>("cnn", dev);
  register_net<Dev, net::residual>("cnn_residual", dev);
}

[[maybe_unused]] const bool registered = [] {
  register_all<Device<CPU>>("cpu");
  register_all<Device<GPU>>("gpu");
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
