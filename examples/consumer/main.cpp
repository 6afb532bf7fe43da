// Uses an installed locus through find_package(locus CONFIG REQUIRED): the smallest
// program that proves the package exports a usable locus::locus target.
#include <cstdlib>
#include <iostream>

#include <locus/locus.hpp>

int main() {
  using Host = locus::Device<locus::CPU>;
  auto a = locus::Tensor<float, Host>::ones({2, 3});
  locus::Tensor<float, Host> b = a * 2.0f + a;  // every element is 3
  float sum = 0;
  for (float x : b) sum += x;
  std::cout << "locus consumer: " << b << "\nsum = " << sum << '\n';
  return sum == 18.0f ? EXIT_SUCCESS : EXIT_FAILURE;
}
