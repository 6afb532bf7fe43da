// Data-parallel training of the headline CNN (examples/headline_cnn_model.hpp) on real
// Fashion-MNIST: one device against Mirrored replicas on two (parallel/mirrored.hpp).
//
//   dp_train/1x<dev>      items/s: model.fit over one epoch of kSteps global batches of 64
//                         on one device (the baseline).
//   dp_train/2x<devs>     items/s: the same epoch on Mirrored<Device<GPU, 0>, Device<GPU, 1>>
//                         (32 rows per replica per step), and on Mirrored<Device<CPU>,
//                         Device<GPU, 0>>.
// Counters: allreduce_B/step, the bytes each replica sent to the other per step (counted by
// locus::to<>'s device-to-device counters), next to ring_bound_B/step = 2(N-1)/N x the
// gradient bytes; grad_B, the gradient bytes of one step.
//
// On PoCL (LOCUS_OPENCL_ALLOW_CPU=1 POCL_DEVICES="pthread pthread") both "devices" share the
// machine's cores, so two replicas cannot be faster than one here: this measures the cost of
// splitting, the ring and the second device's queue. On a machine with two GPUs the same
// program measures the scaling.
#include <locus/locus.hpp>

#include <benchmark/benchmark.h>

#include "guarded.hpp"

#include "../examples/headline_cnn_model.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>

namespace {

using namespace locus;
using C = Device<CPU>;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

constexpr std::size_t kGlobalBatch = 64;
constexpr std::size_t kSteps = 32;  // 2,048 images per timed fit()

struct host_batches {
  Tensor<float, C> x;
  Tensor<std::int32_t, C> y;
  static const host_batches& get() {
    static const host_batches h = [] {
      const auto d = data::load_fashion_mnist();
      const std::size_t n = kGlobalBatch * kSteps;
      return host_batches{d.train_images.slice(0, n), d.train_labels.slice(0, n)};
    }();
    return h;
  }
};

using locus_bench::guarded;

template <AnyDevice Dev>
void dp_train_single(benchmark::State& state) {
  guarded(state, [&] {
    const auto& h = host_batches::get();
    auto model = headline_example::headline_cnn<Dev>(42);
    const auto x = to<Dev>(h.x);
    const auto y = to<Dev>(h.y);
    for (auto _ : state) {
      model.fit(x, y, {.epochs = 1, .batch_size = kGlobalBatch, .shuffle = false, .verbose = 0});
      if constexpr (!HostDevice<Dev>) synchronize<Dev>();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kGlobalBatch * kSteps));
  });
}

template <AnyDevice D0, AnyDevice D1>
void dp_train_mirrored(benchmark::State& state) {
  guarded(state, [&] {
    const auto& h = host_batches::get();
    Mirrored<D0, D1> model(headline_example::headline_cnn<D0>(42));
    std::uint64_t sent = 0;
    for (auto _ : state) {
      reset_stats<D0>();
      model.fit(h.x, h.y,
                {.epochs = 1, .batch_size = kGlobalBatch, .shuffle = false, .verbose = 0});
      if constexpr (!HostDevice<D1>) synchronize<D1>();
      if constexpr (!HostDevice<D0>) {
        synchronize<D0>();
        sent = stats<D0>().device_to_device_bytes;
      }
    }
    const double grad_bytes =
        static_cast<double>(model.template replica<0>().count_params() * sizeof(float));
    state.counters["grad_B"] = grad_bytes;
    // Between two OpenCL devices every byte the ring sends is a counted device-to-device
    // copy (with the host, sends are uploads and downloads mixed with the data's).
    if constexpr (!HostDevice<D0>) {
      state.counters["allreduce_B/step"] = static_cast<double>(sent) / kSteps;
      state.counters["ring_bound_B/step"] = grad_bytes;  // 2(N-1)/N = 1 for N = 2
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kGlobalBatch * kSteps));
  });
}

BENCHMARK(dp_train_single<C>)
    ->Name("dp_train/1xDevice<CPU>")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(dp_train_single<G0>)
    ->Name("dp_train/1xDevice<GPU, 0>")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(dp_train_mirrored<G0, G1>)
    ->Name("dp_train/2xDevice<GPU, 0>+Device<GPU, 1>")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(dp_train_mirrored<C, G0>)
    ->Name("dp_train/2xDevice<CPU>+Device<GPU, 0>")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
