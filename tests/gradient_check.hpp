// Finite-difference gradient checks in float64 on the host, shared by the layer tests.
//
// A layer is checked inside a one-layer model (built from its own configuration, which
// also exercises from_config) with a random projection L = sum(w * y) as the scalar
// loss: Model::vjp must return dL/dx for every input and dL/dp for every parameter.
// Derivatives are central differences with h = 1e-6; in float64 their error is ~1e-10,
// so a tolerance of 1e-6 (relative to the gradient, with a small absolute floor) catches
// any wrong term while never flaking.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <locus/locus.hpp>

namespace locus_test::grad {

using D = locus::Device<locus::CPU>;
using Tn = locus::Tensor<double, D>;

constexpr double kH = 1e-6;     // finite-difference step
constexpr double kRtol = 1e-6;  // relative to max(|analytic|, |numeric|)
constexpr double kAtol = 1e-8;  // floor for gradients that are (almost) zero

inline std::vector<double> values(const Tn& t) { return {t.begin(), t.end()}; }

/// Element-wise comparison of an analytic and a numeric gradient.
inline ::testing::AssertionResult grad_close(const std::vector<double>& analytic, const std::vector<double>& numeric,
                                             const std::string& what) {
  if (analytic.size() != numeric.size()) {
    return ::testing::AssertionFailure() << what << ": analytic gradient has " << analytic.size()
                                         << " elements, numeric " << numeric.size();
  }
  double norm = 0;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    const double a = analytic[i], n = numeric[i];
    const double err = std::abs(a - n);
    norm = std::max(norm, std::abs(n));
    if (!(err <= kAtol + kRtol * std::max(std::abs(a), std::abs(n)))) {
      return ::testing::AssertionFailure() << what << ": element " << i << " analytic " << a << " numeric " << n
                                           << " (error " << err << ")";
    }
  }
  if (!analytic.empty() && norm == 0) {
    // A gradient that is zero everywhere checks nothing; every case here has a non-zero one.
    return ::testing::AssertionFailure() << what << ": the numeric gradient is identically zero";
  }
  return ::testing::AssertionSuccess();
}

/// sum(w * y) on the host.
inline double project(const Tn& w, const Tn& y) {
  EXPECT_EQ(locus::to_string(w.shape()), locus::to_string(y.shape()));
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += w.data()[i] * y.data()[i];
  return s;
}

/// Central difference of f with respect to every element of t (perturbed in place).
inline std::vector<double> numeric_grad(Tn& t, const std::function<double()>& f) {
  std::vector<double> g(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double orig = t.data()[i];
    t.data()[i] = orig + kH;
    const double fp = f();
    t.data()[i] = orig - kH;
    const double fm = f();
    t.data()[i] = orig;
    g[i] = (fp - fm) / (2 * kH);
  }
  return g;
}

/// A float64 host model of one call of a layer like `spec` (rebuilt from its config) on
/// inputs of the given batch shapes.
template <class Spec>
locus::Model<D, double> one_layer_model(const Spec& spec, const std::vector<locus::Shape>& in_shapes,
                                        std::uint64_t seed = 7) {
  std::vector<locus::nn::SymbolicTensor> ins;
  for (const auto& s : in_shapes) ins.push_back(locus::Input(locus::nn::per_sample(s)));
  const Spec fresh = Spec::from_config(spec.config());
  const locus::nn::SymbolicTensor y = ins.size() == 1 ? fresh(ins[0]) : fresh(ins);
  return locus::Model<D, double>(locus::Functional(ins, {y}), seed);
}

/// Checks dL/dx of every input and dL/dp of every parameter of one training-mode call of
/// the layer, for L = sum(w * layer(x)). Every evaluation replays training step 0, so a
/// dropout mask is the same each time. Also checks that the parameter gradients do not
/// change when no input gradient is asked for.
template <class Spec>
void check_layer(const Spec& spec, const std::vector<locus::Shape>& in_shapes, const locus::Shape& expect_out,
                 std::uint64_t seed = 1) {
  auto m = one_layer_model(spec, in_shapes);
  const std::string name = spec.class_name();
  ASSERT_EQ(locus::to_string(m.output_shape()), locus::to_string(expect_out)) << name;
  std::vector<Tn> xs;
  for (std::size_t i = 0; i < in_shapes.size(); ++i) xs.push_back(Tn::uniform(in_shapes[i], seed + i, -1.0, 1.0));
  const Tn w = Tn::uniform(locus::nn::with_batch(in_shapes[0][0], m.output_shape()), seed + 100, -1.0, 1.0);
  m.set_training_step(0);
  auto r = m.vjp(xs, {w});
  ASSERT_EQ(locus::to_string(r.outputs[0].shape()), locus::to_string(w.shape())) << name;
  ASSERT_EQ(r.input_grads.size(), xs.size()) << name;
  const auto loss = [&]() {
    m.set_training_step(0);
    return project(w, m.vjp(xs, {Tn::zeros(w.shape())}, false).outputs[0]);
  };
  for (std::size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(locus::to_string(r.input_grads[i].shape()), locus::to_string(xs[i].shape())) << name;
    EXPECT_TRUE(grad_close(values(r.input_grads[i]), numeric_grad(xs[i], loss),
                           name + " dL/dx" + (xs.size() > 1 ? std::to_string(i) : "")));
  }
  auto params = m.parameters();
  ASSERT_EQ(r.param_grads.size(), params.size()) << name;
  for (std::size_t j = 0; j < params.size(); ++j) {
    ASSERT_EQ(locus::to_string(r.param_grads[j].shape()), locus::to_string(params[j]->value.shape()))
        << name << " " << params[j]->name;
    EXPECT_TRUE(grad_close(values(r.param_grads[j]), numeric_grad(params[j]->value, loss),
                           name + " dL/d" + params[j]->name));
  }
  if (!params.empty()) {
    m.set_training_step(0);
    const auto r2 = m.vjp(xs, {w}, false);
    EXPECT_TRUE(r2.input_grads.empty()) << name;
    for (std::size_t j = 0; j < params.size(); ++j) {
      EXPECT_TRUE(grad_close(values(r2.param_grads[j]), values(r.param_grads[j]),
                             name + " without input gradients: " + params[j]->name));
    }
  }
}

template <class Spec>
void check_layer(const Spec& spec, const locus::Shape& in_shape, const locus::Shape& expect_out,
                 std::uint64_t seed = 1) {
  check_layer(spec, std::vector<locus::Shape>{in_shape}, expect_out, seed);
}

}  // namespace locus_test::grad
