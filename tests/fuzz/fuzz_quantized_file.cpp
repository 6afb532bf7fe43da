// libFuzzer entry point of locus_fuzz::quantized_file (see fuzz_targets.hpp).
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  locus_fuzz::quantized_file(data, size);
  return 0;
}
