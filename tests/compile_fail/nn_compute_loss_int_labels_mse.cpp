// EXPECT: locus: MeanSquaredError needs float targets shaped like the output
// Loss and labels: nn::compute_loss() on its own, MeanSquaredError with int32 labels.
#include <locus/locus.hpp>

using namespace locus;
using G = Device<GPU>;

void snippet() {
  auto out = Tensor<float, G>::zeros({8, 3});
  auto y = Tensor<std::int32_t, G>::zeros({8, 3});
#ifdef LOCUS_SHOULD_FAIL
  [[maybe_unused]] auto lv = nn::compute_loss(MeanSquaredError{}, out, y);
#else
  [[maybe_unused]] auto lv =
      nn::compute_loss(MeanSquaredError{}, out, Tensor<float, G>(cast<float>(y)));
#endif
}
