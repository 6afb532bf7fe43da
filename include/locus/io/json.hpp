// nn::Config <-> JSON text, through nlohmann::json (Debian's nlohmann-json3-dev).
//
// Keras's config.json, metadata.json and the model_config attribute of a legacy .h5 file
// are JSON; nn::Config is locus's own JSON-like value, so that the core needs no parser.
// Objects keep their keys in file order (ordered_json), integers stay integers, and the
// nesting depth is capped: these texts come from files and are fuzzed.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "../error.hpp"
#include "../nn/config.hpp"

namespace locus::io {

namespace detail {

/// Deeper than any model configuration (a nested model adds about 6 levels); a limit keeps
/// the recursive conversion off the end of the stack on hostile input.
inline constexpr int max_json_depth = 256;

inline nn::Config from_json(const nlohmann::ordered_json& j, const std::string& what, int depth) {
  using json = nlohmann::ordered_json;
  if (depth > max_json_depth)
    throw format_error(what + ": JSON nested deeper than " + std::to_string(max_json_depth) +
                       " levels");
  switch (j.type()) {
    case json::value_t::null:
      return nn::Config();
    case json::value_t::boolean:
      return nn::Config(j.get<bool>());
    case json::value_t::number_integer:
      return nn::Config(j.get<std::int64_t>());
    case json::value_t::number_unsigned: {
      const auto u = j.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return nn::Config(static_cast<std::int64_t>(u));
      return nn::Config(static_cast<double>(u));
    }
    case json::value_t::number_float:
      return nn::Config(j.get<double>());
    case json::value_t::string:
      return nn::Config(j.get<std::string>());
    case json::value_t::array: {
      nn::Config::array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_json(e, what, depth + 1));
      return nn::Config(std::move(a));
    }
    case json::value_t::object: {
      nn::Config::object o;
      o.reserve(j.size());
      for (const auto& [k, v] : j.items()) o.emplace_back(k, from_json(v, what, depth + 1));
      return nn::Config(std::move(o));
    }
    default:
      throw format_error(what + ": JSON holds a value that is not text (binary)");
  }
}

inline nlohmann::ordered_json to_json(const nn::Config& c) {
  using json = nlohmann::ordered_json;
  if (c.is_null()) return nullptr;
  if (c.is_bool()) return c.as_bool();
  if (c.is_int()) return c.as_int();
  if (c.is_number()) return c.as_double();
  if (c.is_string()) return c.as_string();
  if (c.is_array()) {
    json a = json::array();
    for (const auto& e : c.as_array()) a.push_back(to_json(e));
    return a;
  }
  json o = json::object();
  for (const auto& [k, v] : c.as_object()) o[k] = to_json(v);
  return o;
}

}  // namespace detail

/// Parses JSON text into a Config. Malformed text is a format_error naming `what` (the
/// file and member, "model.keras: config.json") and where the parser stopped.
inline nn::Config parse_json(std::string_view text, const std::string& what) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw format_error(what + ": not valid JSON (" + e.what() + ")");
  }
  return detail::from_json(j, what, 0);
}

/// JSON text of a Config (compact, as Keras writes config.json; numbers round-trip).
inline std::string to_json_text(const nn::Config& c) {
  return detail::to_json(c).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace locus::io
