// The layer kernels of the unit tests, compiled once: every other test unit is built with
// LOCUS_EXTERN_LAYER_KERNELS (tests/CMakeLists.txt) and links to these instead of
// instantiating its own copies (see nn/layers/registry.hpp).
#include <locus/nn/instantiate_layer_kernels.hpp>
