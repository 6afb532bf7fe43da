// The io component: saving and loading models in Keras's formats.
//
//   locus::save_model(model, "model.keras");
//   auto served = locus::load_model<locus::Device<locus::GPU>>("model.keras");
//
// Needs HDF5 (C), libzip and nlohmann_json: find_package(locus CONFIG REQUIRED COMPONENTS io)
// and link locus::io. <locus/locus.hpp> does not include this header, so a program that
// only computes needs none of those libraries.
#pragma once

#include "io/checkpoint.hpp"
#include "io/load.hpp"
#include "io/npy.hpp"
#include "io/quantized.hpp"
#include "io/save.hpp"
