// nn::Config: a layer's configuration as Keras spells it, a JSON-like value.
//
// A layer description is the source of truth of a model: `Dense(10, "relu").config()` is
// {"units": 10, "activation": "relu", "use_bias": true, ...} with Keras's own keys, and
// `Dense::from_config` rebuilds the layer from it. The value type is ours, not a JSON
// library's, so the core of locus needs no parser; the model I/O component converts it
// to and from JSON. Objects keep their keys in insertion order, as Keras writes them.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../error.hpp"

namespace locus::nn {

class Config {
 public:
  using array = std::vector<Config>;
  using member = std::pair<std::string, Config>;
  using object = std::vector<member>;

  Config() = default;  // null
  Config(std::nullptr_t) {}  // NOLINT
  Config(bool b) : v_(b) {}  // NOLINT
  Config(int i) : v_(static_cast<std::int64_t>(i)) {}  // NOLINT
  Config(std::int64_t i) : v_(i) {}  // NOLINT
  Config(std::size_t i) : v_(static_cast<std::int64_t>(i)) {}  // NOLINT
  Config(double d) : v_(d) {}  // NOLINT
  Config(const char* s) : v_(std::string(s)) {}  // NOLINT
  Config(std::string s) : v_(std::move(s)) {}  // NOLINT
  Config(array a) : v_(std::make_shared<array>(std::move(a))) {}  // NOLINT
  Config(object o) : v_(std::make_shared<object>(std::move(o))) {}  // NOLINT

  /// An object from {key, value} pairs: Config::make({{"units", 10}, {"use_bias", true}}).
  static Config make(std::initializer_list<member> members) { return Config(object(members)); }
  /// An array: Config::list({3, 3}).
  static Config list(std::initializer_list<Config> items) { return Config(array(items)); }
  template <class It>
  static Config list(It first, It last) {
    array a;
    for (; first != last; ++first) a.emplace_back(*first);
    return Config(std::move(a));
  }

  bool is_null() const { return v_.index() == 0; }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_number() const { return is_int() || std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<object>>(v_); }

  bool as_bool() const { return get<bool>("a boolean"); }
  std::int64_t as_int() const {
    if (const auto* d = std::get_if<double>(&v_); d && *d == static_cast<double>(static_cast<std::int64_t>(*d)))
      return static_cast<std::int64_t>(*d);
    return get<std::int64_t>("an integer");
  }
  double as_double() const {
    if (const auto* i = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*i);
    return get<double>("a number");
  }
  const std::string& as_string() const { return get<std::string>("a string"); }
  const array& as_array() const { return *get<std::shared_ptr<array>>("an array"); }
  const object& as_object() const { return *get<std::shared_ptr<object>>("an object"); }

  /// The member `key` of an object, or nullptr.
  const Config* find(const std::string& key) const {
    if (!is_object()) return nullptr;
    for (const auto& [k, v] : as_object())
      if (k == key) return &v;
    return nullptr;
  }
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  /// The member `key`; a missing key is a config_error naming it.
  const Config& at(const std::string& key) const {
    if (const Config* c = find(key)) return *c;
    throw config_error("locus: the configuration has no '" + key + "' entry");
  }
  /// Adds or replaces a member (this must be an object or null).
  Config& set(const std::string& key, Config value) {
    if (is_null()) v_ = std::make_shared<object>();
    auto& o = mutable_object();
    for (auto& [k, v] : o) {
      if (k == key) {
        v = std::move(value);
        return *this;
      }
    }
    o.emplace_back(key, std::move(value));
    return *this;
  }
  /// Appends to an array (this must be an array or null).
  Config& push_back(Config value) {
    if (is_null()) v_ = std::make_shared<array>();
    if (!is_array()) throw config_error("locus: push_back on a configuration value that is not an array");
    auto& p = std::get<std::shared_ptr<array>>(v_);
    if (p.use_count() > 1) p = std::make_shared<array>(*p);
    p->push_back(std::move(value));
    return *this;
  }

  friend bool operator==(const Config& a, const Config& b) {
    if (a.is_number() && b.is_number()) {
      if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
      return a.as_double() == b.as_double();
    }
    if (a.v_.index() != b.v_.index()) return false;
    if (a.is_array()) return a.as_array() == b.as_array();
    if (a.is_object()) return a.as_object() == b.as_object();
    return a.v_ == b.v_;
  }

  /// Compact JSON text (for messages and tests; the I/O component has the real writer).
  std::string dump() const {
    if (is_null()) return "null";
    if (is_bool()) return as_bool() ? "true" : "false";
    if (is_int()) return std::to_string(as_int());
    if (const auto* d = std::get_if<double>(&v_)) {
      std::string s = std::to_string(*d);
      while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
      return s;
    }
    if (is_string()) return "\"" + as_string() + "\"";
    std::string out;
    if (is_array()) {
      out = "[";
      for (std::size_t i = 0; i < as_array().size(); ++i) out += (i ? ", " : "") + as_array()[i].dump();
      return out + "]";
    }
    out = "{";
    bool first = true;
    for (const auto& [k, v] : as_object()) {
      out += (first ? "\"" : ", \"") + k + "\": " + v.dump();
      first = false;
    }
    return out + "}";
  }

 private:
  template <class V>
  const V& get(const char* what) const {
    if (const auto* p = std::get_if<V>(&v_)) return *p;
    throw config_error(std::string("locus: expected ") + what + " in the configuration, found " + dump());
  }
  object& mutable_object() {
    if (!is_object()) throw config_error("locus: set() on a configuration value that is not an object");
    auto& p = std::get<std::shared_ptr<object>>(v_);
    if (p.use_count() > 1) p = std::make_shared<object>(*p);  // copy on write: values stay values
    return *p;
  }

  std::variant<std::monostate, bool, std::int64_t, double, std::string, std::shared_ptr<array>,
               std::shared_ptr<object>>
      v_;
};

}  // namespace locus::nn
