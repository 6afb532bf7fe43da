// Reshaping layers: Reshape and ZeroPadding2D.
//
// Reshape takes its input's storage when nothing else needs it (Arg::take), as Flatten
// does, so it copies nothing; its gradient is dy with the input's shape. ZeroPadding2D
// writes its input into a zero-filled output with one strided block copy (nn_backend
// copy_block); its gradient is the crop of dy, one block copy as well.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "../../backend/nn_backend.hpp"
#include "common.hpp"

namespace locus::layers {

/// [N, ...] -> [N, target_shape...]; one entry of target_shape may be -1 (inferred).
struct Reshape : nn::LayerSpec<Reshape> {
  std::vector<std::int64_t> target_shape;

  Reshape(std::initializer_list<std::int64_t> t) : Reshape(std::vector<std::int64_t>(t)) {}
  explicit Reshape(std::vector<std::int64_t> t) : target_shape(std::move(t)) {
    std::size_t unknown = 0;
    for (auto d : target_shape) {
      if (d == -1) {
        ++unknown;
      } else if (d <= 0) {
        throw argument_error("locus::Reshape: target_shape " + describe() +
                             " has an extent that is neither positive nor -1");
      }
    }
    if (unknown > 1)
      throw argument_error("locus::Reshape: target_shape " + describe() + " has more than one -1");
  }

  static constexpr const char* keras_class = "Reshape";
  nn::Config config() const override {
    nn::Config::array t;
    for (auto d : target_shape) t.emplace_back(d);
    return nn::Config::make({{"target_shape", nn::Config(std::move(t))}});
  }
  static Reshape from_config(const nn::Config& c) {
    const nn::Config& t = c.at("target_shape");
    if (!t.is_array())
      throw config_error("locus::Reshape: target_shape must be a list of integers, found " +
                         t.dump());
    std::vector<std::int64_t> dims;
    for (const auto& d : t.as_array()) dims.push_back(d.as_int());
    try {
      return Reshape(std::move(dims));
    } catch (const config_error&) {
      throw;
    } catch (const argument_error& e) {
      throw config_error(e.what());
    }
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const std::size_t size = in[0].size();
    Shape out;
    std::size_t known = 1, unknown = target_shape.size();
    for (std::size_t i = 0; i < target_shape.size(); ++i) {
      if (target_shape[i] == -1) {
        unknown = i;
        out.push_back(1);
      } else {
        out.push_back(static_cast<std::size_t>(target_shape[i]));
        known *= out.back();
      }
    }
    if (unknown < target_shape.size()) {
      if (size % known != 0) throw mismatch(in[0]);
      out[unknown] = size / known;
    }
    if (out.size() != size) throw mismatch(in[0]);
    return {out};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const Shape& s = f.x().shape();
    const Shape out = nn::with_batch(s[0], output_shapes({nn::per_sample(s)})[0]);
    std::vector<Tensor<T, Dev>> y;
    y.push_back(f.in[0].take().reshape(out));
    return y;
  }
  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (b.need_dx[0]) dx[0] = std::move(*b.dy[0]).reshape(b.in_shapes[0]);
    return dx;
  }

 private:
  std::string describe() const {
    std::string s = "(";
    for (std::size_t i = 0; i < target_shape.size(); ++i)
      s += (i ? ", " : "") + std::to_string(target_shape[i]);
    return s + (target_shape.size() == 1 ? ",)" : ")");
  }
  shape_error mismatch(const Shape& in) const {
    return shape_error(nn::layer_label(*this) + ": cannot reshape per-sample input " +
                       to_string(in) + " (" + std::to_string(in.size()) +
                       " elements) into target_shape " + describe());
  }
};

/// Zero rows at the top and bottom, zero columns at the left and right of NHWC images.
struct ZeroPadding2D : nn::LayerSpec<ZeroPadding2D> {
  std::size_t top = 1, bottom = 1, left = 1, right = 1;

  /// The same padding on every side (Keras's int form).
  explicit ZeroPadding2D(std::size_t p = 1) : top(p), bottom(p), left(p), right(p) {}
  /// Symmetric padding per axis (Keras's (symmetric_height_pad, symmetric_width_pad)).
  ZeroPadding2D(std::size_t h, std::size_t w) : top(h), bottom(h), left(w), right(w) {}
  /// Keras's ((top, bottom), (left, right)).
  ZeroPadding2D(std::pair<std::size_t, std::size_t> h, std::pair<std::size_t, std::size_t> w)
      : top(h.first), bottom(h.second), left(w.first), right(w.second) {}

  static constexpr const char* keras_class = "ZeroPadding2D";
  nn::Config config() const override {
    using nn::Config;
    return Config::make(
        {{"padding", Config::list({Config::list({top, bottom}), Config::list({left, right})})},
         {"data_format", "channels_last"}});
  }
  static ZeroPadding2D from_config(const nn::Config& c) {
    nn::require_channels_last(c, "ZeroPadding2D");
    const nn::Config* p = c.find("padding");
    if (!p) return ZeroPadding2D();
    const auto amount = [&](const nn::Config& v) {
      if (!v.is_number()) throw bad_padding(*p);
      const std::int64_t a = v.as_int();
      if (a < 0) throw bad_padding(*p);
      return static_cast<std::size_t>(a);
    };
    // An entry of the pair form is an int (symmetric) or a pair (before, after).
    const auto axis = [&](const nn::Config& v) -> std::pair<std::size_t, std::size_t> {
      if (v.is_array()) {
        if (v.as_array().size() != 2) throw bad_padding(*p);
        return {amount(v.as_array()[0]), amount(v.as_array()[1])};
      }
      const std::size_t a = amount(v);
      return {a, a};
    };
    if (p->is_array()) {
      if (p->as_array().size() != 2) throw bad_padding(*p);
      return ZeroPadding2D(axis(p->as_array()[0]), axis(p->as_array()[1]));
    }
    return ZeroPadding2D(amount(*p));
  }

  std::vector<Shape> output_shapes(const std::vector<Shape>& in) const override {
    const Shape& s = in[0];
    if (s.rank() != 3) {
      throw shape_error(nn::layer_label(*this) +
                        ": expects per-sample input [height, width, channels], got " +
                        to_string(s));
    }
    return {{s[0] + top + bottom, s[1] + left + right, s[2]}};
  }
  nn::BackwardNeeds backward_needs() const override { return {false, false}; }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> forward(const nn::Forward<Dev, T>& f) const {
    const Shape& s = f.x().shape();
    std::vector<Tensor<T, Dev>> out;
    if (top + bottom + left + right == 0) {
      out.push_back(f.in[0].take());
      return out;
    }
    out.push_back(
        Tensor<T, Dev>::zeros(nn::with_batch(s[0], output_shapes({nn::per_sample(s)})[0])));
    const layouts l = blocks(s);
    nn_backend_for<Dev>::copy_block(f.x().storage(), l.image, out[0].storage(), l.padded, l.extent);
    return out;
  }

  template <AnyDevice Dev, class T>
  std::vector<Tensor<T, Dev>> backward(const nn::Backward<Dev, T>& b) const {
    std::vector<Tensor<T, Dev>> dx(1);
    if (!b.need_dx[0]) return dx;
    if (top + bottom + left + right == 0) {
      dx[0] = std::move(*b.dy[0]);
      return dx;
    }
    dx[0] = Tensor<T, Dev>(uninitialized, b.in_shapes[0]);
    const layouts l = blocks(b.in_shapes[0]);
    nn_backend_for<Dev>::copy_block(b.dy[0]->storage(), l.padded, dx[0].storage(), l.image,
                                    l.extent);
    return dx;
  }

 private:
  struct layouts {
    block_layout image;   // the input [N, H, W, C]
    block_layout padded;  // where it sits in the output
    block_extent extent;  // [N, H, W*C]: one contiguous run per image row
  };
  layouts blocks(const Shape& x) const {
    const std::size_t h = x[1], w = x[2], c = x[3];
    const std::size_t oh = h + top + bottom, ow = w + left + right;
    return {block_layout{0, {h * w * c, w * c, 1}},
            block_layout{(top * ow + left) * c, {oh * ow * c, ow * c, 1}},
            block_extent{x[0], h, w * c}};
  }
  static config_error bad_padding(const nn::Config& p) {
    return config_error(
        "locus::ZeroPadding2D: padding must be a non-negative int, (symmetric_height, "
        "symmetric_width) or "
        "((top, bottom), (left, right)), found " +
        p.dump());
  }
};

}  // namespace locus::layers
