// How an inference plan is made (plan.hpp).
#pragma once

#include <cstddef>

namespace locus {

struct InferenceOptions {
  /// The largest number of samples one pass computes (the device's buffers are sized for
  /// it; the CPU runs any batch in micro-batches and ignores it).
  std::size_t max_batch = 256;
  /// Workspaces, i.e. calls (CPU: pool threads) that run at once; 0: the CPU's thread count
  /// plus one, one on a device (its queue runs one pass at a time anyway).
  std::size_t workspaces = 0;
  /// CPU: images per micro-batch (0: chosen from the model's largest activation).
  std::size_t micro_batch = 0;
};

}  // namespace locus
