// Data pipelines: (1) the input pipeline alone, next to tf.data and PyTorch's DataLoader
// (bench/run_pipeline_comparison.sh runs all three, alternating); (2) training the headline
// CNN from a dataset with prefetch against training on data already on the device, on
// both devices.
//
//   pipeline_throughput: one pass over the Fashion-MNIST training set as IDX files read
//     from disk (plain files from $LOCUS_PIPELINE_DATA_DIR, else the gzip files of the
//     system's data set), shuffled with a buffer of 60,000, batches of 256, normalised by
//     a map on 2 threads, prefetched 2 deep: the peers' exact work. Counter images_per_second.
//   train_resident/<dev>: fit of the headline CNN for one epoch (batch 32) over the
//     training images (all 60,000 on the CPU, the first 4,096 on the OpenCL device),
//     uploaded to the device once before (shuffled each epoch on the device).
//   train_pipeline/<dev>: the same epoch from a dataset streamed from the IDX file (take,
//     shuffle in a window of 10,000, batch 32) moved to the device and prefetched 2 deep,
//     as examples/fashion_mnist_cnn.cpp trains: every epoch reads, inflates and decodes.
//   train_pipeline_cached/<dev>: the same with cache() after the source: decoded once (in
//     the warm-up), then shuffled, batched, moved and prefetched from memory.
// The ratio train_pipeline / train_resident is the cost of feeding from a pipeline.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <locus/locus.hpp>

#include "../examples/headline_cnn_model.hpp"

using namespace locus;

namespace {

// Images per epoch: the whole training set on the CPU (the headline example's epoch), the
// first 4,096 on the OpenCL device (PoCL here: an epoch of 60,000 takes 25 s).
template <class Dev>
constexpr std::size_t train_images = HostDevice<Dev> ? 60000 : 4096;

std::filesystem::path pipeline_dir() {
  const char* env = std::getenv("LOCUS_PIPELINE_DATA_DIR");
  return env && *env ? std::filesystem::path(env) : data::default_fashion_mnist_dir();
}

void pipeline_throughput(benchmark::State& state) {
  const auto ds = data::fashion_mnist_dataset("train", pipeline_dir())
                      .shuffle(60000, /*seed=*/42)
                      .batch(256)
                      .map(data::Normalize(0.2860, 0.3530), {.num_parallel_calls = 2})
                      .prefetch(2);
  std::size_t images = 0;
  std::uint64_t epoch = 0;
  for (auto _ : state) {
    float touched = 0;
    for (auto& b : ds.open(epoch++)) {
      touched += b.x.data()[0];
      images += b.x.shape()[0];
    }
    benchmark::DoNotOptimize(touched);
  }
  state.counters["images_per_second"] =
      benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
}

template <class Dev>
void train_resident(benchmark::State& state) {
  const auto data =
      data::load_fashion_mnist(data::default_fashion_mnist_dir(), train_images<Dev>, 1);
  const auto x = to<Dev>(data.train_images);
  const auto y = to<Dev>(data.train_labels);
  auto model = headline_example::headline_cnn<Dev>(42);
  model.fit(x, y, {.epochs = 1, .batch_size = 32, .verbose = 0});  // warm-up
  for (auto _ : state) model.fit(x, y, {.epochs = 1, .batch_size = 32, .verbose = 0});
  state.counters["images_per_second"] = benchmark::Counter(
      static_cast<double>(train_images<Dev> * state.iterations()), benchmark::Counter::kIsRate);
}

// One epoch of the headline CNN from a dataset of the IDX file (its first
// train_images<Dev> records, shuffled in a window of 10,000, batches of 32), moved to Dev and
// prefetched 2 deep; cached: decoded once (by the warm-up) and replayed from memory.
template <class Dev, bool Cached>
void train_pipeline(benchmark::State& state) {
  auto source = data::fashion_mnist_dataset("train").take(train_images<Dev>);
  if (Cached) source = source.cache();
  const auto ds = to<Dev>(source.shuffle(10000, /*seed=*/1).batch(32)).prefetch(2);
  auto model = headline_example::headline_cnn<Dev>(42);
  model.fit(ds, {.epochs = 1, .verbose = 0});  // warm-up
  for (auto _ : state) model.fit(ds, {.epochs = 1, .verbose = 0});
  state.counters["images_per_second"] = benchmark::Counter(
      static_cast<double>(train_images<Dev> * state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(pipeline_throughput)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(train_resident<Device<CPU>>)
    ->Name("train_resident/cpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(train_pipeline<Device<CPU>, false>)
    ->Name("train_pipeline/cpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(train_pipeline<Device<CPU>, true>)
    ->Name("train_pipeline_cached/cpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(train_resident<Device<GPU>>)
    ->Name("train_resident/gpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(train_pipeline<Device<GPU>, false>)
    ->Name("train_pipeline/gpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(train_pipeline<Device<GPU>, true>)
    ->Name("train_pipeline_cached/gpu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
