// The intended way to work across devices compiles: explicit locus::to<Dev>(x) in every
// direction, arithmetic on one device, host access after a copy, locus::cast<T>(x)
// between element types.
#include <iostream>

#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

void snippet() {
  auto a = Tensor<float, C>::ones({2, 3});
  auto w = Tensor<float, C>::uniform({3, 4}, 42);

  // host -> GPU 0 -> GPU 1 -> host
  Tensor<float, G> g = to<G>(a);
  Tensor<float, G1> g1 = to<G1>(g);
  Tensor<float, C> back = to<C>(g1);

  // one device per expression, on each device
  Tensor<float, C> rc = a * 2.0f + back - maximum(a, back) / 3.0f;
  Tensor<float, G> rg = g * 2.0f + g - minimum(g, g) / 3.0f;
  rg += g;
  Tensor<float, G1> mg1 = matmul(g1, to<G1>(w));
  Tensor<float, C> mc = matmul(a, w);

  // host access only on the host, after an explicit copy
  auto host = to<C>(rg);
  float sum = host(0, 0) + host.at(1, 2) + *host.data();
  for (float x : host) sum += x;
  std::cout << host << to<C>(mg1) << mc << rc << sum << '\n';

  // element types meet through an explicit cast
  auto d = Tensor<double, C>::zeros({2, 3});
  Tensor<double, C> mixed = cast<double>(a) + d;
  Tensor<float, C> narrowed = cast<float>(mixed);
  std::cout << narrowed << '\n';
}
