// libFuzzer entry point of locus_fuzz::hdf5_weights (see fuzz_targets.hpp).
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  locus_fuzz::hdf5_weights(data, size);
  return 0;
}
