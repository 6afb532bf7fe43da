// locus-model: a Keras model file from the command line.
//
//   locus-model summary FILE
//   locus-model predict FILE INPUT.npy OUTPUT.npy [--device cpu|gpu] [--batch-size N]
//   locus-model convert IN OUT
//
// FILE is a .keras archive, a legacy Keras .h5 file (Keras 2 or 3) or, for convert's OUT,
// a .weights.h5 file. Other programs call this tool, so its command line is fixed: exit 0
// on success, 1 with the typed error's message on stderr when a file cannot be used (an
// unsupported layer class, a corrupt file, a shape that does not fit), 2 on a usage error.
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include <locus/io.hpp>
#include <locus/locus.hpp>

namespace {

using CPUDev = locus::Device<locus::CPU>;
using GPUDev = locus::Device<locus::GPU>;

constexpr const char* usage =
    "usage: locus-model summary FILE\n"
    "       locus-model predict FILE INPUT.npy OUTPUT.npy [--device cpu|gpu] [--batch-size N]\n"
    "       locus-model convert IN OUT      (OUT: .keras or .weights.h5)\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int summary(const std::string& file) {
  // The whole model is read and checked (the weights too), so that a file the summary
  // accepts is one that loads.
  const auto m = locus::load_model<CPUDev>(file, {.compile = false});
  std::cout << m.summary();
  return 0;
}

template <class Dev>
int predict(const std::string& file, const std::string& in, const std::string& out,
            std::size_t batch) {
  const auto model = locus::load_model<Dev>(file, {.compile = false});
  if (model.input_shapes().size() != 1 || model.output_shapes().size() != 1)
    throw locus::argument_error("locus-model predict: the model has " +
                                std::to_string(model.input_shapes().size()) + " inputs and " +
                                std::to_string(model.output_shapes().size()) +
                                " outputs; predict takes models of one input and one output");
  const locus::io::NpyArray x = locus::io::read_npy(locus::io::read_file(in), in);
  const locus::Shape shape(x.shape);
  if (x.shape.empty()) throw locus::shape_error(in + ": a 0-d array is not a batch");
  auto host = locus::Tensor<float, CPUDev>::from_data(shape, x.data.data());
  const auto y = locus::to<CPUDev>(model.predict(locus::to<Dev>(host), batch));
  locus::io::write_file_atomically(
      out, locus::io::write_npy(y.shape().to_vector(), std::span<const float>(y.data(), y.size())));
  return 0;
}

int convert(const std::string& in, const std::string& out) {
  if (!out.ends_with(".keras") && !out.ends_with(".weights.h5"))
    throw usage_error("convert: OUT must end in .keras or .weights.h5");
  // Keep the optimizer when locus can train with it; a model compiled with something else
  // converts without it (and says so).
  std::optional<locus::Model<CPUDev>> m;
  try {
    m.emplace(locus::load_model<CPUDev>(in));
  } catch (const locus::config_error& e) {
    m.emplace(locus::load_model<CPUDev>(in, {.compile = false}));
    std::cerr << "locus-model: converting without the training configuration: " << e.what() << "\n";
  }
  if (out.ends_with(".keras"))
    locus::save_model(*m, out);
  else
    locus::save_weights(*m, out);
  return 0;
}

int run(const std::vector<std::string>& a) {
  if (a.empty()) throw usage_error("no command");
  const std::string& cmd = a[0];
  if (cmd == "summary") {
    if (a.size() != 2) throw usage_error("summary takes one FILE");
    return summary(a[1]);
  }
  if (cmd == "convert") {
    if (a.size() != 3) throw usage_error("convert takes IN and OUT");
    return convert(a[1], a[2]);
  }
  if (cmd == "predict") {
    if (a.size() < 4) throw usage_error("predict takes FILE INPUT.npy OUTPUT.npy");
    std::string device = "cpu";
    std::size_t batch = 32;
    for (std::size_t i = 4; i < a.size(); ++i) {
      if (a[i] == "--device" && i + 1 < a.size()) {
        device = a[++i];
      } else if (a[i] == "--batch-size" && i + 1 < a.size()) {
        const std::string& v = a[++i];
        char* end = nullptr;
        const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n == 0 || v[0] == '-')
          throw usage_error("--batch-size takes a positive integer");
        batch = static_cast<std::size_t>(n);
      } else {
        throw usage_error("unknown option '" + a[i] + "'");
      }
    }
    if (device == "cpu") return predict<CPUDev>(a[1], a[2], a[3], batch);
    if (device == "gpu") return predict<GPUDev>(a[1], a[2], a[3], batch);
    throw usage_error("--device is cpu or gpu");
  }
  throw usage_error("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return run(args);
  } catch (const usage_error& e) {
    std::cerr << "locus-model: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "locus-model: " << e.what() << "\n";
    return 1;
  }
}
