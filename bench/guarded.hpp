// What the model benchmarks share:
//  * guarded(state, body): runs a benchmark's body; an exception (at setup, e.g. no OpenCL
//    device, or in the loop) becomes SkipWithError, so a missing GPU skips its benchmarks
//    with the error instead of ending the run (and never falls back to the CPU);
//  * is_gpu<Dev>, wait_for<Dev>() (the device's queue drained: a timed iteration ends when
//    its work has), device_label<Dev>() (the benchmark's label: the OpenCL device's
//    description, or the host's name).
#pragma once

#include <benchmark/benchmark.h>

#include <exception>
#include <string>
#include <type_traits>

#include <locus/locus.hpp>

namespace locus_bench {

template <class F>
void guarded(benchmark::State& state, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <class Dev>
constexpr bool is_gpu = !std::is_same_v<Dev, locus::Device<locus::CPU>>;

template <class Dev>
void wait_for() {
  if constexpr (is_gpu<Dev>) locus::synchronize<Dev>();
}

template <class Dev>
std::string device_label() {
  if constexpr (is_gpu<Dev>) {
    return locus::device_description<Dev>();
  } else {
    return locus::device_name<Dev>();
  }
}

}  // namespace locus_bench
