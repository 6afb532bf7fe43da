// The headline CNN of examples/fashion_mnist_cnn.cpp, shared with the examples that save
// and load it (train_on_gpu_serve_on_gpu.cpp, train_on_gpu_evaluate_on_cpu.cpp) and the
// benchmarks (bench/bench_cnn.cpp, bench/bench_data_pipeline.cpp), so that they all train
// and time the very model the headline example does.
#pragma once

#include <cstdint>

#include <locus/locus.hpp>

namespace headline_example {

using namespace locus;

/// conv 3x3x32 (relu) -> max pool 2x2 -> dense 10 (softmax), built on Dev with `seed` (equal
/// seeds give equal weights on every device) and compiled with Adam and the sparse
/// cross-entropy, reporting the accuracy.
template <AnyDevice Dev>
Sequential<Dev> headline_cnn(std::uint64_t seed = 42) {
  Sequential<Dev> model(Input({28, 28, 1}),                    //
                        Conv2D(32, {3, 3}, Activation::relu),  //
                        MaxPooling2D({2, 2}),                  //
                        Flatten(),                             //
                        Dense(10, Activation::softmax));
  model.build(seed);
  model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  return model;
}

}  // namespace headline_example
