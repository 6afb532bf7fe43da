// Writes the seed of the quantized_file fuzz corpus: a small int8 model (convolution with a
// folded normalisation, pooling, a residual add, a dense softmax head) saved by
// save_quantized. Built with LOCUS_FUZZ; run as
//   build/fuzz/tests/fuzz/seed_quantized_file tests/fuzz/corpus/quantized_file/seed.keras
// and grown from there by fuzz_quantized_file (see CMakeLists.txt).
#include <cstdio>

#include <locus/io.hpp>
#include <locus/locus.hpp>

int main(int argc, char** argv) {
  using namespace locus;
  using C = Device<CPU>;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.keras\n", argv[0]);
    return 2;
  }
  const Input x({6, 6, 2});
  auto a = BatchNormalization()(Conv2D(4, {3, 3}, Activation::linear, {1, 1}, Padding::same)(x));
  auto b = Conv2D(4, {1, 1}, Activation::relu)(a);
  auto h = MaxPooling2D({2, 2})(layers::Activation("relu")(Add()({a, b})));
  Model<C> model(nn::Functional(x, Dense(3, Activation::softmax)(Flatten()(h)), "seed"), 1);
  const InferencePlan<C> plan(model);
  const auto q = quantize(plan, calibrate(plan, Tensor<float, C>::uniform({16, 6, 6, 2}, 2)));
  save_quantized(model, q, argv[1]);
  return 0;
}
