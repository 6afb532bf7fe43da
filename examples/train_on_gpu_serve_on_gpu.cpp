// Train on the GPU, save, load back onto the GPU and serve: the headline CNN
// (examples/headline_cnn_model.hpp) is trained on Device<GPU>, saved as a Keras 3 .keras
// archive, loaded with load_model<Device<GPU>> and asked for the test set's predictions.
// The transfer counters show what the round trip costs:
//   - the load uploads each weight once, straight from the file's buffer, and reads
//     nothing back;
//   - predict keeps every activation and the predictions on the device: nothing is read
//     until the program reads the predictions, in one transfer.
// The loaded model must predict exactly what the trained model predicted (the same float32
// weights through the same kernels): the program fails if one bit differs.
//
//   train_on_gpu_serve_on_gpu [--output PATH.keras] [--epochs N] [--quick]
//
// 2 epochs on the whole data set by default. --quick (for CI, where the "GPU" is PoCL on
// two cores) trains one epoch on the first 6,000 training images and predicts the first
// 1,000 test images. Without --output the file goes to the temporary directory and is
// removed at exit; give a path to keep it (train_on_gpu_evaluate_on_cpu --model PATH
// evaluates it on the CPU).
#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "headline_cnn_model.hpp"
#include "model_file_example.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

using namespace locus;
using Gpu = Device<GPU>;
using Host = Device<CPU>;

struct Options {
  std::filesystem::path output;  // empty: a file of this process in the temporary directory
  std::size_t epochs = 2;
  bool quick = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string describe(const transfer_stats& s) {
  return std::to_string(s.host_to_device_calls) + " uploads (" +
         std::to_string(s.host_to_device_bytes) + " bytes), " +
         std::to_string(s.device_to_host_calls) + " downloads (" +
         std::to_string(s.device_to_host_bytes) + " bytes), " + std::to_string(s.kernel_launches) +
         " kernel launches";
}

/// Trains the headline CNN on the GPU, saves it to `path` and returns its predictions of
/// `x_test`, read to the host. The model and the training data leave the device on return,
/// so that the memory measured around the load is the loaded model's.
Tensor<float, Host> train_and_save(const data::fashion_mnist& data,
                                   const Tensor<float, Gpu>& x_test, const Options& opt,
                                   const std::filesystem::path& path) {
  auto model = headline_example::headline_cnn<Gpu>(/*seed=*/42);
  std::cout << model.summary();
  const auto x_train = to<Gpu>(data.train_images);
  const auto y_train = to<Gpu>(data.train_labels);
  auto t0 = std::chrono::steady_clock::now();
  model.fit(x_train, y_train, {.epochs = opt.epochs, .batch_size = 32});
  std::cout << "trained on " << x_train.shape()[0] << " images, " << opt.epochs << " epoch(s), in "
            << seconds_since(t0) << " s\n";

  t0 = std::chrono::steady_clock::now();
  save_model(model, path);
  std::cout << "saved to " << path.string() << " (" << std::filesystem::file_size(path)
            << " bytes) in " << seconds_since(t0) << " s\n";
  return to<Host>(model.predict(x_test, 256));
}

int run(const data::fashion_mnist& data, const Options& opt, const std::filesystem::path& path) {
  std::cout << device_description<Gpu>() << "\n";
  const auto x_test = to<Gpu>(data.test_images);
  const Tensor<float, Host> trained = train_and_save(data, x_test, opt, path);

  // A server only predicts: compile = false leaves the optimizer (and the Adam moments the
  // file also holds, twice the weights' size) off the device.
  const std::size_t in_use_before = memory_info<Gpu>().in_use;
  reset_stats<Gpu>();
  auto t0 = std::chrono::steady_clock::now();
  const Model<Gpu, float> served = load_model<Gpu>(path, {.compile = false});
  const double load_secs = seconds_since(t0);
  const transfer_stats load = stats<Gpu>();
  const std::size_t in_use_after = memory_info<Gpu>().in_use;

  std::uint64_t weight_count = 0, weight_bytes = 0;
  for (const auto& [name, w] : served.weights()) {
    weight_count += 1;
    weight_bytes += w->size() * sizeof(float);
  }
  std::cout << "load_model<" << device_name<Gpu>() << "> in " << load_secs
            << " s: " << describe(load) << "; the model has " << weight_count << " weights, "
            << weight_bytes << " bytes\n"
            << "device memory in use: " << in_use_before << " bytes before the load, "
            << in_use_after << " after (+" << in_use_after - in_use_before
            << ", the weights in the pool's size classes)\n";
  bool ok = true;
  if (load.host_to_device_calls != weight_count || load.host_to_device_bytes != weight_bytes ||
      load.device_to_host_calls != 0) {
    std::cerr << "error: the load should upload each weight once and read nothing back\n";
    ok = false;
  }

  reset_stats<Gpu>();
  t0 = std::chrono::steady_clock::now();
  const Tensor<float, Gpu> on_device = served.predict(x_test, 256);
  synchronize<Gpu>();
  const double predict_secs = seconds_since(t0);
  const transfer_stats during = stats<Gpu>();
  const Tensor<float, Host> predictions = to<Host>(on_device);
  const transfer_stats read = stats<Gpu>();
  std::cout << "predict of " << x_test.shape()[0] << " images in " << predict_secs
            << " s: " << describe(during) << "\n"
            << "reading the predictions: "
            << read.device_to_host_calls - during.device_to_host_calls << " download ("
            << read.device_to_host_bytes - during.device_to_host_bytes << " bytes)\n";
  if (during.device_to_host_calls != 0 || during.host_to_device_calls != 0 ||
      read.device_to_host_calls != 1 ||
      read.device_to_host_bytes != predictions.size() * sizeof(float)) {
    std::cerr << "error: predict should stay on the device until the predictions are read\n";
    ok = false;
  }

  const double trained_accuracy = model_file_example::accuracy(trained, data.test_labels);
  const double served_accuracy = model_file_example::accuracy(predictions, data.test_labels);
  const bool same_bits =
      std::memcmp(trained.data(), predictions.data(), predictions.size() * sizeof(float)) == 0;
  std::cout << "test accuracy: trained model " << trained_accuracy << ", loaded model "
            << served_accuracy << "; predictions bitwise "
            << (same_bits ? "identical" : "DIFFERENT") << "\n";
  if (!same_bits || trained_accuracy != served_accuracy) {
    std::cerr << "error: the loaded model does not predict what the trained model did\n";
    ok = false;
  }
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--output" && i + 1 < argc) {
      opt.output = argv[++i];
    } else if (a == "--epochs" && i + 1 < argc) {
      opt.epochs = std::stoul(argv[++i]);
    } else if (a == "--quick") {
      opt.quick = true;
    } else {
      std::cerr << "usage: " << argv[0] << " [--output PATH.keras] [--epochs N] [--quick]\n";
      return 2;
    }
  }
  if (opt.quick) opt.epochs = 1;
  return model_file_example::run_with_model_file(
      "train_on_gpu_serve_on_gpu", opt.quick, opt.output, opt.output.empty(),
      [&](const data::fashion_mnist& data, const std::filesystem::path& path) {
        return run(data, opt, path);
      });
}
