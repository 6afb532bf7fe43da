// The bias-and-activation ending that Dense and the convolutions share.
//
// Forward: y = act(z + b) in one fused pass, or, for a layer whose z comes out of a GEMM,
// inside that GEMM's write-back (gemm_ending says how much of it the GEMM's epilogue takes).
// Backward needs act'(.), which for most activations is a function of y (kept as the
// layer's output); gelu and silu need the pre-activation, which a training call then keeps
// in its Saved record.
#pragma once

#include "../../backend/backend.hpp"
#include "../activation.hpp"
#include "../layer.hpp"

namespace locus::nn {

/// How a layer's ending act(z + b) splits between the epilogue of the GEMM computing z
/// (which always takes the bias) and what runs after it.
struct GemmEnding {
  gemm_activation in_gemm = gemm_activation::linear;
  Activation after = Activation::linear;
};

/// The GEMM applies the activations that are a few instructions in registers; the others
/// (softmax, gelu, ...: any activation it does not know) run after it, as they did before.
/// A training call that must keep the pre-activation (derivative_needs_input) gets it from
/// the GEMM with the bias added and the activation still to apply.
inline GemmEnding gemm_ending(Activation a, bool training) {
  if (!(training && derivative_needs_input(a))) {
    switch (a) {
      case Activation::linear:
        return {gemm_activation::linear, Activation::linear};
      case Activation::relu:
        return {gemm_activation::relu, Activation::linear};
      case Activation::sigmoid:
        return {gemm_activation::sigmoid, Activation::linear};
      case Activation::tanh:
        return {gemm_activation::tanh, Activation::linear};
      default:
        break;
    }
  }
  return {gemm_activation::linear, a};
}

/// The derivative a layer ending in `a` can leave to the consumer of its output (gradient
/// fusion, plan.hpp).
inline MovedGrad movable_grad_of(Activation a) {
  return a == Activation::relu ? MovedGrad::relu : MovedGrad::none;
}

/// y = act(z + bias) (bias may be null). In training (saved not null), when the
/// derivative needs the pre-activation it is appended to saved->tensors.
template <class T, AnyDevice Dev>
Tensor<T, Dev> activate_output(Activation a, Tensor<T, Dev> z, const Tensor<T, Dev>* bias,
                               Saved<Dev, T>* saved) {
  if (saved && derivative_needs_input(a)) {
    if (bias) z += *bias;
    saved->tensors.push_back(z);
    return activate(a, std::move(z));
  }
  if (bias) return bias_activate(a, std::move(z), *bias);
  return activate(a, std::move(z));
}

/// dL/dz, computed in place in dy. `y` is the layer's output (kept when the layer asked
/// for its outputs), `z` the saved pre-activation (when the derivative needs it).
template <class T, AnyDevice Dev>
void activation_grad_in_place(Activation a, const Tensor<T, Dev>* y, const Tensor<T, Dev>* z,
                              Tensor<T, Dev>& dy) {
  if (a == Activation::linear) return;
  if (derivative_needs_input(a)) {
    dy = activation_backward_from_input(a, *z, dy);
  } else {
    dy = activation_backward(a, *y, dy);
  }
}

/// What a layer ending in `a` needs from its forward pass besides its inputs.
inline bool output_needed_for(Activation a) {
  return a != Activation::linear && !derivative_needs_input(a);
}

}  // namespace locus::nn
