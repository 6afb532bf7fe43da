// Embedding: row lookup in an [input_dim, output_dim] table (weight "embeddings",
// RandomUniform(-0.05, 0.05) as Keras's "uniform"). Output shape: the input's shape plus
// [output_dim].
//
// Indices arrive as the model's element type (a model's inputs are float tensors); an
// index is the value rounded toward zero, as Keras's cast to int32 does (so -0.5 reads row
// 0). An index outside [0, input_dim) (NaN included) never reads out of bounds:
//  * on Device<CPU> the call throws argument_error naming the index, its position and
//    input_dim, before anything is computed or changed;
//  * on a device its output row is zero and nothing is recorded: finding it would need a
//    round trip to the host (check the indices on the host first where that matters).
// The weight gradient is the adjoint of the lookup: each dy row is added into the table
// row it read (nn_backend.hpp: scatter_add_rows; rows of bad indices add nothing),
// deterministically on every device. The indices have no gradient: asked for one (a vjp
// with input gradients), the layer returns zeros, the derivative of the piecewise-constant
// index read.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "../../backend/nn_backend.hpp"
#include "common.hpp"

namespace locus::layers {

struct Embedding : nn::LayerSpec<Embedding> {
  std::size_t input_dim;
  std::size_t output_dim;
  nn::Initializer embeddings_initializer = nn::Initializer::random_uniform();

  Embedding(std::size_t in, std::size_t out) : input_dim(in), output_dim(out) {}

  static constexpr const char* keras_class = "Embedding";
  nn::Config config() const override {
    using nn::Config;
    return Config::make({{"input_dim", input_dim},
                         {"output_dim", output_dim},
                         {"embeddings_initializer", embeddings_initializer.config()},
                         {"embeddings_regularizer", nullptr},
                         {"activity_regularizer", nullptr},
                         {"embeddings_constraint", nullptr},
                         {"mask_zero", false}});
  }
  static Embedding from_config(const nn::Config& c) {
    Embedding e(nn::positive(c, keras_class, "input_dim"),
                nn::positive(c, keras_class, "output_dim"));
    if (e.input_dim > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      throw config_error("locus::Embedding: input_dim " + std::to_string(e.input_dim) +
                         " exceeds 2^31-1 (indices are int32)");
    }
    if (const auto* m = c.find("mask_zero"); m && m->as_bool()) {
      throw config_error("locus::Embedding: mask_zero is not supported (locus has no masking)");
    }
    if (const auto* q = c.find("quantization_config"); q && !q->is_null()) {
      throw config_error("locus::Embedding: quantized embeddings are not supported");
    }
    if (const auto* i = c.find("embeddings_initializer"); i && !i->is_null()) {
      e.embeddings_initializer = nn::Initializer::from_config(*i);
    }
    return e;
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    if (input_dim == 0 || output_dim == 0) {
      throw argument_error(nn::layer_label(*this) + ": input_dim and output_dim must be positive");
    }
    if (input_dim > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
      throw argument_error(nn::layer_label(*this) + ": input_dim " + std::to_string(input_dim) +
                           " exceeds 2^31-1 (indices are int32)");
    }
    Shape out = in[0];
    out.push_back(output_dim);
    return {out};
  }
  std::vector<nn::WeightSpec> weights(const std::vector<Shape>&) const override {
    return {{"embeddings", {input_dim, output_dim}, embeddings_initializer}};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  /// Throws argument_error for the first index of x (host data) outside [0, input_dim).
  template <class T>
  void check_indices(const T* x, std::size_t n) const {
    for (std::size_t i = 0; i < n; ++i) {
      const T v = x[i];
      if (v > T(-1) && v < static_cast<T>(input_dim)) continue;
      // The index Keras would read (the value rounded toward zero), or the value itself
      // when no integer stands for it (NaN, infinities, huge values).
      std::ostringstream value;
      if (std::isfinite(v) && std::abs(v) < T(1e18)) {
        value << static_cast<long long>(v);
      } else {
        value << v;
      }
      throw argument_error(nn::layer_label(*this) + ": index " + value.str() + " (input element " +
                           std::to_string(i) + ") is outside [0, " + std::to_string(input_dim) +
                           ")");
    }
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    using tensor = Tensor<T, Dev>;
    const tensor& x = f.x();
    if constexpr (HostDevice<Dev>) check_indices(x.data(), x.size());
    // The row of each index, -1 for one outside [0, input_dim) (NaN too: both tests fail),
    // which gather_rows reads as a zero row. The comparison happens before the conversion,
    // so no value outside int32's range is ever converted.
    const T lo = T(-1), hi = static_cast<T>(input_dim);
    Tensor<std::int32_t, Dev> rows = cast<std::int32_t>(where(greater(x, lo) * less(x, hi), x, lo));
    Shape os = x.shape();
    os.push_back(output_dim);
    std::vector<tensor> out;
    out.emplace_back(uninitialized, os);
    nn_backend_for<Dev>::gather_rows(f.w[0]->storage(), output_dim, rows.storage(), x.size(),
                                     out[0].storage());
    if (f.saved) f.saved->indices.push_back(std::move(rows));
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    using tensor = Tensor<T, Dev>;
    const Tensor<std::int32_t, Dev>& rows = b.saved.indices[0];
    b.dw[0] = tensor(uninitialized, {input_dim, output_dim});
    nn_backend_for<Dev>::scatter_add_rows(b.dy[0]->storage(), output_dim, rows.storage(),
                                          rows.size(), input_dim, b.dw[0].storage());
    std::vector<tensor> dx(1);
    if (b.need_dx[0]) dx[0] = tensor::zeros(b.in_shapes[0]);
    return dx;
  }
};

}  // namespace locus::layers
