// Keras-style models: layers, Sequential, losses, optimizers, metrics, callbacks.
#pragma once

#include "nn/activation.hpp"
#include "nn/callbacks.hpp"
#include "nn/layer.hpp"
#include "nn/layers/make_layer.hpp"
#include "nn/losses.hpp"
#include "nn/metrics.hpp"
#include "nn/optimizers.hpp"
#include "nn/sequential.hpp"
