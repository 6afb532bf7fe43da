// Keras-style models: layers, the functional API, Model and Sequential, losses,
// optimizers, metrics, the training loop and callbacks.
#pragma once

#include "nn/activation.hpp"
#include "nn/functional.hpp"
#include "nn/layers.hpp"
#include "nn/losses.hpp"
#include "nn/metrics.hpp"
#include "nn/model.hpp"
#include "nn/optimizers.hpp"
#include "nn/sequential.hpp"
#include "nn/training/callbacks.hpp"
#include "nn/training/progress.hpp"
#include "nn/training/trainer.hpp"
