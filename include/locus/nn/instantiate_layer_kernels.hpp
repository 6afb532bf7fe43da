// Include in exactly one translation unit of a program built with
// LOCUS_EXTERN_LAYER_KERNELS (see nn/layers/registry.hpp): it instantiates every layer
// kernel of the host and GPU 0 backends, in float and double, which the other units then
// link to instead of compiling their own copies.
#pragma once

#include "../locus.hpp"

#define LOCUS_NN_INSTANTIATE_BIND_LAYER_(Dev, T) template LOCUS_NN_BIND_LAYER_SIGNATURE_(Dev, T);
LOCUS_NN_FOR_EACH_LAYER_KERNEL_SET_(LOCUS_NN_INSTANTIATE_BIND_LAYER_)
#undef LOCUS_NN_INSTANTIATE_BIND_LAYER_
