// A compiled model's optimizer, loss and metrics as Keras's compile_config, and back.
//
// Keras 3 writes {"optimizer": {"class_name": "Adam", "config": {...}}, "loss": ...,
// "metrics": [...], ...} into config.json; Keras 2's legacy .h5 writes training_config
// with "optimizer_config" instead. Learning rates are written as the doubles locus computes
// with, so a model resumed from its file takes bitwise the same steps.
#pragma once

#include <string>
#include <vector>

#include "../error.hpp"
#include "../nn/config.hpp"
#include "../nn/functional.hpp"
#include "../nn/metrics.hpp"
#include "../nn/optimizers.hpp"
#include "../nn/training/trainer.hpp"

namespace locus::io {

/// What compile() was given, as a file holds it.
struct CompileSettings {
  OptimizerConfig optimizer;
  LossConfig loss;
  std::vector<Metric> metrics;
};

namespace detail {

inline nn::Config keras_object(const std::string& module, const std::string& cls, nn::Config cfg) {
  return nn::Config::make({{"module", module},
                           {"class_name", cls},
                           {"config", std::move(cfg)},
                           {"registered_name", nullptr}});
}

inline nn::Config optimizer_to_config(const OptimizerConfig& o) {
  const auto common = [](const char* name, double lr) {
    return nn::Config::make({{"name", name},
                             {"learning_rate", lr},
                             {"weight_decay", nullptr},
                             {"clipnorm", nullptr},
                             {"global_clipnorm", nullptr},
                             {"clipvalue", nullptr},
                             {"use_ema", false},
                             {"ema_momentum", 0.99},
                             {"ema_overwrite_frequency", nullptr},
                             {"loss_scale_factor", nullptr},
                             {"gradient_accumulation_steps", nullptr}});
  };
  return std::visit(
      [&](const auto& c) {
        using C = std::remove_cvref_t<decltype(c)>;
        if constexpr (std::is_same_v<C, SGD>) {
          nn::Config cfg = common("SGD", c.learning_rate);
          cfg.set("momentum", c.momentum).set("nesterov", c.nesterov);
          return keras_object("keras.optimizers", "SGD", cfg);
        } else if constexpr (std::is_same_v<C, Adam>) {
          nn::Config cfg = common("adam", c.learning_rate);
          cfg.set("beta_1", c.beta_1)
              .set("beta_2", c.beta_2)
              .set("epsilon", c.epsilon)
              .set("amsgrad", false);
          return keras_object("keras.optimizers", "Adam", cfg);
        } else {
          nn::Config cfg = common("rmsprop", c.learning_rate);
          cfg.set("rho", c.rho)
              .set("momentum", c.momentum)
              .set("epsilon", c.epsilon)
              .set("centered", c.centered);
          return keras_object("keras.optimizers", "RMSprop", cfg);
        }
      },
      o);
}

/// A number member, or `fallback` when it is missing or null (Keras omits defaults).
inline double number_or(const nn::Config& c, const char* key, double fallback) {
  const nn::Config* v = c.find(key);
  return v && !v->is_null() ? v->as_double() : fallback;
}

inline void refuse_set(const nn::Config& c, const std::string& cls, const char* key,
                       const nn::Config& neutral) {
  if (const nn::Config* v = c.find(key); v && !v->is_null() && !(*v == neutral)) {
    throw config_error("locus: optimizer " + cls + " with " + key + " = " + v->dump() +
                       " is not supported by locus; load with compile = false for inference");
  }
}

inline OptimizerConfig optimizer_from_config(const nn::Config& o) {
  if (o.is_string()) {
    const std::string n = o.as_string();
    if (n == "adam") return Adam{};
    if (n == "sgd") return SGD{};
    if (n == "rmsprop") return RMSprop{};
    throw config_error("locus: optimizer '" + n +
                       "' is not supported by locus (SGD, Adam, RMSprop); load with compile = "
                       "false for inference");
  }
  const std::string cls = o.at("class_name").as_string();
  const nn::Config& c = o.at("config");
  for (const char* k :
       {"weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "loss_scale_factor",
        "gradient_accumulation_steps", "ema_overwrite_frequency"})
    refuse_set(c, cls, k, nn::Config());
  refuse_set(c, cls, "use_ema", false);
  if (const nn::Config* lr = c.find("learning_rate"); lr && !lr->is_number()) {
    throw config_error("locus: optimizer " + cls + " has a learning-rate schedule " + lr->dump() +
                       ", which locus does not support; load with compile = false for inference");
  }
  if (cls == "Adam") {
    refuse_set(c, cls, "amsgrad", false);
    return Adam{number_or(c, "learning_rate", 0.001), number_or(c, "beta_1", 0.9),
                number_or(c, "beta_2", 0.999), number_or(c, "epsilon", 1e-7)};
  }
  if (cls == "SGD") {
    const nn::Config* n = c.find("nesterov");
    return SGD{number_or(c, "learning_rate", 0.01), number_or(c, "momentum", 0.0),
               n && !n->is_null() && n->as_bool()};
  }
  if (cls == "RMSprop") {
    const nn::Config* centred = c.find("centered");
    return RMSprop{number_or(c, "learning_rate", 0.001), number_or(c, "rho", 0.9),
                   number_or(c, "momentum", 0.0), number_or(c, "epsilon", 1e-7),
                   centred && !centred->is_null() && centred->as_bool()};
  }
  throw config_error(
      "locus: optimizer '" + cls +
      "' is not supported by locus (SGD, Adam, RMSprop); load with compile = false for inference");
}

inline nn::Config loss_to_config(const LossConfig& l) {
  return std::visit(
      [](const auto& loss) -> nn::Config {
        using L = std::remove_cvref_t<decltype(loss)>;
        if constexpr (requires { loss.from_logits; }) {
          if (loss.from_logits) {
            const char* k = std::is_same_v<L, SparseCategoricalCrossentropy>
                                ? "SparseCategoricalCrossentropy"
                            : std::is_same_v<L, CategoricalCrossentropy> ? "CategoricalCrossentropy"
                                                                         : "BinaryCrossentropy";
            return keras_object("keras.losses", k,
                                nn::Config::make({{"name", L::name},
                                                  {"reduction", "sum_over_batch_size"},
                                                  {"from_logits", true}}));
          }
        }
        return nn::Config(L::name);
      },
      l);
}

inline LossConfig loss_from_config(const nn::Config& l) {
  std::string name;
  bool logits = false;
  if (l.is_string()) {
    name = l.as_string();
  } else if (l.is_object() && l.contains("class_name")) {
    name = nn::snake_case(l.at("class_name").as_string());
    if (const nn::Config* c = l.find("config"); c && c->is_object())
      if (const nn::Config* f = c->find("from_logits"); f && f->is_bool()) logits = f->as_bool();
  } else {
    throw config_error("locus: the compile configuration's loss " + l.dump() +
                       " is not one loss; load with compile = false for inference");
  }
  if (name == "sparse_categorical_crossentropy") return SparseCategoricalCrossentropy{logits};
  if (name == "categorical_crossentropy") return CategoricalCrossentropy{logits};
  if (name == "binary_crossentropy") return BinaryCrossentropy{logits};
  if (name == "mean_squared_error" || name == "mse") return MeanSquaredError{};
  if (name == "mean_absolute_error" || name == "mae") return MeanAbsoluteError{};
  throw config_error("locus: loss '" + name +
                     "' is not supported by locus; load with compile = false for inference");
}

inline Metric metric_from_name(const std::string& n) {
  for (const Metric* m : {&Metric::accuracy, &Metric::sparse_categorical_accuracy,
                          &Metric::categorical_accuracy, &Metric::binary_accuracy, &Metric::mae,
                          &Metric::mse, &Metric::mean_absolute_error, &Metric::mean_squared_error})
    if (m->name() == n) return *m;
  if (n == "acc") return Metric::accuracy;
  if (n == "top_k_categorical_accuracy") return Metric::top_k_categorical_accuracy();
  if (n == "sparse_top_k_categorical_accuracy") return Metric::sparse_top_k_categorical_accuracy();
  throw config_error("locus: metric '" + n +
                     "' is not supported by locus; load with compile = false for inference");
}

inline std::vector<Metric> metrics_from_config(const nn::Config& m) {
  std::vector<Metric> out;
  if (m.is_null()) return out;
  const auto one = [&](const nn::Config& e, auto&& self) -> void {
    if (e.is_string()) {
      out.push_back(metric_from_name(e.as_string()));
    } else if (e.is_array()) {  // Keras nests the metrics per output
      for (const auto& x : e.as_array()) self(x, self);
    } else if (e.is_object() && e.contains("class_name")) {
      const nn::Config* c = e.find("config");
      const nn::Config* k = c ? c->find("k") : nullptr;
      const std::string n = nn::snake_case(e.at("class_name").as_string());
      Metric mt = metric_from_name(n);
      if (k && k->is_int())
        mt = Metric(mt.type(),
                    n == "top_k_categorical_accuracy" ? "top_k_categorical_accuracy"
                                                      : "sparse_top_k_categorical_accuracy",
                    static_cast<int>(k->as_int()));
      out.push_back(mt);
    } else if (!e.is_null()) {
      throw config_error("locus: cannot read the metric " + e.dump());
    }
  };
  one(m, one);
  return out;
}

}  // namespace detail

/// Keras 3's compile_config of `s`.
inline nn::Config compile_config(const CompileSettings& s) {
  nn::Config metrics;
  if (!s.metrics.empty()) {
    metrics = nn::Config(nn::Config::array{});
    for (const Metric& m : s.metrics) metrics.push_back(m.name());
  }
  return nn::Config::make({{"optimizer", detail::optimizer_to_config(s.optimizer)},
                           {"loss", detail::loss_to_config(s.loss)},
                           {"loss_weights", nullptr},
                           {"metrics", metrics},
                           {"weighted_metrics", nullptr},
                           {"run_eagerly", false},
                           {"steps_per_execution", 1},
                           {"jit_compile", false}});
}

/// The settings of a Keras 3 compile_config or a Keras 2 training_config. What locus cannot
/// train with (another optimizer, a schedule, a loss or metric it lacks) is a config_error
/// naming it.
inline CompileSettings compile_settings(const nn::Config& c) {
  if (!c.is_object())
    throw config_error("locus: the compile configuration is not an object: " + c.dump());
  const nn::Config* opt = c.find("optimizer");
  if (!opt) opt = c.find("optimizer_config");
  if (!opt || opt->is_null())
    throw config_error("locus: the compile configuration has no optimizer");
  const nn::Config* loss = c.find("loss");
  if (!loss || loss->is_null()) throw config_error("locus: the compile configuration has no loss");
  const nn::Config* metrics = c.find("metrics");
  return {detail::optimizer_from_config(*opt), detail::loss_from_config(*loss),
          metrics ? detail::metrics_from_config(*metrics) : std::vector<Metric>{}};
}

}  // namespace locus::io
