// locus: tensors and Keras-style neural networks whose device is part of their type.
// Include this one header for everything.
#pragma once

#include "device.hpp"
#include "error.hpp"
#include "shape.hpp"
#include "counters.hpp"
#include "expr.hpp"
#include "tensor.hpp"
#include "transfer.hpp"
#include "ops/compare.hpp"
#include "ops/linalg.hpp"
#include "ops/reduce.hpp"

// Backends: one specialisation of backend_for<> per device kind.
#include "backend/cpu/backend.hpp"
#include "backend/cpu/nn.hpp"
#include "backend/opencl/backend.hpp"
#include "backend/opencl/nn.hpp"
#include "opencl.hpp"

// Models and data.
#include "nn.hpp"
#include "data/augment.hpp"
#include "data/dataset.hpp"
#include "data/fashion_mnist.hpp"
#include "data/idx.hpp"
#include "parallel.hpp"
#include "inference.hpp"
