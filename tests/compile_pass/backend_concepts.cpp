// The backend seam is a checked contract (backend/concepts.hpp): both backends satisfy
// TensorBackend and NnBackend for every device index, and a backend that lacks a kernel,
// or one whose kernels run on other buffers than its tensors', does not.
#include <locus/locus.hpp>

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using G1 = Device<GPU, 1>;

static_assert(TensorBackend<backend_for<C>, C> && TensorBackend<backend_for<G>, G> &&
              TensorBackend<backend_for<G1>, G1>);
static_assert(NnBackend<nn_backend_for<C>, C> && NnBackend<nn_backend_for<G>, G> &&
              NnBackend<nn_backend_for<G1>, G1>);

// Everything but scatter_add_rows: not a backend.
struct without_scatter {
  template <class T>
  using buffer = backend_for<C>::buffer<T>;
  template <class... A>
  static void im2col(A&&...) {}
  template <class... A>
  static void col2im(A&&...) {}
  template <class... A>
  static void pool2d_forward(A&&...) {}
  template <class... A>
  static void pool2d_backward(A&&...) {}
  template <class... A>
  static void gather_rows(A&&...) {}
  template <class... A>
  static void one_hot(A&&...) {}
  template <class... A>
  static void copy_block(A&&...) {}
  template <class... A>
  static void depthwise_conv2d_forward(A&&...) {}
  template <class... A>
  static void depthwise_conv2d_backward_input(A&&...) {}
  template <class... A>
  static void depthwise_conv2d_backward_kernel(A&&...) {}
};
static_assert(!NnBackend<without_scatter, C>);

struct complete : without_scatter {
  template <class... A>
  static void scatter_add_rows(A&&...) {}
};
static_assert(NnBackend<complete, C>, "the probe above fails for the missing kernel alone");
// The same kernels over another device's buffers: the nn seam must share the tensors' storage.
static_assert(!NnBackend<complete, G>);

// A tensor backend without a GEMM.
struct no_gemm : backend_for<C> {
  static void gemm() = delete;
};
static_assert(!TensorBackend<no_gemm, C>);

int main() {}
