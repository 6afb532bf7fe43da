// A small residual CNN on Fashion-MNIST with the functional API: three residual blocks
// (Conv2D -> BatchNormalization -> relu -> Conv2D -> BatchNormalization, added to the
// block's input; 16, 32 and 64 channels), max pooling, global average pooling and a
// softmax head (examples/residual_cnn_model.hpp). The model is
// described once, without a device (a Functional), and bound to each device in turn; the
// device type is the only difference between the two runs.
//
//   residual_cnn [--device cpu|gpu|both] [--epochs N] [--quick]
//
// Both devices by default, 5 epochs. --quick (for CI) trains one epoch on the first
// 4,096 training images and tests on the first 1,000 test images, on each device, and
// fails below 0.70 test accuracy; a full run fails below 0.91 after 5 or more epochs.
#include <locus/locus.hpp>

#include "residual_cnn_model.hpp"

#include <chrono>
#include <iostream>
#include <string>

using namespace locus;

struct Options {
  std::string device = "both";
  std::size_t epochs = 5;
  bool quick = false;
};

template <class Dev>
double train_and_evaluate(const Functional& net, const data::fashion_mnist& data,
                          const Options& opt) {
  Model<Dev> model(net, /*seed=*/42);
  std::cout << model.summary();
  model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  // The data set is in memory; a pipeline shuffles it (all of it, anew each epoch), cuts
  // batches of 32 and prefetches them to the model's device while it trains.
  const auto train = to<Dev>(data::Dataset<>::from_tensors(data.train_images, data.train_labels)
                                 .shuffle(data.train_images.shape()[0], /*seed=*/1)
                                 .batch(32))
                         .prefetch(2);
  const auto test =
      to<Dev>(data::Dataset<>::from_tensors(data.test_images, data.test_labels).batch(256))
          .prefetch(2);
  const auto t0 = std::chrono::steady_clock::now();
  model.fit(train, {.epochs = opt.epochs, .validation_data = test});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Logs result = model.evaluate(test);
  std::cout << device_name<Dev>() << ": test accuracy " << result.at("accuracy") << ", test loss "
            << result.at("loss") << ", "
            << static_cast<double>(data.train_images.shape()[0] * opt.epochs) / secs
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
      opt.epochs = 1;
    } else {
      std::cerr << "usage: " << argv[0] << " [--device cpu|gpu|both] [--epochs N] [--quick]\n";
      return 2;
    }
  }
  try {
    const Functional net = residual_example::residual_cnn();
    auto data = data::load_fashion_mnist();
    if (opt.quick) {
      data = {data.train_images.slice(0, 4096), data.train_labels.slice(0, 4096),
              data.test_images.slice(0, 1000), data.test_labels.slice(0, 1000)};
    }
    const double floor = opt.quick ? 0.70 : 0.91;
    const bool judged = opt.quick || opt.epochs >= 5;
    bool ok = true;
    const auto check = [&](double accuracy) {
      if (judged && accuracy < floor) {
        std::cerr << "error: test accuracy " << accuracy << " is below " << floor << "\n";
        ok = false;
      }
    };
    if (opt.device == "cpu" || opt.device == "both")
      check(train_and_evaluate<Device<CPU>>(net, data, opt));
    if (opt.device == "gpu" || opt.device == "both")
      check(train_and_evaluate<Device<GPU>>(net, data, opt));
    if (!ok) return 1;
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
