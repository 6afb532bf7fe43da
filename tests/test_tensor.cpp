// Tensor creation, shapes, copies, reshape, transpose and slicing, on every device.
#include <cstdint>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xview.hpp>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class TensorTest : public ::testing::Test {};
TYPED_TEST_SUITE(TensorTest, TestDevices, DeviceNames);

TYPED_TEST(TensorTest, ZerosOnesFullEveryElementType) {
  using Dev = TypeParam;
  const Shape s{2, 3, 4};
  EXPECT_TRUE(near_ref(Tensor<float, Dev>::zeros(s), xt::zeros<double>({2, 3, 4})));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>::ones(s), xt::ones<double>({2, 3, 4})));
  EXPECT_TRUE(near_ref(Tensor<float, Dev>::full(s, 2.5f), xt::ones<double>({2, 3, 4}) * 2.5));
  EXPECT_TRUE(near_ref(Tensor<double, Dev>::full(s, -0.1), xt::ones<double>({2, 3, 4}) * -0.1));
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>::full(s, -7), xt::ones<double>({2, 3, 4}) * -7));
  EXPECT_TRUE(near_ref(Tensor<std::int32_t, Dev>::ones({5}), xt::ones<double>({5})));
  // Large enough for the CPU thread pool and several GPU work-groups.
  const auto big = Tensor<float, Dev>::full({1 << 18}, 3.f);
  EXPECT_TRUE(near_ref(big, xt::ones<double>({1 << 18}) * 3.0));
  // A zero-filled tensor from a shape; the default tensor is empty with shape [0].
  EXPECT_TRUE(near_ref(Tensor<float, Dev>(Shape{3, 2}), xt::zeros<double>({3, 2})));
  const Tensor<float, Dev> empty;
  EXPECT_EQ(empty.shape(), Shape{0});
  EXPECT_EQ(empty.size(), 0u);
}

TYPED_TEST(TensorTest, ShapeQueries) {
  using Dev = TypeParam;
  const auto t = Tensor<float, Dev>::zeros({2, 3, 4});
  EXPECT_EQ(t.rank(), 3u);
  EXPECT_EQ(t.size(), 24u);
  EXPECT_EQ(t.dim(0), 2u);
  EXPECT_EQ(t.dim(2), 4u);
  EXPECT_EQ(t.dim(-1), 4u);
  EXPECT_EQ(t.dim(-3), 2u);
  EXPECT_THROW((void)t.dim(3), axis_error);
  EXPECT_THROW((void)t.dim(-4), axis_error);
  // Rank 0: one element; a zero extent: no elements.
  const auto s = Tensor<float, Dev>::full(Shape{}, 4.f);
  EXPECT_EQ(s.rank(), 0u);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(host(s).item(), 4.f);
  const auto z = Tensor<float, Dev>::zeros({0, 3});
  EXPECT_EQ(z.size(), 0u);
  EXPECT_EQ(host(z).shape(), (Shape{0, 3}));
}

TYPED_TEST(TensorTest, FromXtensorExpression) {
  using Dev = TypeParam;
  const Tensor<float, CPUDev> h(xt::arange(24.f).reshape({2, 3, 4}) * 0.5f - 3.f);
  ASSERT_EQ(h.shape(), (Shape{2, 3, 4}));
  const auto d = on<Dev>(h);
  Ref want = xt::arange(24.0);
  want = want * 0.5 - 3.0;
  want.reshape({2, 3, 4});
  EXPECT_TRUE(near_ref(d, want, 0, 0));
  // An integer tensor from a double expression converts element by element.
  const Tensor<std::int32_t, CPUDev> hi(xt::arange(5.0) * 2.0);
  EXPECT_TRUE(near_ref(on<Dev>(hi), xt::arange(5.0) * 2.0, 0, 0));
  // from_data copies host memory.
  const std::vector<double> raw{1, 2, 3, 4, 5, 6};
  const auto fd = on<Dev>(Tensor<double, CPUDev>::from_data({3, 2}, raw.data()));
  EXPECT_TRUE(near_ref(fd, Ref{{1, 2}, {3, 4}, {5, 6}}, 0, 0));
}

TYPED_TEST(TensorTest, NestedInitializerLists) {
  using Dev = TypeParam;
  const auto t1 = on<Dev>(Tensor<float, CPUDev>{1.f, 2.f, 3.f});
  EXPECT_TRUE(near_ref(t1, Ref{1, 2, 3}, 0, 0));
  const auto t2 = on<Dev>(Tensor<float, CPUDev>{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}});
  EXPECT_TRUE(near_ref(t2, Ref{{1, 2, 3}, {4, 5, 6}}, 0, 0));
  const auto t3 =
      on<Dev>(Tensor<double, CPUDev>{{{1, 2}, {3, 4}, {5, 6}}, {{7, 8}, {9, 10}, {11, 12}}});
  EXPECT_TRUE(near_ref(t3, Ref{{{1, 2}, {3, 4}, {5, 6}}, {{7, 8}, {9, 10}, {11, 12}}}, 0, 0));
  const auto t4 =
      on<Dev>(Tensor<std::int32_t, CPUDev>{{{{1, 2, 3}, {4, 5, 6}}}, {{{7, 8, 9}, {10, 11, 12}}}});
  EXPECT_EQ(t4.shape(), (Shape{2, 1, 2, 3}));
  EXPECT_TRUE(near_ref(t4, Ref{{{{1, 2, 3}, {4, 5, 6}}}, {{{7, 8, 9}, {10, 11, 12}}}}, 0, 0));
  // Element order is row-major.
  EXPECT_EQ(host(t2)(1, 0), 4.f);
  EXPECT_EQ(host(t3)(1, 2, 1), 12.0);
}

TYPED_TEST(TensorTest, RaggedInitializerListsThrowShapeError) {
  using V = Tensor<float, CPUDev>;
  EXPECT_TRUE(throws_with<shape_error>([] { V t{{1.f, 2.f}, {3.f}}; }, "ragged"));
  EXPECT_TRUE(throws_with<shape_error>([] { V t{{1.f}, {2.f, 3.f}}; }, "ragged"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        V t{{{1.f, 2.f}}, {{3.f, 4.f}, {5.f, 6.f}}};
      },
      "ragged"));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        V t{{{{1.f, 2.f}, {3.f, 4.f}}}, {{{5.f, 6.f}, {7.f}}}};
      },
      "ragged"));
}

TYPED_TEST(TensorTest, CopiesAreDeepAndMovesAreCheap) {
  using Dev = TypeParam;
  auto a = on<Dev>(Tensor<float, CPUDev>{1.f, 2.f, 3.f});
  Tensor<float, Dev> b = a;
  b += 10.f;
  EXPECT_TRUE(near_ref(a, Ref{1, 2, 3}, 0, 0));
  EXPECT_TRUE(near_ref(b, Ref{11, 12, 13}, 0, 0));
  Tensor<float, Dev> c = Tensor<float, Dev>::zeros({7});
  c = a;  // copy-assign with a different size
  EXPECT_TRUE(near_ref(c, Ref{1, 2, 3}, 0, 0));
  Tensor<float, Dev> m = std::move(b);
  EXPECT_TRUE(near_ref(m, Ref{11, 12, 13}, 0, 0));
}

TYPED_TEST(TensorTest, Reshape) {
  using Dev = TypeParam;
  const auto h = Tensor<float, CPUDev>(xt::arange(24.f));
  const auto x = on<Dev>(h);
  const Ref flat = xt::arange(24.0);
  auto check = [&](const Tensor<float, Dev>& r, std::vector<std::size_t> shape) {
    Ref want = flat;
    want.reshape(shape);
    EXPECT_TRUE(near_ref(r, want, 0, 0)) << shape_string(shape);
  };
  check(x.reshape({2, 3, 4}), {2, 3, 4});
  check(x.reshape({4, -1}), {4, 6});
  check(x.reshape({-1, 3}), {8, 3});
  check(x.reshape({2, -1, 2}), {2, 6, 2});
  check(x.reshape({-1}), {24});
  check(x.reshape(Shape{1, 24, 1}), {1, 24, 1});
  check(on<Dev>(h).reshape({6, 4}), {6, 4});  // the rvalue overload
  // The source keeps its shape.
  EXPECT_EQ(x.shape(), Shape{24});
  // Reshaping to rank 0 and back.
  const auto one = on<Dev>(Tensor<float, CPUDev>{5.f}).reshape(Shape{});
  EXPECT_EQ(one.rank(), 0u);
  EXPECT_EQ(host(one).item(), 5.f);
}

TYPED_TEST(TensorTest, BadReshapeNamesBothShapes) {
  using Dev = TypeParam;
  const auto x = Tensor<float, Dev>::zeros({2, 3});
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({4, 2}); }, "[2, 3]", "[4, 2]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape(Shape{7}); }, "[2, 3]", "[7]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({-1, 4}); }, "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({-1, -1}); }, "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({-2, 3}); }, "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({0, -1}); }, "[2, 3]"));
}

TYPED_TEST(TensorTest, Transpose2D) {
  using Dev = TypeParam;
  for (auto [r, c] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 1}, {1, 7}, {7, 1}, {3, 5}, {33, 65}, {64, 64}, {129, 31}}) {
    const auto h = random_host<float>({r, c}, 100 + r * c);
    const Ref want = xt::transpose(ref(h));
    EXPECT_TRUE(near_ref(transpose(on<Dev>(h)), want, 0, 0)) << r << "x" << c;
  }
  const auto hi = Tensor<std::int32_t, CPUDev>{{1, 2, 3}, {4, 5, 6}};
  EXPECT_TRUE(near_ref(transpose(on<Dev>(hi)), Ref{{1, 4}, {2, 5}, {3, 6}}, 0, 0));
  const auto hd = random_host<double>({17, 9}, 5);
  EXPECT_TRUE(near_ref(transpose(on<Dev>(hd)), Ref(xt::transpose(ref(hd))), 0, 0));
  // An empty matrix transposes to an empty matrix of swapped shape.
  EXPECT_EQ(transpose(Tensor<float, Dev>::zeros({0, 4})).shape(), (Shape{4, 0}));
  EXPECT_TRUE(throws_with<shape_error>(
      [] {
        (void)transpose(Tensor<float, Dev>::zeros({2, 3, 4}));
      },
      "transpose", "[2, 3, 4]"));
  EXPECT_TRUE(
      throws_with<shape_error>([] { (void)transpose(Tensor<float, Dev>::zeros({5})); }, "[5]"));
}

TYPED_TEST(TensorTest, SliceOfTheFirstAxis) {
  using Dev = TypeParam;
  const auto h = Tensor<float, CPUDev>(xt::arange(12.f).reshape({4, 3}));
  const auto x = on<Dev>(h);
  EXPECT_TRUE(near_ref(x.slice(1, 3), Ref{{3, 4, 5}, {6, 7, 8}}, 0, 0));
  EXPECT_TRUE(near_ref(x.slice(0, 4), ref(h), 0, 0));
  EXPECT_TRUE(near_ref(x.slice(3, 4), Ref{{9, 10, 11}}, 0, 0));
  EXPECT_EQ(x.slice(2, 2).shape(), (Shape{0, 3}));
  EXPECT_EQ(x.slice(4, 4).shape(), (Shape{0, 3}));
  const auto v = on<Dev>(Tensor<double, CPUDev>{1, 2, 3, 4, 5});
  EXPECT_TRUE(near_ref(v.slice(1, 4), Ref{2, 3, 4}, 0, 0));
  const auto h3 = random_host<float>({5, 2, 3}, 9);
  Ref want3 = xt::view(ref(h3), xt::range(2, 5));
  EXPECT_TRUE(near_ref(on<Dev>(h3).slice(2, 5), want3, 0, 0));
}

TYPED_TEST(TensorTest, SliceBoundsErrors) {
  using Dev = TypeParam;
  const auto x = Tensor<float, Dev>::zeros({4, 3});
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.slice(2, 5); }, "[2, 5)", "[4, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.slice(3, 1); }, "[3, 1)", "[4, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.slice(5, 5); }, "[4, 3]"));
  const auto s = Tensor<float, Dev>::zeros(Shape{});
  EXPECT_THROW((void)s.slice(0, 1), shape_error);
}

}  // namespace
