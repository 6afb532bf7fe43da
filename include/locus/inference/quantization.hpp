// int8 post-training static quantization of an inference graph (the TFLite / ONNX QDQ
// scheme):
//  * activations: per tensor, asymmetric, uint8: real = scale * (q - zero_point), with the
//    range [lo, hi] found by calibration widened to contain 0 (so that zero padding and relu
//    are exact): scale = (hi - lo) / 255, zero_point = round(-lo / scale);
//  * weights: per output channel, symmetric, int8 in [-127, 127]: w = scale[n] * q;
//  * products: uint8 x int8 accumulated in int32 over the whole fan-in;
//    sum_k (qa - za) qw = sum_k qa qw - za colsum[n], so the zero point costs one subtraction
//    per output, not per product;
//  * write-back: f = acc * (sa * sw[n]) + bias[n], the activation in float, then requantised
//    to the output's uint8 (round half to even, saturated), or left in float for the model's
//    output (where a softmax follows).
// Max pooling keeps its input's scale and zero point (the maximum of quantized values is the
// quantized maximum); every other step requantises to its output's calibrated range.
//
// Calibration (calibrate(plan, data)) runs the float graph on the host over representative
// data and records, per value, its minimum and maximum (min_max), or a histogram from which
// the range keeps `percentile` percent of the values, clipping the tails (percentile: a
// second pass over the data).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../tensor.hpp"
#include "cpu/float_runner.hpp"
#include "graph.hpp"

namespace locus {

enum class CalibrationMethod { min_max, percentile };

struct CalibrationOptions {
  /// min_max by default (ONNX Runtime's default too): on the CNNs of examples/ it loses less
  /// accuracy than clipping, whose gain is for tensors with rare extreme values.
  CalibrationMethod method = CalibrationMethod::min_max;
  /// percentile: the share of each tensor's values (in percent) the range keeps; the rest
  /// is split evenly between the two tails.
  double percentile = 99.99;
  /// percentile: histogram bins per tensor.
  std::size_t bins = 2048;
};

/// One activation tensor's uint8 quantization.
struct QuantParams {
  float scale = 1.0f;
  std::int32_t zero_point = 0;

  /// From a range (widened to contain 0; a range of one point gets scale 1).
  static QuantParams from_range(double lo, double hi) {
    lo = std::min(lo, 0.0);
    hi = std::max(hi, 0.0);
    QuantParams p;
    if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return p;
    const double scale = (hi - lo) / 255.0;
    p.scale = static_cast<float>(scale);
    p.zero_point = static_cast<std::int32_t>(std::clamp(std::nearbyint(-lo / scale), 0.0, 255.0));
    return p;
  }
};

/// The ranges calibration found, per graph value (aliases share their root's).
struct Calibration {
  CalibrationOptions options;
  std::size_t samples = 0;
  std::vector<double> lo, hi;  ///< per root value; NaN where no data was seen

  QuantParams params(std::size_t root) const { return QuantParams::from_range(lo[root], hi[root]); }
};

namespace inference {

/// A conv or dense step's int8 weights.
struct QuantizedWeights {
  std::vector<std::int8_t> q;        ///< [fan_in, units], row-major
  std::vector<float> scale;          ///< per output channel
  std::vector<std::int32_t> colsum;  ///< per output channel: sum over k of q[k, n]
};

/// A graph with its quantization: what a QuantizedPlan runs on any device, and what a
/// quantized model file stores.
struct QuantizedGraph {
  std::shared_ptr<const Graph> graph;
  std::vector<QuantParams> params;        ///< per root value
  std::vector<QuantizedWeights> weights;  ///< per step (empty for steps without weights)
  CalibrationOptions calibration;
  std::size_t calibration_samples = 0;
};

/// Symmetric per-output-channel int8 weights of a [fan_in, units] kernel, with given scales
/// (a loaded file's) or, when `scales` is empty, max |w| / 127 per channel.
inline QuantizedWeights quantize_weights(const std::vector<float>& kernel, std::size_t fan_in,
                                         std::size_t units, std::vector<float> scales = {}) {
  QuantizedWeights w;
  if (scales.empty()) {
    scales.assign(units, 0.0f);
    for (std::size_t k = 0; k < fan_in; ++k)
      for (std::size_t n = 0; n < units; ++n)
        scales[n] = std::max(scales[n], std::abs(kernel[k * units + n]));
    for (auto& s : scales) s = s > 0.0f ? s / 127.0f : 1.0f;
  }
  w.scale = std::move(scales);
  w.q.resize(kernel.size());
  w.colsum.assign(units, 0);
  for (std::size_t k = 0; k < fan_in; ++k)
    for (std::size_t n = 0; n < units; ++n) {
      const float q = std::nearbyint(kernel[k * units + n] / w.scale[n]);
      const auto qi = static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f));
      w.q[k * units + n] = qi;
      w.colsum[n] += qi;
    }
  return w;
}

/// The quantization of `g` from calibrated ranges (see the file comment).
inline QuantizedGraph quantize_graph(std::shared_ptr<const Graph> g, const Calibration& cal) {
  QuantizedGraph q;
  const Graph& graph = *g;
  q.params.resize(graph.shapes.size());
  for (std::size_t v = 0; v < graph.shapes.size(); ++v)
    if (graph.root[v] == v) q.params[v] = cal.params(v);
  for (const Step& s : graph.steps) {
    // Max pooling passes its input's quantization through.
    if (s.pooling == pool_kind::max &&
        (s.kind == StepKind::pool || s.kind == StepKind::global_pool))
      q.params[graph.root[s.out]] = q.params[graph.root[s.in[0]]];
    q.weights.push_back(s.kind == StepKind::conv2d || s.kind == StepKind::dense
                            ? quantize_weights(s.kernel, s.fan_in, s.units)
                            : QuantizedWeights{});
  }
  q.graph = std::move(g);
  q.calibration = cal.options;
  q.calibration_samples = cal.samples;
  return q;
}

/// Runs the float graph over `data` ([N, ...input shape] on the host) and records the
/// ranges of every value.
inline Calibration calibrate_graph(const std::shared_ptr<const Graph>& g, const float* data,
                                   std::size_t n, const CalibrationOptions& o) {
  if (n == 0) throw argument_error("locus::calibrate: no calibration samples");
  if (o.method == CalibrationMethod::percentile && !(o.percentile > 0.0 && o.percentile <= 100.0))
    throw argument_error("locus::calibrate: percentile must be in (0, 100], got " +
                         std::to_string(o.percentile));
  if (o.method == CalibrationMethod::percentile && o.bins < 2)
    throw argument_error("locus::calibrate: at least 2 histogram bins are needed");
  const Graph& graph = *g;
  cpu::FloatRunner runner(g, InferenceOptions{.workspaces = 1}, /*fuse_pooling=*/false);
  std::vector<float> out(n * graph.per_sample(graph.output));
  Calibration cal;
  cal.options = o;
  cal.samples = n;
  const std::size_t values = graph.shapes.size();
  cal.lo.assign(values, std::numeric_limits<double>::quiet_NaN());
  cal.hi.assign(values, std::numeric_limits<double>::quiet_NaN());
  std::vector<double> lo(values, std::numeric_limits<double>::infinity()),
      hi(values, -std::numeric_limits<double>::infinity());
  runner.run_observed(data, n, out.data(), [&](std::size_t v, const float* p, std::size_t count) {
    const std::size_t r = graph.root[v];
    for (std::size_t i = 0; i < count; ++i) {
      if (!std::isfinite(p[i]))
        throw argument_error("locus::calibrate: a non-finite value in '" +
                             (v == graph.input ? std::string("the input") : "a layer output") +
                             "' (calibration data must be finite)");
      lo[r] = std::min(lo[r], static_cast<double>(p[i]));
      hi[r] = std::max(hi[r], static_cast<double>(p[i]));
    }
  });
  if (o.method == CalibrationMethod::min_max) {
    for (std::size_t v = 0; v < values; ++v)
      if (lo[v] <= hi[v]) cal.lo[v] = lo[v], cal.hi[v] = hi[v];
    return cal;
  }
  // Second pass: a histogram of each value over its [lo, hi].
  const std::size_t bins = o.bins;
  std::vector<std::vector<std::uint64_t>> hist(values);
  runner.run_observed(data, n, out.data(), [&](std::size_t v, const float* p, std::size_t count) {
    const std::size_t r = graph.root[v];
    if (!(hi[r] > lo[r])) return;
    auto& h = hist[r];
    if (h.empty()) h.assign(bins, 0);
    const double k = static_cast<double>(bins) / (hi[r] - lo[r]);
    for (std::size_t i = 0; i < count; ++i) {
      const auto b = static_cast<std::size_t>((static_cast<double>(p[i]) - lo[r]) * k);
      ++h[std::min(b, bins - 1)];
    }
  });
  const double tail = (100.0 - o.percentile) / 200.0;
  for (std::size_t v = 0; v < values; ++v) {
    if (!(lo[v] <= hi[v])) continue;
    if (hist[v].empty()) {  // one value only
      cal.lo[v] = lo[v];
      cal.hi[v] = hi[v];
      continue;
    }
    std::uint64_t total = 0;
    for (auto c : hist[v]) total += c;
    const auto cut = static_cast<std::uint64_t>(tail * static_cast<double>(total));
    const double width = (hi[v] - lo[v]) / static_cast<double>(bins);
    std::size_t a = 0, b = bins - 1;
    for (std::uint64_t seen = 0; a + 1 < bins && seen + hist[v][a] <= cut; ++a) seen += hist[v][a];
    for (std::uint64_t seen = 0; b > a && seen + hist[v][b] <= cut; --b) seen += hist[v][b];
    cal.lo[v] = a == 0 ? lo[v] : lo[v] + static_cast<double>(a) * width;
    cal.hi[v] = b == bins - 1 ? hi[v] : lo[v] + static_cast<double>(b + 1) * width;
  }
  return cal;
}

}  // namespace inference
}  // namespace locus
