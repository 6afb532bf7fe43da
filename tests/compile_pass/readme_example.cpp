// The example of README.md, verbatim: the README must not show code that does not compile.
#include <iostream>
#include <locus/locus.hpp>

using namespace locus;
using Host = Device<CPU>;
using Gpu = Device<GPU>;  // Device<GPU, 0>; Device<GPU, 1> is the second OpenCL device

int main() {
  auto x = Tensor<float, Host>::uniform({64, 128}, /*seed=*/1);
  auto w = Tensor<float, Host>::uniform({128, 10}, /*seed=*/2);

  auto xg = to<Gpu>(x);  // explicit, counted transfers
  auto wg = to<Gpu>(w);
  Tensor<float, Gpu> y = matmul(xg, wg) * 2.0f + 1.0f;  // runs on the GPU, nowhere else

  std::cout << to<Host>(y) << '\n';  // reading it needs an explicit copy back
  // auto z = x + y;         // does not compile: Device<CPU> + Device<GPU, 0>
  // float v = y(0, 0);      // does not compile: no host access to GPU memory
}
