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
double train_and_evaluate(const data::fashion_mnist& data, const Options& opt) {
  auto model = headline_example::headline_cnn<Dev>(/*seed=*/42);
  std::cout << model.summary();

  // The data moves to the model's device once, explicitly; batches are cut there.
  const auto x_train = to<Dev>(data.train_images);
  const auto y_train = to<Dev>(data.train_labels);
  const auto x_test = to<Dev>(data.test_images);
  const auto y_test = to<Dev>(data.test_labels);

  const auto t0 = std::chrono::steady_clock::now();
  model.fit(x_train, y_train,
            {.epochs = opt.epochs, .batch_size = 32, .validation_data = {x_test, y_test}});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const Logs test = model.evaluate(x_test, y_test, 256);
  std::cout << device_name<Dev>() << ": test accuracy " << test.at("accuracy") << ", test loss "
            << test.at("loss") << ", "
            << static_cast<double>(x_train.shape()[0] * opt.epochs) / secs
            << " training images/s (incl. validation)\n";
  return test.at("accuracy");
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
    const auto data = data::load_fashion_mnist();
    bool ok = true;
    auto check = [&](double accuracy, double floor) {
      if (opt.epochs >= 2 && accuracy < floor) {
        std::cerr << "error: test accuracy " << accuracy << " is below " << floor << "\n";
        ok = false;
      }
    };
    if (opt.device == "cpu" || opt.device == "both")
      check(train_and_evaluate<Device<CPU>>(data, opt), 0.88);
    if (opt.device == "gpu" || opt.device == "both") {
      if (opt.quick) {
        const data::fashion_mnist subset{
            data.train_images.slice(0, 6000), data.train_labels.slice(0, 6000),
            data.test_images.slice(0, 1000), data.test_labels.slice(0, 1000)};
        check(train_and_evaluate<Device<GPU>>(subset, opt), 0.75);
      } else {
        check(train_and_evaluate<Device<GPU>>(data, opt), 0.88);
      }
    }
    if (!ok) return 1;
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
