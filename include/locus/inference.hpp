// Inference: models compiled for forward-only use (InferencePlan), int8 post-training
// quantization (calibrate, quantize, QuantizedPlan).
#pragma once

#include "inference/plan.hpp"
#include "inference/quantized_plan.hpp"
