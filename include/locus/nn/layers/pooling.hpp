// MaxPooling2D and AveragePooling2D over NHWC input. Max pooling remembers, per output,
// where its maximum came from, so backward is a scatter of dy to those positions.
#pragma once

#include <cstdint>
#include <string>

#include "../../backend/nn_backend.hpp"
#include "../../error.hpp"
#include "../layer.hpp"
#include "specs.hpp"

namespace locus::nn {

template <AnyDevice Dev, class T>
class Pooling2DLayer final : public Layer<Dev, T> {
 public:
  using tensor = Tensor<T, Dev>;
  Pooling2DLayer(pool_kind kind, Window pool, Window strides, Padding padding)
      : kind_(kind), pool_(pool), strides_(strides.h ? strides : pool), padding_(padding) {}

  std::string type_name() const override {
    return kind_ == pool_kind::max ? "MaxPooling2D" : "AveragePooling2D";
  }

  Shape build(const Shape& in, std::uint64_t) override {
    if (in.rank() != 3) {
      throw shape_error("locus::" + type_name() +
                        ": expects per-sample input [height, width, channels], got " + to_string(in));
    }
    if (pool_.h == 0 || pool_.w == 0 || strides_.h == 0 || strides_.w == 0) {
      throw argument_error("locus::" + type_name() + ": pool size and strides must be positive");
    }
    in_ = in;
    const bool same = padding_ == Padding::same;
    ax_h_ = spatial_axis(in[0], pool_.h, strides_.h, same);
    ax_w_ = spatial_axis(in[1], pool_.w, strides_.w, same);
    if (ax_h_.out == 0 || ax_w_.out == 0) {
      throw shape_error("locus::" + type_name() + ": window does not fit input " + to_string(in));
    }
    return {ax_h_.out, ax_w_.out, in[2]};
  }

  tensor forward(const tensor& x, bool training) override {
    const pool_geometry g = geometry(x.shape()[0]);
    tensor y(uninitialized, {g.n, g.oh, g.ow, g.c});
    if (kind_ == pool_kind::max && training) {
      argmax_ = Tensor<std::int32_t, Dev>(uninitialized, y.shape());
      nn_backend_for<Dev>::pool2d_forward(kind_, x.storage(), g, y.storage(), &argmax_.storage());
    } else {
      nn_backend_for<Dev>::pool2d_forward(kind_, x.storage(), g, y.storage(), nullptr);
    }
    return y;
  }

  tensor backward(const tensor& x, const tensor&, const tensor& dy, bool need_dx) override {
    if (!need_dx) return tensor();
    const pool_geometry g = geometry(x.shape()[0]);
    tensor dx(uninitialized, x.shape());
    nn_backend_for<Dev>::pool2d_backward(kind_, dy.storage(),
                                         kind_ == pool_kind::max ? &argmax_.storage() : nullptr, g,
                                         dx.storage());
    return dx;
  }

 private:
  pool_geometry geometry(std::size_t n) const {
    return {n,           in_[0],      in_[1],           in_[2],           pool_.h,   pool_.w,
            strides_.h, strides_.w, ax_h_.pad_before, ax_w_.pad_before, ax_h_.out, ax_w_.out};
  }

  pool_kind kind_;
  Window pool_, strides_;
  Padding padding_;
  Shape in_;
  axis_geometry ax_h_{}, ax_w_{};
  Tensor<std::int32_t, Dev> argmax_;
};

}  // namespace locus::nn
