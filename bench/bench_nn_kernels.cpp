// Host timings of the neural-network kernels at the shapes of the reference CNN
// (Fashion-MNIST, batch 32: Conv2D(32, 3x3) on 28x28x1, MaxPooling2D(2x2)), plus the
// im2col of a second 3x3 convolution over the pooled 13x13x32 maps. The training target
// of >= 4,400 images/s on 2 cores leaves about 7 ms per batch for everything, so each of
// these should stay in the tens of microseconds.
// Thread count: LOCUS_NUM_THREADS (default: all cores).
#include <benchmark/benchmark.h>

#include <cstdint>

#include <locus/backend/cpu/nn.hpp>
#include <locus/locus.hpp>

namespace {

using Dev = locus::Device<locus::CPU>;
using NB = locus::nn_backend_for<Dev>;
using locus::Tensor;

locus::conv_geometry conv(std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                          std::size_t k) {
  return {n, h, w, c, k, k, 1, 1, 0, 0, h - k + 1, w - k + 1};
}

locus::pool_geometry pool2x2(std::size_t n, std::size_t h, std::size_t w, std::size_t c) {
  return {n, h, w, c, 2, 2, 2, 2, 0, 0, h / 2, w / 2};
}

void set_bytes(benchmark::State& state, std::size_t elements) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(elements * sizeof(float)));
}

void BM_im2col(benchmark::State& state, locus::conv_geometry g) {
  const auto x = Tensor<float, Dev>::uniform({g.n, g.h, g.w, g.c}, 1);
  Tensor<float, Dev> cols(locus::uninitialized, {g.n * g.oh * g.ow, g.kh * g.kw * g.c});
  for (auto _ : state) {
    NB::im2col(x.storage(), g, cols.storage());
    benchmark::DoNotOptimize(cols.storage().data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, cols.size());
}

void BM_col2im(benchmark::State& state, locus::conv_geometry g) {
  const auto cols = Tensor<float, Dev>::uniform({g.n * g.oh * g.ow, g.kh * g.kw * g.c}, 2);
  Tensor<float, Dev> dx(locus::uninitialized, {g.n, g.h, g.w, g.c});
  for (auto _ : state) {
    NB::col2im(cols.storage(), g, dx.storage());
    benchmark::DoNotOptimize(dx.storage().data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, cols.size());
}

void BM_maxpool_forward(benchmark::State& state, locus::pool_geometry g) {
  const auto x = Tensor<float, Dev>::uniform({g.n, g.h, g.w, g.c}, 3);
  Tensor<float, Dev> y(locus::uninitialized, {g.n, g.oh, g.ow, g.c});
  Tensor<std::int32_t, Dev> am(locus::uninitialized, y.shape());
  for (auto _ : state) {
    NB::pool2d_forward(locus::pool_kind::max, x.storage(), g, y.storage(), &am.storage());
    benchmark::DoNotOptimize(y.storage().data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, x.size());
}

void BM_maxpool_backward(benchmark::State& state, locus::pool_geometry g) {
  const auto x = Tensor<float, Dev>::uniform({g.n, g.h, g.w, g.c}, 4);
  Tensor<float, Dev> y(locus::uninitialized, {g.n, g.oh, g.ow, g.c});
  Tensor<std::int32_t, Dev> am(locus::uninitialized, y.shape());
  NB::pool2d_forward(locus::pool_kind::max, x.storage(), g, y.storage(), &am.storage());
  Tensor<float, Dev> dx(locus::uninitialized, x.shape());
  for (auto _ : state) {
    NB::pool2d_backward(locus::pool_kind::max, y.storage(), &am.storage(), g, dx.storage());
    benchmark::DoNotOptimize(dx.storage().data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, x.size());
}

void BM_gather_rows(benchmark::State& state) {
  // Shuffling a 60,000-image Fashion-MNIST batch of 32 rows of 784 floats.
  const auto src = Tensor<float, Dev>::uniform({60000, 784}, 5);
  const auto idx = Tensor<std::int32_t, Dev>::uniform({32}, 6, 0, 60000);
  Tensor<float, Dev> dst(locus::uninitialized, {32, 784});
  for (auto _ : state) {
    NB::gather_rows(src.storage(), 784, idx.storage(), 32, dst.storage());
    benchmark::DoNotOptimize(dst.storage().data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, dst.size());
}

BENCHMARK_CAPTURE(BM_im2col, cnn_32x28x28x1_3x3, conv(32, 28, 28, 1, 3))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_col2im, cnn_32x28x28x1_3x3, conv(32, 28, 28, 1, 3))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_im2col, conv2_32x13x13x32_3x3, conv(32, 13, 13, 32, 3))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_col2im, conv2_32x13x13x32_3x3, conv(32, 13, 13, 32, 3))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_maxpool_forward, cnn_32x26x26x32_2x2, pool2x2(32, 26, 26, 32))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_maxpool_backward, cnn_32x26x26x32_2x2, pool2x2(32, 26, 26, 32))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gather_rows)->Unit(benchmark::kMicrosecond);

}  // namespace
