// int8 inference of a saved model: load it, compile an inference plan, calibrate on 512
// training images, quantize, save and reload the int8 model (the round trip a server
// would make), then compare test accuracy and speed of float and int8 on the chosen device.
//
//   int8_inference [--model PATH.keras] [--residual] [--device cpu|gpu]
//                  [--calibration minmax|PERCENTILE] [--quick]
//
// Calibration takes each tensor's minimum and maximum by default; --calibration 99.99 keeps
// the central 99.99 percent of its values instead (clipping the tails).
// Without --model the program first trains a model (the headline CNN, or with --residual the
// residual CNN) and saves it to a temporary .keras file, which it then loads like any other.
// --quick (for CI) trains one epoch on 4,096 images (headline; 2,048 for the residual CNN),
// tests on the first 1,000 test images and times shorter runs; a full run trains 3 epochs on
// all 60,000 and tests on all 10,000. The program fails when int8
// loses more than 0.5 points of test accuracy. The last line reads
// `fp32 accuracy A, int8 accuracy B`.
#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "headline_cnn_model.hpp"
#include "model_file_example.hpp"
#include "residual_cnn_model.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

using namespace locus;
using Host = Device<CPU>;

struct Options {
  std::filesystem::path model;
  bool residual = false;
  std::string device = "cpu";
  bool quick = false;
  CalibrationOptions calibration;
};

/// Trains the model the options name and saves it to `path`.
void train_and_save(const data::fashion_mnist& data, const Options& opt,
                    const std::filesystem::path& path) {
  const std::size_t n = opt.quick ? 4096 : data.train_images.shape()[0];
  const std::size_t epochs = opt.quick ? 1 : 3;
  Model<Host> model = opt.residual ? Model<Host>(residual_example::residual_cnn(), 42)
                                   : headline_example::headline_cnn<Host>(42);
  if (opt.residual) model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  model.fit(data.train_images.slice(0, n), data.train_labels.slice(0, n),
            {.epochs = epochs, .verbose = 0});
  save_model(model, path);
  std::cout << "trained " << (opt.residual ? "the residual CNN" : "the headline CNN") << " on " << n
            << " images, " << epochs << " epoch(s); saved to " << path.string() << "\n";
}

/// Images per second of batch-256 calls and microseconds per one-image call.
template <class Plan, class Dev>
std::pair<double, double> speed(const Plan& plan, const Tensor<float, Host>& images, bool quick) {
  auto seconds = [](auto f, int calls) {
    f();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    if constexpr (!HostDevice<Dev>) synchronize<Dev>();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
  };
  const auto batch = to<Dev>(images.slice(0, 256));
  const auto one = to<Dev>(images.slice(0, 1));
  Tensor<float, Dev> y256(uninitialized, {256, 10}), y1(uninitialized, {1, 10});
  const double b = seconds([&] { plan.predict_into(batch, y256); }, quick ? 5 : 50);
  const double l = seconds([&] { plan.predict_into(one, y1); }, quick ? 20 : 500);
  return {256.0 / b, l * 1e6};
}

template <class Dev>
int run(const data::fashion_mnist& data, const Options& opt, const std::filesystem::path& path) {
  const Model<Dev> model = load_model<Dev>(path, {.compile = false});
  const InferencePlan<Dev> plan(model, {.max_batch = 256});
  std::cout << "inference plan on " << device_name<Dev>() << ": " << plan.graph().steps.size()
            << " steps for " << model.plan_layers().size() << " layers\n";
  for (const auto& s : plan.graph().steps) std::cout << "  " << s.name << "\n";

  auto t0 = std::chrono::steady_clock::now();
  const Calibration cal = calibrate(plan, data.train_images.slice(0, 512), opt.calibration);
  const QuantizedPlan<Dev> quantized = quantize(plan, cal);
  std::cout << "calibrated on 512 images ("
            << (opt.calibration.method == CalibrationMethod::min_max
                    ? std::string("min/max")
                    : "percentile " + std::to_string(opt.calibration.percentile))
            << ") and quantized in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s";
  if constexpr (HostDevice<Dev>)
    std::cout << "; int8 kernel " << inference::cpu::to_string(quantized.kernel());
  std::cout << "\n";

  // The int8 model on file, and back: what a server loads.
  std::filesystem::path int8_path = path;
  int8_path.replace_extension(".int8.keras");
  save_quantized(model, quantized, int8_path);
  const QuantizedPlan<Dev> served = load_quantized<Dev>(int8_path);
  std::cout << "saved and reloaded the int8 model (" << std::filesystem::file_size(int8_path)
            << " bytes; test cases re-checked)\n";
  std::filesystem::remove(int8_path);

  const auto x = to<Dev>(data.test_images);
  const double fp32 = model_file_example::accuracy(to<Host>(plan.predict(x)), data.test_labels);
  const double int8 = model_file_example::accuracy(to<Host>(served.predict(x)), data.test_labels);
  const auto [fp32_ips, fp32_us] =
      speed<InferencePlan<Dev>, Dev>(plan, data.test_images, opt.quick);
  const auto [int8_ips, int8_us] =
      speed<QuantizedPlan<Dev>, Dev>(served, data.test_images, opt.quick);
  std::cout << "fp32: " << fp32_ips << " images/s at batch 256, " << fp32_us
            << " us for one image\n"
            << "int8: " << int8_ips << " images/s at batch 256, " << int8_us
            << " us for one image (" << int8_ips / fp32_ips << "x, " << fp32_us / int8_us << "x)\n";
  const bool ok = fp32 - int8 <= 0.005;
  if (!ok) std::cerr << "error: int8 loses more than 0.5 points of test accuracy\n";
  std::cout << "fp32 accuracy " << fp32 << ", int8 accuracy " << int8 << "\n";
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      opt.model = argv[++i];
    } else if (a == "--device" && i + 1 < argc) {
      opt.device = argv[++i];
    } else if (a == "--residual") {
      opt.residual = true;
    } else if (a == "--calibration" && i + 1 < argc) {
      const std::string m = argv[++i];
      if (m == "minmax") {
        opt.calibration.method = CalibrationMethod::min_max;
      } else {
        opt.calibration.method = CalibrationMethod::percentile;
        opt.calibration.percentile = std::stod(m);
      }
    } else if (a == "--quick") {
      opt.quick = true;
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--model PATH.keras] [--residual] [--device cpu|gpu]"
                   " [--calibration minmax|PERCENTILE] [--quick]\n";
      return 2;
    }
  }
  if (opt.device != "cpu" && opt.device != "gpu") {
    std::cerr << "error: --device is cpu or gpu\n";
    return 2;
  }
  return model_file_example::run_with_model_file(
      "int8_inference", opt.quick, opt.model, opt.model.empty(),
      [&](const data::fashion_mnist& data, const std::filesystem::path& path) {
        if (opt.model.empty()) train_and_save(data, opt, path);
        return opt.device == "gpu" ? run<Device<GPU>>(data, opt, path) : run<Host>(data, opt, path);
      });
}
