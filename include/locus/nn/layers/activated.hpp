// The bias-and-activation ending that Dense and the convolutions share.
//
// Forward: y = act(z + b) in one fused pass. Backward needs act'(.), which for most
// activations is a function of y (kept as the layer's output); gelu and silu need the
// pre-activation, which a training call then keeps in its Saved record.
#pragma once

#include "../activation.hpp"
#include "../layer.hpp"

namespace locus::nn {

/// y = act(z + bias) (bias may be null). In training (saved not null), when the
/// derivative needs the pre-activation it is appended to saved->tensors.
template <class T, AnyDevice Dev>
Tensor<T, Dev> activate_output(Activation a, Tensor<T, Dev> z, const Tensor<T, Dev>* bias, Saved<Dev, T>* saved) {
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
void activation_grad_in_place(Activation a, const Tensor<T, Dev>* y, const Tensor<T, Dev>* z, Tensor<T, Dev>& dy) {
  if (a == Activation::linear) return;
  if (derivative_needs_input(a)) {
    dy = activation_backward_from_input(a, *z, dy);
  } else {
    dy = activation_backward(a, *y, dy);
  }
}

/// What a layer ending in `a` needs from its forward pass besides its inputs.
inline bool output_needed_for(Activation a) { return a != Activation::linear && !derivative_needs_input(a); }

}  // namespace locus::nn
