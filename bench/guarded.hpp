// guarded(state, body): runs a benchmark's body; an exception (at setup, e.g. no OpenCL
// device, or in the loop) becomes SkipWithError, so a missing GPU skips its benchmarks with
// the error instead of ending the run (and never falls back to the CPU).
#pragma once

#include <benchmark/benchmark.h>

#include <exception>

namespace locus_bench {

template <class F>
void guarded(benchmark::State& state, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace locus_bench
