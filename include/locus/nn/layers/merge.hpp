// Merging layers: Add, Subtract, Multiply (element-wise) and Concatenate.
//
// Keras's merge layers broadcast only in limited ways (size-1 axes, inputs of lower rank
// expanded at axis 1); locus requires the element-wise merges' inputs to have one shape,
// and Concatenate's to agree on every axis but the concatenation axis. A mismatch is a
// shape_error at the symbolic call that names the layer and every input shape.
//
// Add and Subtract read nothing of their forward pass in backward (the gradient passes
// through, negated for Subtract's second input); Multiply reads its inputs. Concatenate
// is one strided block copy per input forward (nn_backend copy_block) and one per input
// backward (the split of dy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../backend/nn_backend.hpp"
#include "common.hpp"

namespace locus::layers {

namespace merge_detail {

/// "[2, 3], [2, 4]": every shape of a call, for messages.
inline std::string shapes_string(const std::vector<Shape>& shapes) {
  std::string s;
  for (const auto& sh : shapes) s += (s.empty() ? "" : ", ") + to_string(sh);
  return s;
}

/// The run-time guard of a forward call: the inputs' shapes (batch included) are equal.
template <AnyDevice Dev, class T>
void require_same_shapes(const nn::Layer& layer, const nn::Forward<Dev, T>& f) {
  for (std::size_t i = 1; i < f.in.size(); ++i) {
    if (!(f.in[i].shape() == f.in[0].shape())) {
      std::vector<Shape> all;
      for (const auto& a : f.in) all.push_back(a.shape());
      throw shape_error(nn::layer_label(layer) + ": needs inputs of one shape, got " +
                        shapes_string(all));
    }
  }
}

}  // namespace merge_detail

/// What Add, Subtract and Multiply share: no configuration beyond Keras's base keys, two or
/// more inputs of one shape, output of that shape.
template <class Derived>
struct ElementwiseMerge : nn::LayerSpec<Derived> {
  nn::Config config() const override { return nn::Config(nn::Config::object{}); }
  static Derived from_config(const nn::Config&) { return Derived(); }
  std::size_t min_inputs() const override { return 2; }
  std::size_t max_inputs() const override { return SIZE_MAX; }
  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    for (const auto& s : in) {
      if (!(s == in[0])) {
        throw shape_error(nn::layer_label(*this) +
                          ": needs inputs of one shape (locus does not broadcast in merges), got " +
                          merge_detail::shapes_string(in));
      }
    }
    return {in[0]};
  }
};

/// y = x0 + x1 + ... (two or more inputs).
struct Add : ElementwiseMerge<Add> {
  static constexpr const char* keras_class = "Add";
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    merge_detail::require_same_shapes(*this, f);
    std::vector<Tensor<T, Dev>> out;
    // Accumulate into the first input's storage when the caller hands it over; else the
    // first two inputs make the result in one pass.
    std::size_t next = 1;
    if (f.in[0].owned()) {
      out.push_back(f.in[0].take());
    } else {
      out.emplace_back(f.x(0) + f.x(1));
      next = 2;
    }
    for (std::size_t i = next; i < f.in.size(); ++i) out[0] += f.x(i);
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    // dL/dx_i = dy for every input: copies for all but the last wanted one, which takes dy.
    std::vector<Tensor<T, Dev>> dx(b.need_dx.size());
    std::size_t last = dx.size();
    for (std::size_t i = 0; i < dx.size(); ++i)
      if (b.need_dx[i]) last = i;
    for (std::size_t i = 0; i < dx.size(); ++i) {
      if (!b.need_dx[i]) continue;
      if (i == last) {
        dx[i] = std::move(*b.dy[0]);
      } else {
        dx[i] = *b.dy[0];
      }
    }
    return dx;
  }
};

/// y = x0 - x1 (exactly two inputs).
struct Subtract : ElementwiseMerge<Subtract> {
  static constexpr const char* keras_class = "Subtract";
  std::size_t max_inputs() const override { return 2; }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    merge_detail::require_same_shapes(*this, f);
    std::vector<Tensor<T, Dev>> out;
    if (f.in[0].owned()) {
      out.push_back(f.in[0].take());
      out[0] -= f.x(1);
    } else {
      out.emplace_back(f.x(0) - f.x(1));
    }
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(2);
    Tensor<T, Dev>& dy = *b.dy[0];
    if (b.need_dx[1]) {
      if (b.need_dx[0]) {
        dx[1] = -dy;
      } else {
        dy = -dy;  // element-wise, in place
        dx[1] = std::move(dy);
        return dx;
      }
    }
    if (b.need_dx[0]) dx[0] = std::move(dy);
    return dx;
  }
};

/// y = x0 * x1 * ... (two or more inputs); backward reads the inputs.
struct Multiply : ElementwiseMerge<Multiply> {
  static constexpr const char* keras_class = "Multiply";
  nn::BackwardNeeds backward_needs() const override { return {true, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    merge_detail::require_same_shapes(*this, f);
    std::vector<Tensor<T, Dev>> out;
    std::size_t next = 1;
    if (f.in[0].owned()) {
      out.push_back(f.in[0].take());
    } else {
      out.emplace_back(f.x(0) * f.x(1));
      next = 2;
    }
    for (std::size_t i = next; i < f.in.size(); ++i) out[0] *= f.x(i);
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    // dL/dx_i = dy * prod_{j != i} x_j, as products (no division: inputs may be zero).
    // The last wanted gradient is formed in dy's storage.
    const std::size_t n = b.need_dx.size();
    std::vector<Tensor<T, Dev>> dx(n);
    std::size_t last = n;
    for (std::size_t i = 0; i < n; ++i)
      if (b.need_dx[i]) last = i;
    Tensor<T, Dev>& dy = *b.dy[0];
    for (std::size_t i = 0; i < n; ++i) {
      if (!b.need_dx[i]) continue;
      const std::size_t first = i == 0 ? 1 : 0;
      if (i == last) {
        for (std::size_t j = 0; j < n; ++j)
          if (j != i) dy *= *b.in[j];
        dx[i] = std::move(dy);
      } else {
        dx[i] = dy * *b.in[first];
        for (std::size_t j = first + 1; j < n; ++j)
          if (j != i) dx[i] *= *b.in[j];
      }
    }
    return dx;
  }
};

/// Concatenation along `axis` (Keras's axis: counted over the batched shape, -1 is the
/// last; the batch axis itself cannot be concatenated). One or more inputs.
struct Concatenate : nn::LayerSpec<Concatenate> {
  std::int64_t axis = -1;
  explicit Concatenate(std::int64_t a = -1) : axis(a) {
    if (axis == 0) {
      throw argument_error(
          "locus::Concatenate: axis 0 is the batch axis; concatenate along a per-sample axis (1, "
          "2, ... or -1, -2, ...)");
    }
  }

  static constexpr const char* keras_class = "Concatenate";
  nn::Config config() const override { return nn::Config::make({{"axis", axis}}); }
  static Concatenate from_config(const nn::Config& c) {
    const std::int64_t a = c.contains("axis") ? c.at("axis").as_int() : -1;
    if (a == 0)
      throw config_error(
          "locus::Concatenate: axis 0 is the batch axis, which cannot be concatenated");
    return Concatenate(a);
  }
  std::size_t min_inputs() const override { return 1; }
  std::size_t max_inputs() const override { return SIZE_MAX; }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  /// The concatenation axis among the per-sample axes of inputs of per-sample rank r.
  std::size_t sample_axis(std::size_t rank, const std::vector<Shape>& in) const {
    const auto full = static_cast<std::int64_t>(rank + 1);
    const std::int64_t a = axis < 0 ? axis + full : axis;
    if (a < 1 || a >= full) {
      throw axis_error(nn::layer_label(*this) + ": axis " + std::to_string(axis) +
                       (a == 0 ? " is the batch axis" : " is out of range") +
                       " for inputs of shapes " + merge_detail::shapes_string(in) + " (rank " +
                       std::to_string(rank) + " per sample)");
    }
    return static_cast<std::size_t>(a - 1);
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const std::size_t rank = in[0].rank();
    const auto mismatch = [&] {
      return shape_error(nn::layer_label(*this) +
                         ": needs inputs that agree on every axis but axis " +
                         std::to_string(axis) + ", got " + merge_detail::shapes_string(in));
    };
    for (const auto& s : in)
      if (s.rank() != rank) throw mismatch();
    if (rank == 0)
      throw shape_error(nn::layer_label(*this) +
                        ": cannot concatenate inputs without per-sample axes");
    const std::size_t a = sample_axis(rank, in);
    Shape out = in[0];
    for (std::size_t i = 1; i < in.size(); ++i) {
      for (std::size_t d = 0; d < rank; ++d)
        if (d != a && in[i][d] != out[d]) throw mismatch();
      out[a] += in[i][a];
    }
    return {out};
  }

  /// The block layouts of input i inside the output: [1, outer, len_i * inner] where outer
  /// counts the axes before the concatenation axis (batch included) and inner those after,
  /// so each run of a block is contiguous on both sides.
  struct split {
    std::size_t outer = 1, inner = 1, total = 0;  // total: output extent of the axis
  };
  static split split_of(const Shape& out, std::size_t full_axis) {
    split s;
    for (std::size_t d = 0; d < out.rank(); ++d) {
      if (d < full_axis) s.outer *= out[d];
      if (d > full_axis) s.inner *= out[d];
    }
    s.total = out[full_axis];
    return s;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    std::vector<Shape> ps;
    for (const auto& a : f.in) ps.push_back(nn::per_sample(a.shape()));
    const Shape out_ps = output_shapes(ps)[0];
    const std::size_t n = f.in[0].shape()[0];
    for (const auto& a : f.in) {
      if (a.shape()[0] != n) {
        std::vector<Shape> all;
        for (const auto& b : f.in) all.push_back(b.shape());
        throw shape_error(nn::layer_label(*this) +
                          ": inputs of different batch sizes: " + merge_detail::shapes_string(all));
      }
    }
    std::vector<Tensor<T, Dev>> out;
    if (f.in.size() == 1) {
      out.push_back(f.in[0].take());
      return out;
    }
    const std::size_t fa = sample_axis(out_ps.rank(), ps) + 1;
    out.emplace_back(uninitialized, nn::with_batch(n, out_ps));
    const split s = split_of(out[0].shape(), fa);
    std::size_t at = 0;
    for (const auto& a : f.in) {
      const std::size_t len = a.shape()[fa] * s.inner;
      nn_backend_for<Dev>::copy_block(a->storage(), block_layout{0, {0, len, 1}}, out[0].storage(),
                                      block_layout{at, {0, s.total * s.inner, 1}},
                                      block_extent{1, s.outer, len});
      at += len;
    }
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    const std::size_t k = b.in_shapes.size();
    std::vector<Tensor<T, Dev>> dx(k);
    if (k == 1) {
      if (b.need_dx[0]) dx[0] = std::move(*b.dy[0]);
      return dx;
    }
    const Shape& out = b.dy[0]->shape();
    const std::size_t fa = sample_axis(out.rank() - 1, {nn::per_sample(out)}) + 1;
    const split s = split_of(out, fa);
    std::size_t at = 0;
    for (std::size_t i = 0; i < k; ++i) {
      const std::size_t len = b.in_shapes[i][fa] * s.inner;
      if (b.need_dx[i]) {
        dx[i] = Tensor<T, Dev>(uninitialized, b.in_shapes[i]);
        nn_backend_for<Dev>::copy_block(
            b.dy[0]->storage(), block_layout{at, {0, s.total * s.inner, 1}}, dx[i].storage(),
            block_layout{0, {0, len, 1}}, block_extent{1, s.outer, len});
      }
      at += len;
    }
    return dx;
  }
};

}  // namespace locus::layers
