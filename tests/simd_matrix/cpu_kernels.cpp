// The representative translation unit of the -march matrix (tests/CMakeLists.txt): it
// instantiates every xsimd kernel the CPU backend has, for each element type, so that
// compiling it warning-free at -O3 -Werror for a given -march/-mtune proves the project's
// own -Werror build does not depend on the build machine's CPU. Compile-only; never run.
// With LOCUS_MATRIX_TRAINING_STEP it also binds and trains a model, which instantiates every
// layer's kernels (tests/CMakeLists.txt says for which configurations).
#include <cstdint>

#include <locus/locus.hpp>

namespace {

using namespace locus;
using Host = Device<CPU>;

template <class T>
T floating_kernels(const Tensor<T, Host>& a, const Tensor<T, Host>& b) {
  Tensor<T, Host> r = exp(a) + log(b) + sqrt(b) + tanh(a) + relu(a) + sigmoid(a) + abs(a) +
                      square(a) + maximum(a, b) + minimum(a, b) + pow(b, a) - a / b + erf(a) +
                      erfc(a) + expm1(a) + log1p(b);
  r = where(greater(a, b), r, -a) + where(less_equal(a, b), a, T(1)) + cast<T>(equal(a, b)) +
      cast<T>(greater_equal(a, b)) + cast<T>(less(a, b));
  r += a;
  r *= b;
  Tensor<T, Host> m = matmul(a, b, {.transpose_b = true});
  // The GEMM epilogues (bias, activation) and the fused column sums of B.
  const std::size_t n = a.shape()[0];
  const auto bias = Tensor<T, Host>::uniform({n}, 3);
  Tensor<T, Host> colsum = Tensor<T, Host>::zeros({n});
  for (const gemm_activation act : {gemm_activation::linear, gemm_activation::relu,
                                    gemm_activation::sigmoid, gemm_activation::tanh})
    detail::gemm_into(a, 1, n, n, b, 1, n, n, {.transpose_a = true}, m, T(1), T(0), &bias, act,
                      &colsum);
  return sum(r).item() + mean(r).item() + max(r).item() + min(m).item() + sum(r, 1).item() +
         T(argmax(r).item()) + T(argmax(r, 0)(0));
}

std::int32_t integer_kernels(const Tensor<std::int32_t, Host>& a,
                             const Tensor<std::int32_t, Host>& b) {
  Tensor<std::int32_t, Host> r = a + b - a * b / (abs(b) + 1) + maximum(a, b) + minimum(a, b);
  r = where(greater(a, b), r, -a) + cast<std::int32_t>(cast<float>(a) * 0.5f);
  return sum(r).item() + max(r).item() + min(r).item() + argmax(r).item();
}

// The nn kernels directly (the float training step below reaches them too, through every
// layer; this keeps double covered without a second, slower model instantiation).
template <class T>
T nn_kernels() {
  using NB = nn_backend_for<Host>;
  const conv_geometry c{2, 9, 9, 3, 3, 3, 1, 1, 1, 1, 9, 9};
  const pool_geometry p{2, 9, 9, 3, 2, 2, 2, 2, 0, 0, 4, 4};
  NB::buffer<T> x(2 * 9 * 9 * 3), cols(2 * 9 * 9 * 27), dx(x.size()), y(2 * 4 * 4 * 3);
  NB::buffer<std::int32_t> am(y.size()), idx(2);
  NB::im2col(x, c, cols);
  NB::col2im(cols, c, dx);
  for (const pool_kind k : {pool_kind::max, pool_kind::average}) {
    NB::pool2d_forward(k, x, p, y, &am);
    NB::pool2d_backward(k, y, &am, p, dx);
  }
  NB::gather_rows(x, x.size() / 2, idx, 2, dx);
  NB::one_hot(idx, 2, 5, y);
  NB::copy_block(x, block_layout{0, {81, 9, 1}}, dx, block_layout{0, {81, 9, 1}}, {2, 9, 9});
  NB::buffer<T> dw(3 * 3 * 3 * 2), z(2 * 9 * 9 * 6);
  NB::depthwise_conv2d_forward(x, dw, c, 2, z);
  NB::depthwise_conv2d_backward_input(z, dw, c, 2, dx);
  NB::depthwise_conv2d_backward_kernel(x, z, c, 2, dw);
  NB::scatter_add_rows(x, 9, idx, 2, 4, y);
  return dx.data()[0] + y.data()[1] + dw.data()[0];
}

#if defined(LOCUS_MATRIX_TRAINING_STEP)
double training_step() {
  using T = float;
  Sequential<Host, T> model(Input({8, 8, 2}), Conv2D(4, {3, 3}, Activation::relu),
                            BatchNormalization(), MaxPooling2D({2, 2}), AveragePooling2D({1, 1}),
                            Flatten(), Dropout(0.25), Dense(6, Activation::gelu),
                            Dense(3, Activation::softmax));
  model.build(1);
  model.compile(Adam{}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  const auto x = Tensor<T, Host>::uniform({4, 8, 8, 2}, 2);
  const auto y = Tensor<std::int32_t, Host>{0, 1, 2, 1};
  model.fit(x, y, {.epochs = 1, .batch_size = 2, .verbose = 0});
  return model.evaluate(x, y, 2).at("loss") + double(model.predict(x)(0, 0));
}
#else
double training_step() {
  return 0.0;
}
#endif

}  // namespace

int main() {
  const auto f = Tensor<float, Host>::uniform({33, 33}, 1);
  const auto d = Tensor<double, Host>::uniform({33, 33}, 2);
  const auto i = cast<std::int32_t>(Tensor<float, Host>::uniform({100}, 3) * 100.f);
  return int(floating_kernels(f, f) + floating_kernels(d, d) +
             integer_kernels(Tensor<std::int32_t, Host>(i), Tensor<std::int32_t, Host>(i)) +
             nn_kernels<float>() + nn_kernels<double>() + training_step());
}
