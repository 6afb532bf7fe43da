// mpi::broadcast_model(model, session): every rank's model becomes rank 0's.
//
// Replicas start alike (data parallelism keeps them alike only from there): every weight,
// trainable or not, and, when rank 0's model is compiled, its optimizer's state (slots and
// iteration count). So a restart in which rank 0 alone loaded a checkpoint
// (locus::load_model restores the optimizer) resumes identically on every rank.
//
// The ranks first agree that their models match (rank 0 sends what it will send: every
// weight's shape, the optimizer and its slots' shapes), so that a mismatch is one
// argument_error on every rank, naming what differs, instead of a garbled or hanging
// transfer; the values then cross in one broadcast.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../../error.hpp"
#include "../../locus.hpp"
#include "collectives.hpp"
#include "session.hpp"
#include "staging.hpp"

namespace locus::mpi {

namespace detail {

// What rank 0 sends, as numbers: the weights' shapes, then whether an optimizer state
// follows and, if so, the optimizer (kind, learning rate, slots per parameter, iteration
// count) and every slot's shape.
struct model_description {
  std::vector<Shape> weights;
  bool optimizer = false;
  std::uint64_t kind = 0, learning_rate_bits = 0, slots_per_parameter = 0, iterations = 0;
  std::vector<std::vector<Shape>> slots;  // per parameter: none (never stepped) or all

  std::vector<std::uint64_t> encode() const {
    std::vector<std::uint64_t> out{weights.size()};
    const auto put = [&](const Shape& s) {
      out.push_back(s.rank());
      for (std::size_t d : s) out.push_back(d);
    };
    for (const Shape& s : weights) put(s);
    out.push_back(optimizer);
    if (!optimizer) return out;
    out.insert(out.end(), {kind, learning_rate_bits, slots_per_parameter, iterations});
    out.push_back(slots.size());
    for (const auto& p : slots) {
      out.push_back(p.size());
      for (const Shape& s : p) put(s);
    }
    return out;
  }

  static model_description decode(const std::vector<std::uint64_t>& in) {
    std::size_t at = 0;
    const auto next = [&]() -> std::uint64_t {
      if (at >= in.size()) throw communication_error("locus::mpi: a truncated model description");
      return in[at++];
    };
    const auto shape = [&] {
      Shape s;
      for (std::uint64_t r = next(), i = 0; i < r; ++i) s.push_back(next());
      return s;
    };
    model_description d;
    for (std::uint64_t w = next(), i = 0; i < w; ++i) d.weights.push_back(shape());
    d.optimizer = next() != 0;
    if (!d.optimizer) return d;
    d.kind = next();
    d.learning_rate_bits = next();
    d.slots_per_parameter = next();
    d.iterations = next();
    d.slots.resize(next());
    for (auto& p : d.slots)
      for (std::uint64_t k = next(), i = 0; i < k; ++i) p.push_back(shape());
    return d;
  }
};

template <AnyDevice Dev, class T>
std::uint64_t used_slot_count(const Optimizer<Dev, T>& o) {
  const auto used = o.used_slots();
  return static_cast<std::uint64_t>(used[0]) + used[1] + used[2];
}

template <AnyDevice Dev, class T>
std::uint64_t learning_rate_bits(const Optimizer<Dev, T>& o) {
  return std::bit_cast<std::uint64_t>(
      std::visit([](const auto& c) { return static_cast<double>(c.learning_rate); }, o.config()));
}

template <AnyDevice Dev, class T>
model_description describe(const Model<Dev, T>& model) {
  model_description d;
  for (const auto& w : model.weight_info()) d.weights.push_back(w.shape);
  d.optimizer = model.compiled();
  if (!d.optimizer) return d;
  const Optimizer<Dev, T>& o = model.optimizer();
  d.kind = o.config().index();
  d.learning_rate_bits = learning_rate_bits(o);
  d.slots_per_parameter = used_slot_count(o);
  d.iterations = o.iterations();
  d.slots.resize(o.slotted_parameters());
  for (std::size_t i = 0; i < d.slots.size(); ++i)
    for (const auto* t : o.slot_tensors(i)) d.slots[i].push_back(t->shape());
  return d;
}

// Why this rank's model cannot take rank 0's (empty when it can).
template <AnyDevice Dev, class T>
std::string mismatch(const Model<Dev, T>& model, const model_description& r0, int rank) {
  const std::string here = "rank " + std::to_string(rank) + "'s model";
  if (!model.built()) return here + " is not built (build it as rank 0's)";
  const auto info = model.weight_info();
  if (info.size() != r0.weights.size()) {
    return here + " has " + std::to_string(info.size()) + " weights, rank 0's " +
           std::to_string(r0.weights.size());
  }
  for (std::size_t i = 0; i < info.size(); ++i) {
    if (!(info[i].shape == r0.weights[i])) {
      return "the weight '" + info[i].name + "' is " + to_string(info[i].shape) + " on rank " +
             std::to_string(rank) + " and " + to_string(r0.weights[i]) + " on rank 0";
    }
  }
  if (!r0.optimizer) return {};
  if (!model.compiled()) return here + " is not compiled, rank 0's is (compile it alike)";
  const Optimizer<Dev, T>& o = model.optimizer();
  if (o.config().index() != r0.kind || learning_rate_bits(o) != r0.learning_rate_bits ||
      used_slot_count(o) != r0.slots_per_parameter) {
    return here +
           "'s optimizer is not rank 0's (another kind or learning rate); compile every "
           "rank's model alike";
  }
  return {};
}

}  // namespace detail

/// Makes every rank's model rank 0's: all weights and, when rank 0's model is compiled, the
/// optimizer's state (a rank whose optimizer has never stepped gets rank 0's slots and
/// iteration count; rank 0's fresh optimizer makes the others fresh too). Every rank calls
/// it at the same point. Throws argument_error on every rank when a model does not match
/// rank 0's (weights, compiled or not, optimizer kind or learning rate), and
/// communication_error when a rank does not take part within the session's timeout.
template <AnyDevice Dev, class T>
void broadcast_model(Model<Dev, T>& model, Session& session) {
  const std::string where = "locus::mpi::broadcast_model";
  std::vector<std::uint64_t> encoded;
  std::string problem;
  if (session.rank() == 0) {
    if (!model.built()) {
      problem = "rank 0's model is not built (build it before broadcasting it)";
    } else {
      for (const auto& w : std::as_const(model).weights())
        if (w.second->size() == 0) problem = "rank 0's weight '" + w.first + "' has no values";
      if (problem.empty()) encoded = detail::describe(model).encode();
    }
  }
  std::uint64_t length = encoded.size();
  broadcast(session, std::span(&length, 1), "the model description's size (" + where + ")");
  encoded.resize(length);
  broadcast(session, std::span(encoded), "the model description (" + where + ")");
  detail::model_description r0;
  if (length == 0) {
    if (problem.empty()) problem = "rank 0's model cannot be sent (rank 0 says why)";
  } else {
    r0 = detail::model_description::decode(encoded);
    if (session.rank() != 0) problem = detail::mismatch(model, r0, session.rank());
  }
  // Every rank learns whether any failed (the highest failing rank, 1-based), and all
  // throw together: none is left waiting for the values.
  const std::uint64_t failing =
      max_over_ranks(session, problem.empty() ? 0 : static_cast<std::uint64_t>(session.rank()) + 1,
                     "the model check (" + where + ")");
  if (failing) {
    throw argument_error(where + ": " +
                         (problem.empty() ? "rank " + std::to_string(failing - 1) +
                                                "'s model does not match rank 0's (that rank "
                                                "says why)"
                                          : problem));
  }

  // The values: weights, then the optimizer's slots, in one buffer.
  std::vector<Tensor<T, Dev>*> targets;
  std::vector<Shape> shapes = r0.weights;
  for (auto& w : model.weights()) targets.push_back(w.second);
  std::vector<std::vector<Tensor<T, Dev>>> slots(r0.slots.size());
  for (std::size_t i = 0; i < r0.slots.size(); ++i) {
    slots[i].resize(r0.slots[i].size());
    for (std::size_t k = 0; k < slots[i].size(); ++k) {
      targets.push_back(&slots[i][k]);
      shapes.push_back(r0.slots[i][k]);
    }
  }
  detail::host_staging<Dev, T> staging;
  const std::string what = "the model's values (" + where + ")";
  if (session.rank() == 0) {
    std::vector<const Tensor<T, Dev>*> sources;
    for (const auto& w : std::as_const(model).weights()) sources.push_back(w.second);
    for (std::size_t i = 0; i < r0.slots.size(); ++i)
      for (const auto* t : model.optimizer().slot_tensors(i)) sources.push_back(t);
    broadcast(session, staging.gather(sources, 0), what);
  } else {
    std::size_t n = 0;
    for (const Shape& s : shapes) n += s.size();
    std::vector<T> values(n);
    broadcast(session, std::span(values), what);
    staging.scatter(values, targets, shapes);
    if (r0.optimizer) model.optimizer().restore(r0.iterations, std::move(slots));
  }
}

}  // namespace locus::mpi
