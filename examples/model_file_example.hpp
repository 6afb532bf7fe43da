// The part the save-and-load examples (train_on_gpu_serve_on_gpu.cpp,
// train_on_gpu_evaluate_on_cpu.cpp) share after parsing their options: the data, the path of
// the .keras file, the error report and the clean-up.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>

#include <locus/locus.hpp>

namespace model_file_example {

/// Returns run(data, path): Fashion-MNIST (with `quick`, its first 6,000 training and 1,000
/// test images) and the file to save to, `output` unless `temporary`, then a file named
/// after `name` and the process id in the temporary directory, removed at the end (runs at
/// the same time, ctest -j or several build trees, must not replace each other's file
/// between the save and the load). A locus::error is reported on stderr and returns 1.
template <class Run>
int run_with_model_file(const std::string& name, bool quick, const std::filesystem::path& output,
                        bool temporary, Run&& run) {
  const std::filesystem::path path = temporary
                                         ? std::filesystem::temp_directory_path() /
                                               (name + "-" + std::to_string(::getpid()) + ".keras")
                                         : output;
  int rc = 1;
  try {
    auto data = locus::data::load_fashion_mnist();
    if (quick) {
      data = {data.train_images.slice(0, 6000), data.train_labels.slice(0, 6000),
              data.test_images.slice(0, 1000), data.test_labels.slice(0, 1000)};
    }
    rc = run(data, path);
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
  }
  if (temporary) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  return rc;
}

/// The fraction of rows of `probabilities` [N, 10] whose largest entry (the first of
/// equal ones, as Keras's argmax) is at the label's index.
inline double accuracy(const locus::Tensor<float, locus::Device<locus::CPU>>& probabilities,
                       const locus::Tensor<std::int32_t, locus::Device<locus::CPU>>& labels) {
  const std::size_t n = labels.size(), classes = probabilities.shape()[1];
  std::size_t right = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float* row = probabilities.data() + i * classes;
    std::size_t best = 0;
    for (std::size_t k = 1; k < classes; ++k)
      if (row[k] > row[best]) best = k;
    right += static_cast<std::int32_t>(best) == labels.data()[i];
  }
  return static_cast<double>(right) / static_cast<double>(n);
}

}  // namespace model_file_example
