// Sequential<Dev, T>: a Keras-style stack of layers, bound to one device.
//
// A special case of Model: its description is the chain of its layers (a Functional of
// class "Sequential"), made when the model is built: by build(), or, without an Input,
// at its first call from the shape of the batch (as Keras builds a Sequential).
#pragma once

#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "model.hpp"

namespace locus {

template <AnyDevice Dev, class T = float>
class Sequential : public Model<Dev, T> {
  using base = Model<Dev, T>;

 public:
  using tensor = Tensor<T, Dev>;

  Sequential() = default;
  /// Layers in order; the first may be locus::Input({...}), which lets build(seed) build.
  template <class... L>
  explicit Sequential(L&&... layers) {
    (add(std::forward<L>(layers)), ...);
  }
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  void add(const layers::Input& in) {
    if (!stack_.empty()) throw argument_error("locus::Sequential: Input must come first");
    input_shape_ = in.shape();
  }
  /// A layer description (Dense(10), a Functional to nest, ...).
  template <class L>
  requires std::derived_from<std::remove_cvref_t<L>, nn::Layer>
  void add(const L& layer) {
    if (this->built()) throw argument_error("locus::Sequential: cannot add layers after build()");
    stack_.push_back(std::make_shared<std::remove_cvref_t<L>>(layer));
  }
  /// A model bound to this device, nested with its current weights (copied, on this
  /// device). A model of another device does not compile: copy it with locus::to<Dev>.
  template <AnyDevice D2, class T2>
  void add(const Model<D2, T2>& m) {
    (void)sizeof(detail::model_device_mismatch<Dev, D2>);
    if constexpr (std::is_same_v<D2, Dev>) {
      static_assert(std::is_same_v<T2, T>,
                    "locus::Sequential: the nested model computes in another element type");
      add(m.description());
      std::vector<tensor> w;
      for (const auto& [name, t] : m.weights()) w.push_back(*t);
      nested_weights_.emplace_back(stack_.size() - 1, std::move(w));
    }
  }

  /// Creates every weight for per-sample input shape `input_shape`. Layer i is seeded with
  /// a value derived from (seed, i), so equal seeds give equal weights on every device.
  void build(const Shape& input_shape, std::uint64_t seed = 0) {
    if (stack_.empty()) throw argument_error("locus::Sequential: the model has no layers");
    input_shape_ = input_shape;
    seed_ = seed;
    const layers::Input in(input_shape);
    nn::SymbolicTensor x = in;
    for (const auto& l : stack_) x = l->call({x}).at(0);
    this->bind(Functional({in}, {x}, "", "Sequential"), seed);
    // Nested bound models keep their weights: their layers' weights come in their order.
    for (const auto& [index, w] : nested_weights_) {
      const std::string prefix = this->layers_.at(index).name + "/";
      std::size_t k = 0;
      for (auto& [name, t] : base::weights()) {
        if (name.rfind(prefix, 0) == 0 && k < w.size()) *t = w[k++];
      }
    }
  }
  /// Builds with the Input shape given at construction.
  void build(std::uint64_t seed = 0) {
    if (!input_shape_) {
      throw argument_error(
          "locus::Sequential: no input shape; add locus::Input({...}) or call build(shape)");
    }
    build(*input_shape_, seed);
  }

  /// Number of layers (added so far, before the model is built).
  std::size_t size() const { return this->built() ? base::size() : stack_.size(); }

  // Keras builds a Sequential without an Input at its first call: the entry points that
  // take a batch build first, then run as Model's.
  using base::operator();
  template <class TX, class DX>
  tensor operator()(const Tensor<TX, DX>& x) {
    build_for<TX, DX>(x);
    return std::as_const(*this)(x);
  }
  template <class TX, class DX>
  tensor predict(const Tensor<TX, DX>& x, std::size_t batch_size = 32) {
    build_for<TX, DX>(x);
    return std::as_const(*this).predict(x, batch_size);
  }
  using base::predict;
  template <class TX, class DX, class L, class DY, class Loss>
  LossAndGradients<Dev, T> value_and_gradient(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
                                              const Loss& loss) {
    build_for<TX, DX>(x);
    return base::value_and_gradient(x, y, loss);
  }
  template <class TX, class DX, class L, class DY>
  History fit(const Tensor<TX, DX>& x, const Tensor<L, DY>& y,
              const FitOptions<Dev, T, L>& o = {}) {
    build_for<TX, DX>(x);
    return base::fit(x, y, o);
  }
  template <class TX, class DX, class L, class DY>
  Logs evaluate(const Tensor<TX, DX>& x, const Tensor<L, DY>& y, std::size_t batch_size = 32) {
    build_for<TX, DX>(x);
    return base::evaluate(x, y, batch_size);
  }
  // Datasets: built from the Input given at construction (or by an earlier call).
  template <AnyDevice DD, class TX, class L>
  History fit(const data::Dataset<DD, TX, L>& ds, const FitOptions<Dev, T, L>& o = {}) {
    build_from_input();
    return base::fit(ds, o);
  }
  template <AnyDevice DD, class TX, class L>
  Logs evaluate(const data::Dataset<DD, TX, L>& ds) {
    build_from_input();
    return base::evaluate(ds);
  }
  template <AnyDevice DD, class TX, class L>
  tensor predict(const data::Dataset<DD, TX, L>& ds) {
    build_from_input();
    return std::as_const(*this).predict(ds);
  }

  /// This model on device D2 (what locus::to<D2>(model) calls).
  template <AnyDevice D2>
  Sequential<D2, T> copy_to(ModelCopyOptions o = {}) const {
    this->require_built("to<Dev>");
    Sequential<D2, T> s;
    this->copy_into(s, o);
    s.stack_ = stack_;
    s.input_shape_ = input_shape_;
    s.seed_ = seed_;
    return s;
  }

 private:
  template <AnyDevice, class>
  friend class Sequential;

  void build_from_input() {
    if (!this->built() && input_shape_) build(*input_shape_, seed_);
  }
  template <class TX, class DX>
  void build_for(const Tensor<TX, DX>& x) {
    if constexpr (std::is_same_v<DX, Dev> && std::is_same_v<TX, T>) {
      if (this->built()) return;
      if (x.rank() < 1) throw shape_error("locus::Sequential: input needs a batch axis");
      build(input_shape_ ? *input_shape_ : nn::per_sample(x.shape()), seed_);
    }
  }

  std::vector<std::shared_ptr<const nn::Layer>> stack_;
  std::vector<std::pair<std::size_t, std::vector<tensor>>> nested_weights_;
  std::optional<Shape> input_shape_;
  std::uint64_t seed_ = 0;
};

/// A copy of a Sequential on device Dst (see locus::to for models).
template <AnyDevice Dst, AnyDevice Src, class T>
Sequential<Dst, T> to(const Sequential<Src, T>& model, ModelCopyOptions o = {}) {
  return model.template copy_to<Dst>(o);
}

}  // namespace locus
