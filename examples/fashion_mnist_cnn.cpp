// The headline example: a small CNN on Fashion-MNIST, written once and run on the CPU or
// on an OpenCL GPU. The only difference between the two runs is the device type given to
// train_and_evaluate<>.
//
//   fashion_mnist_cnn [--device cpu|gpu|both] [--epochs N] [--quick]
//
// Both devices by default. --quick (for CI) keeps the CPU run whole and gives the
// Device<GPU> run the first 6,000 training and 1,000 test images, since in CI the "GPU"
// is PoCL on the same two cores. With two or more epochs the program fails if the test
// accuracy is below 0.88 on the full data (0.75 on the subset).
#include <locus/locus.hpp>

#include "headline_cnn_model.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

using namespace locus;

struct Options {
  std::string device = "both";
  std::size_t epochs = 2;
  bool quick = false;
};

template <class Dev>
double train_and_evaluate(const Options& opt, std::size_t train_images, std::size_t test_images) {
  auto model = headline_example::headline_cnn<Dev>(/*seed=*/42);
  std::cout << model.summary();

  // The training set streams from disk through a pipeline: shuffled in a window of 10,000
  // images (anew each epoch), cut into batches of 32 and moved to the model's device, where
  // prefetch uploads the next batches while the device trains on this one. to<Dev> is the
  // only device-specific line, and it is explicit.
  const auto train = to<Dev>(data::fashion_mnist_dataset("train")
                                 .take(train_images)
                                 .shuffle(10000, /*seed=*/1)
                                 .batch(32))
                         .prefetch(2);
  const auto test =
      to<Dev>(data::fashion_mnist_dataset("t10k").take(test_images).batch(256)).prefetch(2);

  const auto t0 = std::chrono::steady_clock::now();
  model.fit(train, {.epochs = opt.epochs, .validation_data = test});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const Logs result = model.evaluate(test);
  std::cout << device_name<Dev>() << ": test accuracy " << result.at("accuracy") << ", test loss "
            << result.at("loss") << ", "
            << static_cast<double>(std::min<std::size_t>(train_images, 60000) * opt.epochs) / secs
            << " training images/s (incl. validation)\n";
  return result.at("accuracy");
}

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      opt.device = argv[++i];
    } else if (a == "--epochs" && i + 1 < argc) {
      opt.epochs = std::stoul(argv[++i]);
    } else if (a == "--quick") {
      opt.quick = true;
    } else {
      std::cerr << "usage: " << argv[0] << " [--device cpu|gpu|both] [--epochs N] [--quick]\n";
      return 2;
    }
  }
  try {
    bool ok = true;
    auto check = [&](double accuracy, double floor) {
      if (opt.epochs >= 2 && accuracy < floor) {
        std::cerr << "error: test accuracy " << accuracy << " is below " << floor << "\n";
        ok = false;
      }
    };
    constexpr std::size_t all = data::all_samples;
    if (opt.device == "cpu" || opt.device == "both")
      check(train_and_evaluate<Device<CPU>>(opt, all, all), 0.88);
    if (opt.device == "gpu" || opt.device == "both") {
      if (opt.quick) {
        check(train_and_evaluate<Device<GPU>>(opt, 6000, 1000), 0.75);
      } else {
        check(train_and_evaluate<Device<GPU>>(opt, all, all), 0.88);
      }
    }
    if (!ok) return 1;
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
