// Train on the GPU, evaluate on the CPU: the headline CNN (examples/headline_cnn_model.hpp)
// is trained on Device<GPU> and saved as a Keras 3 .keras archive; load_model<Device<CPU>>
// reads the file back onto the host, where evaluate() runs it in batches. Or, with
// --model, a file saved before (by train_on_gpu_serve_on_gpu --output PATH, or by Keras)
// is loaded onto both devices instead of training one.
//
//   train_on_gpu_evaluate_on_cpu [--model PATH | --output PATH.keras] [--epochs N] [--quick]
//
// Both devices hold the same float32 weights, but their kernels sum in other orders: each
// logit is a sum of 5,408 products, which the CPU's blocked, vectorised GEMM and the
// OpenCL GEMM (its tiles chosen for the device) add up in different groupings, so the
// logits, and through the softmax the probabilities, differ by rounding. Measured on PoCL:
// at most 3.6e-6 after --quick, 4.4e-6 after the 2 full epochs, with only 3% to 5% of the
// probabilities equal to the bit. The error grows with the size of the logits, which grows
// with training, so the check allows 1e-4: twenty times what was measured, and still far
// below what a wrong or misplaced weight does. The predicted classes, hence the
// accuracies, are equal: a class would have to win by less than that rounding for the
// devices to disagree, and the program prints the smallest lead it saw. It fails if the
// accuracies differ by more than 1e-6 (one image of the test set is 1e-4; what is left is
// room for the two backends' own rounding of the accuracy's mean).
//
// 2 epochs on the whole data set by default. --quick (for CI, where the "GPU" is PoCL on
// two cores) trains one epoch on the first 6,000 training images and evaluates the first
// 1,000 test images. Without --output the trained model goes to the temporary directory and
// is removed at exit.
#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "headline_cnn_model.hpp"
#include "model_file_example.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>

using namespace locus;
using Gpu = Device<GPU>;
using Host = Device<CPU>;

struct Options {
  std::filesystem::path model;   // load this file instead of training
  std::filesystem::path output;  // where to save the trained model; empty: a temporary file
  std::size_t epochs = 2;
  bool quick = false;
};

/// The largest tolerated difference of a predicted probability between the devices
/// (measured: 4.4e-6 at most; see the file comment).
constexpr double max_probability_difference = 1e-4;
/// The largest tolerated difference of the test accuracies.
constexpr double max_accuracy_difference = 1e-6;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The GPU model's test accuracy and predictions, then the CPU's from the file at `path`,
/// compared.
int compare(Model<Gpu, float>& on_gpu, const std::filesystem::path& path,
            const data::fashion_mnist& data) {
  const auto x_test = to<Gpu>(data.test_images);
  const auto y_test = to<Gpu>(data.test_labels);
  auto t0 = std::chrono::steady_clock::now();
  const double gpu_accuracy = on_gpu.evaluate(x_test, y_test, 256).at("accuracy");
  const Tensor<float, Host> gpu_predictions = to<Host>(on_gpu.predict(x_test, 256));
  std::cout << device_name<Gpu>() << ": test accuracy " << gpu_accuracy << " (" << seconds_since(t0)
            << " s to evaluate and predict " << x_test.shape()[0] << " images)\n";

  t0 = std::chrono::steady_clock::now();
  Model<Host, float> on_cpu = load_model<Host>(path);
  std::cout << "load_model<" << device_name<Host>() << "> in " << seconds_since(t0) << " s\n";
  t0 = std::chrono::steady_clock::now();
  const double cpu_accuracy =
      on_cpu.evaluate(data.test_images, data.test_labels, 256).at("accuracy");
  const Tensor<float, Host> cpu_predictions = on_cpu.predict(data.test_images, 256);
  std::cout << device_name<Host>() << ": test accuracy " << cpu_accuracy << " ("
            << seconds_since(t0) << " s to evaluate and predict)\n";

  double max_difference = 0;
  std::size_t bitwise_equal = 0;
  for (std::size_t i = 0; i < cpu_predictions.size(); ++i) {
    const float g = gpu_predictions.data()[i], c = cpu_predictions.data()[i];
    max_difference = std::max(max_difference, std::abs(static_cast<double>(g) - c));
    bitwise_equal += g == c;
  }
  // How near the devices came to predicting another class: the images whose classes
  // differ, and the smallest lead of the CPU's most probable class over the runner-up.
  const std::size_t n = cpu_predictions.shape()[0], classes = cpu_predictions.shape()[1];
  std::size_t other_class = 0;
  double smallest_lead = 1;
  for (std::size_t i = 0; i < n; ++i) {
    const float* c = cpu_predictions.data() + i * classes;
    const float* g = gpu_predictions.data() + i * classes;
    const std::size_t best = static_cast<std::size_t>(std::max_element(c, c + classes) - c);
    other_class += best != static_cast<std::size_t>(std::max_element(g, g + classes) - g);
    float runner_up = 0;
    for (std::size_t k = 0; k < classes; ++k)
      if (k != best) runner_up = std::max(runner_up, c[k]);
    smallest_lead = std::min(smallest_lead, static_cast<double>(c[best]) - runner_up);
  }
  const double accuracy_difference = std::abs(gpu_accuracy - cpu_accuracy);
  std::cout << "accuracy difference " << accuracy_difference << "; predicted classes differ on "
            << other_class << " of " << n << " images (smallest lead of a class " << smallest_lead
            << ")\npredicted probabilities: max abs difference " << max_difference << ", "
            << bitwise_equal << " of " << cpu_predictions.size() << " identical\n";
  if (accuracy_difference > max_accuracy_difference ||
      !(max_difference <= max_probability_difference)) {
    std::cerr << "error: the CPU does not evaluate the model the GPU trained (tolerances "
              << max_accuracy_difference << " on the accuracy, " << max_probability_difference
              << " on the probabilities)\n";
    return 1;
  }
  return 0;
}

int run(const data::fashion_mnist& data, const Options& opt, const std::filesystem::path& path) {
  std::cout << device_description<Gpu>() << "\n";
  if (!opt.model.empty()) {
    Model<Gpu, float> on_gpu = load_model<Gpu>(opt.model);
    std::cout << "loaded " << opt.model.string() << ": " << on_gpu.count_params()
              << " parameters\n";
    return compare(on_gpu, opt.model, data);
  }
  auto model = headline_example::headline_cnn<Gpu>(/*seed=*/42);
  std::cout << model.summary();
  const auto x_train = to<Gpu>(data.train_images);
  const auto y_train = to<Gpu>(data.train_labels);
  const auto t0 = std::chrono::steady_clock::now();
  model.fit(x_train, y_train, {.epochs = opt.epochs, .batch_size = 32});
  std::cout << "trained on " << x_train.shape()[0] << " images, " << opt.epochs << " epoch(s), in "
            << seconds_since(t0) << " s\n";
  save_model(model, path);
  std::cout << "saved to " << path.string() << " (" << std::filesystem::file_size(path)
            << " bytes)\n";
  return compare(model, path, data);
}

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      opt.model = argv[++i];
    } else if (a == "--output" && i + 1 < argc) {
      opt.output = argv[++i];
    } else if (a == "--epochs" && i + 1 < argc) {
      opt.epochs = std::stoul(argv[++i]);
    } else if (a == "--quick") {
      opt.quick = true;
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--model PATH | --output PATH.keras] [--epochs N] [--quick]\n";
      return 2;
    }
  }
  if (opt.quick) opt.epochs = 1;
  return model_file_example::run_with_model_file(
      "train_on_gpu_evaluate_on_cpu", opt.quick, opt.output,
      opt.model.empty() && opt.output.empty(),
      [&](const data::fashion_mnist& data, const std::filesystem::path& path) {
        return run(data, opt, path);
      });
}
