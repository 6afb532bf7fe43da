// Run-time errors of the foundation API, on every device: each is a typed locus exception
// whose message names the operation and the shapes involved.
#include <cstdint>
#include <string>

#include "test_devices.hpp"

namespace {

using namespace locus;
using namespace locus_test;

template <class Dev>
class ErrorsTest : public ::testing::Test {};
TYPED_TEST_SUITE(ErrorsTest, TestDevices, DeviceNames);

TYPED_TEST(ErrorsTest, BroadcastMismatchNamesOperationAndShapes) {
  using Dev = TypeParam;
  const auto a = Tensor<float, Dev>::ones({2, 3}), b = Tensor<float, Dev>::ones({4});
  EXPECT_TRUE(
      throws_with<shape_error>([&] { (void)(a + b); }, "add", "[2, 3]", "[4]", "broadcast"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)(a - b); }, "subtract", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)(a * b); }, "multiply", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)(a / b); }, "divide", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)maximum(a, b); }, "maximum", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)minimum(a, b); }, "minimum", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)pow(a, b); }, "pow", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)greater(a, b); }, "greater", "[2, 3]", "[4]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)equal(b, a); }, "equal", "[4]", "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)where(a, a, b); }, "where", "[2, 3]", "[4]"));
  // Deep in a tree: the node that fails is named with its own operand shapes.
  const auto c = Tensor<float, Dev>::ones({3, 1});
  EXPECT_TRUE(
      throws_with<shape_error>([&] { (void)(exp(a * 2.f) + c); }, "add", "[2, 3]", "[3, 1]"));
  EXPECT_TRUE(
      throws_with<shape_error>([&] { Tensor<float, Dev> r = a + (b * 2.f); }, "[2, 3]", "[4]"));
  // Broadcasting is not symmetric padding: [2, 3] and [2] do not broadcast.
  EXPECT_THROW((void)(a + Tensor<float, Dev>::ones({2})), shape_error);
  EXPECT_THROW((void)(Tensor<float, Dev>::ones({4, 1, 3}) + Tensor<float, Dev>::ones({2, 2})),
               shape_error);
}

TYPED_TEST(ErrorsTest, ShapeErrorsOfTensorOperations) {
  using Dev = TypeParam;
  auto x = Tensor<float, Dev>::zeros({2, 3});
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.reshape({5}); }, "reshape", "[2, 3]", "[5]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)x.slice(1, 3); }, "slice", "[1, 3)", "[2, 3]"));
  EXPECT_TRUE(
      throws_with<shape_error>([&] { (void)transpose(x.reshape({6})); }, "transpose", "[6]"));
  EXPECT_TRUE(throws_with<shape_error>(
      [&] {
        x += Tensor<float, Dev>::zeros({3, 3});
      },
      "[2, 3]", "[3, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)matmul(x, x); }, "matmul", "[2, 3]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)x.dim(2); }, "dim", "[2, 3]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)sum(x, 2); }, "sum", "[2, 3]"));
  EXPECT_TRUE(throws_with<axis_error>([&] { (void)argmax(x, -3); }, "argmax", "[2, 3]"));
  // After an error the tensor is intact and usable.
  x += 1.f;
  EXPECT_TRUE(near_ref(x, xt::ones<double>({2, 3}), 0, 0));
}

TYPED_TEST(ErrorsTest, HostAccessErrorsOnCopiedResults) {
  using Dev = TypeParam;
  // Values of a device tensor are read on the host after locus::to<Device<CPU>>.
  const auto h = host(Tensor<float, Dev>::full({2, 3}, 5.f));
  EXPECT_EQ(h.at(1, 2), 5.f);
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)h.at(2, 0); }, "at", "(2, 0)", "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)h.at(0, 3); }, "(0, 3)", "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)h.at(0); }, "[2, 3]"));  // wrong rank
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)h.at(-1, 0); }, "[2, 3]"));
  EXPECT_TRUE(throws_with<shape_error>([&] { (void)h.item(); }, "item", "[2, 3]", "6 elements"));
  EXPECT_EQ(host(sum(Tensor<float, Dev>::full({2, 3}, 5.f))).item(), 30.f);
}

TEST(Errors, ShapesHaveAtMostEightDimensions) {
  EXPECT_NO_THROW((Shape{1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_TRUE(throws_with<shape_error>([] { Shape s{1, 1, 1, 1, 1, 1, 1, 1, 1}; }, "8 dimensions"));
  Shape s{1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_THROW(s.push_back(9), shape_error);
}

TEST(Errors, Hierarchy) {
  // Callers can catch exactly the class they handle, or every locus error at once.
  static_assert(std::is_base_of_v<shape_error, axis_error>);
  static_assert(std::is_base_of_v<error, shape_error>);
  static_assert(std::is_base_of_v<error, argument_error>);
  static_assert(std::is_base_of_v<error, device_error>);
  static_assert(std::is_base_of_v<device_error, no_platform_error>);
  static_assert(std::is_base_of_v<device_error, no_device_error>);
  static_assert(std::is_base_of_v<device_error, not_a_gpu_error>);
  static_assert(std::is_base_of_v<device_error, kernel_build_error>);
  static_assert(std::is_base_of_v<device_error, out_of_memory_error>);
  static_assert(std::is_base_of_v<device_error, opencl_error>);
  static_assert(std::is_base_of_v<error, io_error>);
  static_assert(std::is_base_of_v<io_error, format_error>);
  static_assert(std::is_base_of_v<error, communication_error>);
  static_assert(std::is_base_of_v<std::runtime_error, error>);
  const auto x = Tensor<float, CPUDev>::zeros({2});
  bool caught = false;
  try {
    (void)sum(x, 5);
  } catch (const error& e) {
    caught = std::string(e.what()).find("axis 5") != std::string::npos;
  }
  EXPECT_TRUE(caught);
  const out_of_memory_error oom("no memory", 100, 10);
  EXPECT_EQ(oom.requested(), 100u);
  EXPECT_EQ(oom.available(), 10u);
  EXPECT_EQ(opencl_error("x", -5).code(), -5);
}

}  // namespace
