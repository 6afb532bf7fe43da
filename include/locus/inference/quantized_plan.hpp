// QuantizedPlan<Dev>: an inference plan in int8 (quantization.hpp), and the two calls that
// make one:
//
//   locus::Calibration cal = locus::calibrate(plan, host_images);       // float ranges
//   locus::QuantizedPlan<Device<CPU>> q = locus::quantize(plan, cal);  // int8 weights
//   Tensor<float, Device<CPU>> y = q.predict(x);                       // float outputs
//
// Calibration runs the plan's float graph on the host (the data are host tensors, whatever
// the plan's device), so the same calibration quantizes a plan for any device. A quantized
// plan keeps the float plan's contract: predict_into allocates nothing and is thread-safe.
#pragma once

#include <memory>
#include <type_traits>

#include "../detail/contract.hpp"
#include "../error.hpp"
#include "cpu/int8_runner.hpp"
#include "opencl/int8_runner.hpp"
#include "plan.hpp"
#include "quantization.hpp"

namespace locus {

using inference::cpu::Int8Kernel;

struct QuantizeOptions {
  /// CPU: which uint8 x int8 kernel runs the products (automatic: the best this CPU has;
  /// a named one the CPU lacks is refused with unsupported_error).
  Int8Kernel kernel = Int8Kernel::automatic;
};

namespace inference::detail {
template <AnyDevice Dev>
using int8_runner_for =
    std::conditional_t<HostDevice<Dev>, cpu::Int8Runner, opencl::Int8Runner<Dev>>;
}  // namespace inference::detail

template <AnyDevice Dev>
class QuantizedPlan : public inference::detail::PlanCalls<QuantizedPlan<Dev>, Dev> {
  friend class inference::detail::PlanCalls<QuantizedPlan<Dev>, Dev>;

 public:
  using tensor = Tensor<float, Dev>;
  static constexpr const char* name = "locus::QuantizedPlan";

  QuantizedPlan(inference::QuantizedGraph q, InferenceOptions options = {}, QuantizeOptions qo = {})
      : q_(std::make_shared<const inference::QuantizedGraph>(std::move(q))),
        options_(options),
        runner_(make_runner(q_, options, qo)) {}

  const inference::QuantizedGraph& quantized() const { return *q_; }
  const inference::Graph& graph() const { return *q_->graph; }
  const InferenceOptions& options() const { return options_; }
  /// The CPU kernel the products run on (a device plan's products are OpenCL C: portable).
  Int8Kernel kernel() const {
    if constexpr (HostDevice<Dev>) {
      return runner_.kernel();
    } else {
      return Int8Kernel::portable;
    }
  }

 private:
  static inference::detail::int8_runner_for<Dev> make_runner(
      const std::shared_ptr<const inference::QuantizedGraph>& q, const InferenceOptions& o,
      const QuantizeOptions& qo) {
    if constexpr (HostDevice<Dev>) {
      return inference::cpu::Int8Runner(q, o, qo.kernel);
    } else {
      if (qo.kernel != Int8Kernel::automatic)
        throw argument_error(
            "locus::QuantizedPlan: QuantizeOptions::kernel chooses a CPU kernel; a device plan "
            "takes Int8Kernel::automatic");
      return inference::opencl::Int8Runner<Dev>(q, o);
    }
  }

  std::shared_ptr<const inference::QuantizedGraph> q_;
  InferenceOptions options_;
  inference::detail::int8_runner_for<Dev> runner_;
};

/// The ranges of every tensor of `plan` over representative host data ([N, ...input shape]).
template <AnyDevice Dev, AnyDevice DataDev>
Calibration calibrate(const InferencePlan<Dev>& plan, const Tensor<float, DataDev>& data,
                      CalibrationOptions options = {}) {
  if constexpr (!HostDevice<DataDev>) {
    (void)sizeof(locus::detail::calibration_data_on_device<DataDev>);
    return {};
  } else {
    inference::detail::check_io(plan.graph(), data.shape(), nullptr, "locus::calibrate");
    return inference::calibrate_graph(plan.shared_graph(), data.data(), data.shape()[0], options);
  }
}

/// The int8 plan of `plan` with the ranges of `calibration` (on the plan's device).
template <AnyDevice Dev>
QuantizedPlan<Dev> quantize(const InferencePlan<Dev>& plan, const Calibration& calibration,
                            QuantizeOptions options = {}) {
  if (calibration.lo.size() != plan.graph().shapes.size())
    throw argument_error("locus::quantize: the calibration was made for another model (" +
                         std::to_string(calibration.lo.size()) + " tensors, this plan has " +
                         std::to_string(plan.graph().shapes.size()) + ")");
  return QuantizedPlan<Dev>(inference::quantize_graph(plan.shared_graph(), calibration),
                            plan.options(), options);
}

}  // namespace locus
