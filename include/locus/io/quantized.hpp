// Quantized models on file: a .keras archive of the float model (config.json,
// model.weights.h5: Keras and load_model read it as the float model it is) plus
// locus_quantization.json, which holds what int8 inference adds:
//   * the scale and zero point of every activation tensor and the per-channel scale of
//     every convolution and dense kernel (the int8 kernels are those scales applied to the
//     file's float weights, folded as the inference plan folds them: the same bytes);
//   * the plan's step names and a fingerprint of its folded weights, so a file whose float
//     part was changed, or that meets another version of the lowering, is refused as a
//     model/file mismatch instead of running with scales that no longer fit;
//   * two test cases (inputs and the int8 outputs at save time), re-run by the loader (as
//     frugally-deep does): a loaded plan that computes something else is refused.
//
//   locus::save_quantized(model, qplan, "model.int8.keras");
//   auto q = locus::load_quantized<locus::Device<locus::GPU>>("model.int8.keras");
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "../error.hpp"
#include "../inference.hpp"
#include "file.hpp"
#include "json.hpp"
#include "load.hpp"
#include "model_file.hpp"
#include "save.hpp"
#include "zip.hpp"

namespace locus {

namespace io::detail {

inline constexpr const char* quantization_entry = "locus_quantization.json";
inline constexpr std::int64_t quantization_version = 1;
/// How far a loaded plan's test outputs may be from the saved ones: the float write-back may
/// be vectorised differently by another build, which moves a code by one step at most.
inline constexpr double test_case_tolerance = 2e-2;

/// FNV-1a over the folded float weights of every step (their exact bytes).
inline std::string graph_fingerprint(const inference::Graph& g) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const std::vector<float>& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < v.size() * sizeof(float); ++i) {
      h ^= p[i];
      h *= 0x100000001b3ull;
    }
  };
  for (const auto& s : g.steps) {
    mix(s.kernel);
    mix(s.bias);
    mix(s.scale);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

inline nn::Config float_list(const float* p, std::size_t n) {
  nn::Config::array a;
  a.reserve(n);
  for (std::size_t i = 0; i < n; ++i) a.emplace_back(static_cast<double>(p[i]));
  return nn::Config(std::move(a));
}

inline std::vector<float> floats_of(const nn::Config& c, std::size_t n, const std::string& what) {
  if (!c.is_array() || c.as_array().size() != n)
    throw format_error(what + " must be a list of " + std::to_string(n) + " numbers");
  std::vector<float> out;
  for (const auto& v : c.as_array()) {
    if (!v.is_number() || !std::isfinite(v.as_double()))
      throw format_error(what + " holds a value that is not a finite number");
    out.push_back(static_cast<float>(v.as_double()));
  }
  return out;
}

/// The test inputs: uniform over the calibrated input range, fixed seeds.
inline Tensor<float, Device<CPU>> test_inputs(const inference::QuantizedGraph& q) {
  const inference::Graph& g = *q.graph;
  std::vector<std::size_t> d{2};
  d.insert(d.end(), g.shapes[g.input].begin(), g.shapes[g.input].end());
  const QuantParams p = q.params[g.input];
  const float lo = p.scale * static_cast<float>(0 - p.zero_point);
  const float hi = p.scale * static_cast<float>(255 - p.zero_point);
  return Tensor<float, Device<CPU>>::uniform(Shape(d), 0x10C05, lo, hi);
}

template <AnyDevice Dev>
Tensor<float, Device<CPU>> run_on_host_data(const QuantizedPlan<Dev>& q,
                                            const Tensor<float, Device<CPU>>& x) {
  if constexpr (HostDevice<Dev>) {
    return q.predict(x);
  } else {
    return to<Device<CPU>>(q.predict(to<Dev>(x)));
  }
}

inline nn::Config calibration_config(const CalibrationOptions& c, std::size_t samples) {
  return nn::Config::make(
      {{"method", c.method == CalibrationMethod::min_max ? "min_max" : "percentile"},
       {"percentile", c.percentile},
       {"bins", static_cast<std::int64_t>(c.bins)},
       {"samples", static_cast<std::int64_t>(samples)}});
}

}  // namespace io::detail

/// Saves `model` with the int8 quantization `q` made from it, as a .keras archive at `path`
/// (atomically). q must have been made from the model's current weights.
template <AnyDevice Dev, AnyDevice QDev>
void save_quantized(const Model<Dev, float>& model, const QuantizedPlan<QDev>& q,
                    const std::filesystem::path& path) {
  namespace d = io::detail;
  if (!path.string().ends_with(".keras"))
    throw argument_error("locus::save_quantized: '" + path.string() + "' does not end in .keras");
  const InferencePlan<Dev> plan(model, {.max_batch = 1, .workspaces = 1});
  const std::string fingerprint = d::graph_fingerprint(q.graph());
  if (d::graph_fingerprint(plan.graph()) != fingerprint ||
      plan.graph().steps.size() != q.graph().steps.size())
    throw argument_error(
        "locus::save_quantized: the quantized plan was not made from this model's current "
        "weights; quantize the model again before saving");
  const inference::QuantizedGraph& qg = q.quantized();
  const inference::Graph& g = *qg.graph;
  nn::Config::array steps, values;
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    const auto& w = qg.weights[i];
    steps.push_back(
        nn::Config::make({{"name", g.steps[i].name},
                          {"weight_scales", d::float_list(w.scale.data(), w.scale.size())}}));
  }
  for (std::size_t v = 0; v < g.shapes.size(); ++v) {
    if (g.root[v] != v) {
      values.emplace_back(nullptr);
      continue;
    }
    values.push_back(
        nn::Config::make({{"scale", static_cast<double>(qg.params[v].scale)},
                          {"zero_point", static_cast<std::int64_t>(qg.params[v].zero_point)}}));
  }
  const auto x = d::test_inputs(qg);
  const auto y = d::run_on_host_data(q, x);
  nn::Config::array cases;
  const std::size_t in = x.size() / 2, out = y.size() / 2;
  for (std::size_t c = 0; c < 2; ++c)
    cases.push_back(nn::Config::make({{"input", d::float_list(x.data() + c * in, in)},
                                      {"output", d::float_list(y.data() + c * out, out)}}));
  const nn::Config doc = nn::Config::make(
      {{"format", "locus int8 post-training quantization"},
       {"version", d::quantization_version},
       {"scheme",
        "activations uint8 asymmetric per tensor; weights int8 symmetric per output channel"},
       {"calibration", d::calibration_config(qg.calibration, qg.calibration_samples)},
       {"fingerprint", fingerprint},
       {"steps", nn::Config(std::move(steps))},
       {"values", nn::Config(std::move(values))},
       {"test_cases", nn::Config(std::move(cases))}});
  io::write_file_atomically(
      path,
      io::keras_archive(model, {.include_optimizer = false},
                        {{d::quantization_entry, io::detail::bytes_of(io::to_json_text(doc))}}));
}

namespace io {

/// A quantized model from the bytes of a file save_quantized wrote (`what` names it in
/// messages), on Dev, its test cases re-checked: what load_quantized does after reading.
template <AnyDevice Dev>
QuantizedPlan<Dev> read_quantized(std::vector<std::byte> bytes, const std::string& what,
                                  InferenceOptions options = {}, QuantizeOptions qo = {}) {
  namespace d = io::detail;
  nn::Config doc;
  {
    const io::ZipReader zip = io::ZipReader::from_bytes(bytes, what);
    if (!zip.contains(d::quantization_entry))
      throw format_error(what + ": not a quantized model (no " +
                         std::string(d::quantization_entry) + "); load it with load_model");
    doc = io::parse_json(
        io::detail::text_of(
            zip.read(d::quantization_entry, io::detail::max_entry_bytes(bytes.size(), 64u << 20))),
        what + ": " + d::quantization_entry);
  }
  auto require = [&](bool ok, const std::string& why) {
    if (!ok) throw format_error(what + ": " + d::quantization_entry + ": " + why);
  };
  require(doc.is_object(), "not a JSON object");
  const nn::Config* version = doc.find("version");
  require(version && version->is_int(), "no version");
  if (version->as_int() != d::quantization_version)
    throw format_error(what + ": quantization format version " + std::to_string(version->as_int()) +
                       " (this locus reads version " + std::to_string(d::quantization_version) +
                       ")");
  const io::LoadedModel loaded = io::read_model(std::move(bytes), what, {.compile = false});
  const Model<Dev, float> model = io::bind_loaded<Dev>(loaded);
  const InferencePlan<Dev> plan(model, options);
  const inference::Graph& g = plan.graph();
  for (const char* key : {"fingerprint", "steps", "values", "test_cases", "calibration"})
    require(doc.find(key) != nullptr, std::string("no ") + key);
  const auto& steps = doc.at("steps");
  const auto& values = doc.at("values");
  require(steps.is_array() && values.is_array(), "steps and values must be lists");
  if (steps.as_array().size() != g.steps.size() || values.as_array().size() != g.shapes.size())
    throw model_mismatch_error(
        what + ": the quantization describes " + std::to_string(steps.as_array().size()) +
            " steps and " + std::to_string(values.as_array().size()) +
            " tensors, the model in the file lowers to " + std::to_string(g.steps.size()) +
            " and " + std::to_string(g.shapes.size()),
        "", std::to_string(g.steps.size()), std::to_string(steps.as_array().size()));
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    const auto& s = steps.as_array()[i];
    require(s.is_object() && s.find("name") && s.at("name").is_string(), "a step without a name");
    if (s.at("name").as_string() != g.steps[i].name)
      throw model_mismatch_error(what + ": step " + std::to_string(i) + " is '" +
                                     s.at("name").as_string() + "' in the quantization, '" +
                                     g.steps[i].name + "' in the model",
                                 g.steps[i].name, g.steps[i].name, s.at("name").as_string());
  }
  require(doc.at("fingerprint").is_string(), "fingerprint must be a string");
  if (doc.at("fingerprint").as_string() != d::graph_fingerprint(g))
    throw model_mismatch_error(what +
                                   ": the float weights differ from those the quantization was "
                                   "made for (fingerprint " +
                                   doc.at("fingerprint").as_string() +
                                   ", the file's weights give " + d::graph_fingerprint(g) + ")",
                               "", doc.at("fingerprint").as_string(), d::graph_fingerprint(g));
  inference::QuantizedGraph qg;
  qg.graph = plan.shared_graph();
  qg.params.resize(g.shapes.size());
  for (std::size_t v = 0; v < g.shapes.size(); ++v) {
    const auto& p = values.as_array()[v];
    if (g.root[v] != v) continue;
    require(p.is_object() && p.find("scale") && p.find("zero_point"),
            "tensor " + std::to_string(v) + " has no scale and zero point");
    const double scale = p.at("scale").as_double();
    const std::int64_t zp = p.at("zero_point").as_int();
    require(std::isfinite(scale) && scale > 0 && zp >= 0 && zp <= 255,
            "tensor " + std::to_string(v) + " has scale " + std::to_string(scale) +
                " and zero point " + std::to_string(zp) +
                " (a positive scale and a zero point in [0, 255] are needed)");
    qg.params[v] = {static_cast<float>(scale), static_cast<std::int32_t>(zp)};
  }
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    const inference::Step& s = g.steps[i];
    const auto& sc = steps.as_array()[i];
    const bool weighted =
        s.kind == inference::StepKind::conv2d || s.kind == inference::StepKind::dense;
    const nn::Config* ws = sc.find("weight_scales");
    require(ws != nullptr, "step '" + s.name + "' has no weight_scales");
    std::vector<float> scales =
        d::floats_of(*ws, weighted ? s.units : 0, what + ": step '" + s.name + "' weight_scales");
    for (float f : scales) require(f > 0, "step '" + s.name + "' has a weight scale <= 0");
    qg.weights.push_back(weighted ? inference::quantize_weights(s.kernel, s.fan_in, s.units, scales)
                                  : inference::QuantizedWeights{});
  }
  const auto& cal = doc.at("calibration");
  require(cal.is_object(), "calibration must be an object");
  if (const auto* m = cal.find("method"))
    qg.calibration.method = m->is_string() && m->as_string() == "min_max"
                                ? CalibrationMethod::min_max
                                : CalibrationMethod::percentile;
  if (const auto* p = cal.find("percentile"); p && p->is_number())
    qg.calibration.percentile = p->as_double();
  if (const auto* b = cal.find("bins"); b && b->is_int() && b->as_int() > 0)
    qg.calibration.bins = static_cast<std::size_t>(b->as_int());
  if (const auto* n = cal.find("samples"); n && n->is_int() && n->as_int() >= 0)
    qg.calibration_samples = static_cast<std::size_t>(n->as_int());
  QuantizedPlan<Dev> q(std::move(qg), options, qo);
  // Re-run the test cases.
  const auto& cases = doc.at("test_cases");
  require(cases.is_array() && cases.as_array().size() == 2, "test_cases must hold two cases");
  const std::size_t in = g.per_sample(g.input), out = g.per_sample(g.output);
  std::vector<std::size_t> dims{2};
  dims.insert(dims.end(), g.shapes[g.input].begin(), g.shapes[g.input].end());
  Tensor<float, Device<CPU>> x(uninitialized, Shape(dims));
  std::vector<float> expected;
  for (std::size_t c = 0; c < 2; ++c) {
    const auto& tc = cases.as_array()[c];
    require(tc.is_object() && tc.find("input") && tc.find("output"),
            "a test case without input or output");
    const auto xi = d::floats_of(tc.at("input"), in, what + ": test case input");
    std::copy(xi.begin(), xi.end(), x.data() + c * in);
    const auto yo = d::floats_of(tc.at("output"), out, what + ": test case output");
    expected.insert(expected.end(), yo.begin(), yo.end());
  }
  const auto y = d::run_on_host_data(q, x);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::abs(static_cast<double>(y.data()[i]) - expected[i]);
    if (!(diff <= d::test_case_tolerance))
      throw model_mismatch_error(
          what + ": the loaded int8 plan does not reproduce test case " + std::to_string(i / out) +
              " (output " + std::to_string(i % out) + " is " + std::to_string(y.data()[i]) +
              ", saved " + std::to_string(expected[i]) + ")",
          "", std::to_string(expected[i]), std::to_string(y.data()[i]));
  }
  return q;
}

}  // namespace io

/// Loads a quantized model saved by save_quantized onto Dev and re-checks its test cases.
template <AnyDevice Dev>
QuantizedPlan<Dev> load_quantized(const std::filesystem::path& path, InferenceOptions options = {},
                                  QuantizeOptions qo = {}) {
  return io::read_quantized<Dev>(io::read_file(path), path.string(), options, qo);
}

}  // namespace locus
