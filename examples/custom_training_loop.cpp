// A custom training loop in the spirit of tf.GradientTape: compute the loss and the
// gradients of a model on a batch, then apply them with an optimizer. The model is
// 10 -> Dense(64, relu) -> Dense(1, sigmoid) with binary cross-entropy, learning whether
// the sum of a sample's features is positive. Written once; run on either device.
//
//   custom_training_loop [--device cpu|gpu|both] [--quick]
#include <locus/locus.hpp>

#include <iostream>
#include <string>

using namespace locus;

template <class Dev>
double train(std::size_t samples, std::size_t epochs) {
  // Synthetic data, made on the device itself: nothing crosses to or from the host.
  const auto x = Tensor<float, Dev>::normal({samples, 10}, /*seed=*/1);
  const Tensor<float, Dev> y = cast<float>(greater(sum(x, 1, true), 0.0f));

  Sequential<Dev> model(Input({10}), Dense(64, Activation::relu), Dense(1, Activation::sigmoid));
  model.build(/*seed=*/7);
  Optimizer<Dev> optimizer(Adam{.learning_rate = 1e-3});
  const BinaryCrossentropy loss_fn{};

  constexpr std::size_t batch = 32;
  for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
    auto loss_sum = Tensor<float, Dev>::zeros({});
    for (std::size_t s = 0; s < samples; s += batch) {
      const std::size_t e = std::min(samples, s + batch);
      const auto xb = x.slice(s, e);
      const auto yb = y.slice(s, e);
      auto [loss, grads] = model.value_and_gradient(xb, yb, loss_fn);  // the "tape"
      optimizer.apply_gradients(grads, model);
      loss_sum += loss * static_cast<float>(e - s);
    }
    // One explicit, counted read per epoch.
    const float mean_loss = to<Device<CPU>>(loss_sum).item() / static_cast<float>(samples);
    std::cout << device_name<Dev>() << " epoch " << epoch + 1 << ": loss " << mean_loss << "\n";
  }
  const Tensor<float, Dev> correct = sum(cast<float>(equal(greater(model.predict(x, 256), 0.5f), y)));
  const double accuracy = to<Device<CPU>>(correct).item() / static_cast<double>(samples);
  std::cout << device_name<Dev>() << " training accuracy " << accuracy << "\n";
  return accuracy;
}

int main(int argc, char** argv) {
  std::string device = "both";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else if (a == "--quick") {
      quick = true;
    } else {
      std::cerr << "usage: " << argv[0] << " [--device cpu|gpu|both] [--quick]\n";
      return 2;
    }
  }
  const std::size_t samples = quick ? 2048 : 20000, epochs = quick ? 3 : 10;
  try {
    double acc = 1.0;
    if (device == "cpu" || device == "both") acc = std::min(acc, train<Device<CPU>>(samples, epochs));
    if (device == "gpu" || device == "both") acc = std::min(acc, train<Device<GPU>>(samples, epochs));
    // The problem is linearly separable; a loop that failed to learn is an error.
    if (acc < 0.9) {
      std::cerr << "error: training accuracy " << acc << " < 0.9\n";
      return 1;
    }
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
