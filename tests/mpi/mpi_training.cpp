// Data-parallel training across MPI ranks (locus/parallel/mpi.hpp), run by mpirun with two
// ranks through check_run.sh, which checks the exit status, the output and that the job
// ends. One program, one mode per run:
//
//   mpi_training equivalence <cpu|gpu>       the 2-rank run equals one process with the same
//                                            global batch; every rank's weights, state and
//                                            logs are bitwise identical; a stop asked by
//                                            one rank stops all
//   mpi_training throw <cpu|gpu>             rank 1's pipeline throws mid-epoch
//   mpi_training die <cpu|gpu>               rank 1 exits mid-epoch (std::_Exit)
//   mpi_training stall <cpu|gpu>             rank 1 stops taking part (sleeps) mid-epoch
//   mpi_training uneven <cpu|gpu>            a last global batch with rows for one rank only
//   mpi_training checkpoint <cpu|gpu> <dir>  2 epochs, checkpoints by rank 0, rank 1 dies in
//                                            epoch 2
//   mpi_training resume <cpu|gpu> <dir>      resumes the checkpoint of epoch 1 and compares
//                                            with an uninterrupted run
//
// A failed check prints "CHECK FAILED: ..." and makes the rank exit non-zero.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <locus/locus.hpp>
#include <locus/parallel/mpi.hpp>
#ifdef LOCUS_MPI_TEST_IO
#include <locus/io.hpp>
#endif

#include "../../examples/headline_cnn_model.hpp"

namespace {

using namespace locus;
using C = Device<CPU>;
using G = Device<GPU>;
using HostSet = data::Dataset<C, float, std::int32_t>;

constexpr std::size_t features = 12, classes = 4, rows = 192, global_batch = 32;
// The record at which rank 1's pipeline fails in the failure modes: in the first epoch,
// after several steps.
constexpr std::uint64_t failing_record = 100;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("CHECK FAILED: %s\n", what.c_str());
    std::fflush(stdout);
    ++failures;
  }
}

// Synthetic classification: features from a fixed formula, the label the argmax of a fixed
// linear map of them (learnable, so the weights move).
HostSet examples(std::size_t n = rows) {
  std::vector<float> x(n * features);
  std::vector<std::int32_t> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    double best = -1e30;
    for (std::size_t c = 0; c < classes; ++c) {
      double score = 0;
      for (std::size_t f = 0; f < features; ++f) {
        const double v = std::sin(0.37 * static_cast<double>(i * features + f) + 0.1);
        if (c == 0) x[i * features + f] = static_cast<float>(v);
        score += v * std::cos(1.3 * static_cast<double>(c * features + f));
      }
      if (score > best) {
        best = score;
        y[i] = static_cast<std::int32_t>(c);
      }
    }
  }
  return HostSet::from_tensors(Tensor<float, C>::from_data({n, features}, x.data()),
                               Tensor<std::int32_t, C>::from_data({n}, y.data()))
      .shuffle(n, /*seed=*/7);
}

template <AnyDevice Dev>
Sequential<Dev> dense_model(std::uint64_t seed, bool adam) {
  Sequential<Dev> m(Input({features}), Dense(16, Activation::relu),
                    Dense(classes, Activation::softmax));
  m.build(seed);
  if (adam)
    m.compile(Adam{.learning_rate = 0.01}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  else
    m.compile(SGD{.learning_rate = 0.1, .momentum = 0.9}, SparseCategoricalCrossentropy{},
              {Metric::accuracy});
  return m;
}

template <AnyDevice Dev>
Sequential<Dev> batch_norm_model(std::uint64_t seed) {
  Sequential<Dev> m(Input({features}), Dense(16), BatchNormalization(), ReLU(),
                    Dense(classes, Activation::softmax));
  m.build(seed);
  m.compile(SGD{.learning_rate = 0.05}, SparseCategoricalCrossentropy{}, {Metric::accuracy});
  return m;
}

// Every weight of a model (trainable or not), in weights() order, on the host.
template <AnyDevice Dev>
std::vector<float> host_weights(const Model<Dev>& m) {
  std::vector<float> out;
  for (const auto& w : m.weights()) {
    const Tensor<float, C> h = to<C>(*w.second);
    out.insert(out.end(), h.data(), h.data() + h.size());
  }
  return out;
}

// Whether `mine` is bitwise rank 0's `mine` on every rank (the same answer on all ranks).
bool same_on_all_ranks(mpi::Session& s, std::vector<float> mine, const std::string& what) {
  std::vector<float> r0 = mine;
  mpi::broadcast(s, std::span(r0), what);
  const bool differs = std::memcmp(r0.data(), mine.data(), mine.size() * sizeof(float)) != 0;
  return !mpi::any_rank(s, differs, what + " (comparison)");
}

// The largest |a - b| and the largest |a - b| / (atol + rtol |b|) (numpy's allclose: <= 1).
struct closeness {
  double max_abs = 0, worst = 0;
};
closeness compare(const std::vector<float>& a, const std::vector<float>& b, double rtol,
                  double atol) {
  closeness c;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    c.max_abs = std::max(c.max_abs, d);
    c.worst = std::max(c.worst, d / (atol + rtol * std::abs(static_cast<double>(b[i]))));
  }
  return c;
}

// A callback with one job on one rank.
class OnRank final : public Callback {
 public:
  OnRank(int rank, int on, std::function<void(TrainingContext&, std::size_t, std::size_t)> f)
      : act_(rank == on), f_(std::move(f)) {}
  void on_epoch_begin(TrainingContext&, std::size_t epoch) override { epoch_ = epoch; }
  void on_train_batch_begin(TrainingContext& ctx, std::size_t batch) override {
    if (act_) f_(ctx, epoch_, batch);
  }
  void on_epoch_end(TrainingContext& ctx, std::size_t epoch, const Logs&) override {
    if (act_) f_(ctx, epoch, std::size_t(-1));
  }

 private:
  bool act_;
  std::function<void(TrainingContext&, std::size_t, std::size_t)> f_;
  std::size_t epoch_ = 0;
};

template <AnyDevice Dev>
void equivalence(mpi::Session& s) {
  const HostSet data = examples();
  // 1. Two ranks, 16 rows each per step, against one process with the same global batch.
  Sequential<Dev> model = dense_model<Dev>(3, /*adam=*/false);
  mpi::DataParallel<Dev> dp(s);
  const History h = dp.fit(model, data, global_batch, {.epochs = 2, .verbose = 0});
  const std::vector<float> w = host_weights(model);
  check(same_on_all_ranks(s, w, "the weights"), "the ranks' weights differ");
  check(same_on_all_ranks(s, {static_cast<float>(h.last("loss"))}, "the loss"),
        "the ranks' logs differ");
  const std::size_t params = model.count_params();
  check(dp.last_step_bytes() == (params + 1) * sizeof(float) &&
            mpi::DataParallel<Dev>::step_bytes(model) == dp.last_step_bytes(),
        "a step all-reduces " + std::to_string(dp.last_step_bytes()) + " bytes, not (" +
            std::to_string(params) + " + 1) * 4");
  if (s.rank() == 0) {
    std::printf("bytes all-reduced per step: test model %zu (%zu parameters + 1 slot)",
                dp.last_step_bytes(), params);
    const auto cnn = headline_example::headline_cnn<C>();
    std::printf("; headline CNN %zu (%zu parameters + 1 slot)\n",
                mpi::DataParallel<C>::step_bytes(cnn), cnn.count_params());
    Sequential<Dev> single = dense_model<Dev>(3, false);
    const History hs =
        single.fit(to<Dev>(data.batch(global_batch)).prefetch(2), {.epochs = 2, .verbose = 0});
    const closeness c = compare(w, host_weights(single), 1e-5, 1e-6);
    std::printf(
        "2 ranks vs 1 process, %zu weights: max |difference| %.3g, worst "
        "|difference| / (1e-6 + 1e-5 |value|) %.3g\n",
        w.size(), c.max_abs, c.worst);
    check(c.worst <= 1, "the 2-rank weights differ from one process's");
    const double dl = std::abs(h.last("loss") - hs.last("loss")) / hs.last("loss");
    const double da = std::abs(h.last("accuracy") - hs.last("accuracy"));
    std::printf("loss %.7g vs %.7g, accuracy %.7g vs %.7g\n", h.last("loss"), hs.last("loss"),
                h.last("accuracy"), hs.last("accuracy"));
    check(dl < 1e-5 && da < 1e-6, "the 2-rank logs differ from one process's");
  }

  // 2. Batch normalisation: each rank's moving statistics come from its own rows until the
  // end of the epoch averages them; a stop that only rank 1 asks for stops both.
  Sequential<Dev> bn = batch_norm_model<Dev>(5);
  mpi::DataParallel<Dev> dp2(s);
  auto stop_on_rank_1 = std::make_shared<OnRank>(
      s.rank(), 1, [](TrainingContext& ctx, std::size_t, std::size_t batch) {
        if (batch == std::size_t(-1)) ctx.stop_training();
      });
  const History hb =
      dp2.fit(bn, data, global_batch, {.epochs = 3, .verbose = 0, .callbacks = {stop_on_rank_1}});
  check(same_on_all_ranks(s, host_weights(bn), "the batch-normalised model's weights"),
        "the ranks' batch normalisation weights or statistics differ");
  check(hb.epochs == 1, "rank " + std::to_string(s.rank()) + " ran " + std::to_string(hb.epochs) +
                            " epochs after rank 1 asked to stop after the first");
}

// Rank 1's pipeline fails at `failing_record` of the first epoch in the way `how` names.
template <AnyDevice Dev>
void failure(mpi::Session& s, const std::string& how) {
  const int rank = s.rank();
  const HostSet data = examples().map([rank, how](data::Example<C> e) {
    if (rank == 1 && e.record == failing_record) {
      if (how == "throw") throw std::runtime_error("injected failure at record 100");
      if (how == "die") std::_Exit(7);
      if (how == "stall") std::this_thread::sleep_for(std::chrono::minutes(10));
    }
    return e;
  });
  Sequential<Dev> model = dense_model<Dev>(3, false);
  mpi::DataParallel<Dev> dp(s);
  dp.fit(model, data, global_batch, {.epochs = 2, .verbose = 0});
  check(false, "training ended although rank 1 failed");
}

template <AnyDevice Dev>
void uneven(mpi::Session& s) {
  Sequential<Dev> model = dense_model<Dev>(3, false);
  mpi::DataParallel<Dev> dp(s);
  dp.fit(model, examples(rows + 1), global_batch, {.epochs = 1, .verbose = 0});
  check(false, "fit accepted a last batch of 1 row for 2 ranks");
}

#ifdef LOCUS_MPI_TEST_IO
template <AnyDevice Dev>
void checkpoint(mpi::Session& s, const std::filesystem::path& dir) {
  Sequential<Dev> model = dense_model<Dev>(3, /*adam=*/true);
  mpi::DataParallel<Dev> dp(s);
  auto die_in_epoch_2 = std::make_shared<OnRank>(
      s.rank(), 1, [](TrainingContext&, std::size_t epoch, std::size_t batch) {
        if (epoch == 1 && batch == 2) std::_Exit(9);
      });
  auto ckpt =
      std::make_shared<ModelCheckpoint<Dev>>(model, (dir / "ckpt-{epoch:02d}.keras").string());
  dp.fit(model, examples(), global_batch,
         {.epochs = 2, .verbose = 0, .callbacks = {die_in_epoch_2}}, {ckpt});
  check(false, "training ended although rank 1 died in epoch 2");
}

template <AnyDevice Dev>
void resume(mpi::Session& s, const std::filesystem::path& dir) {
  const HostSet data = examples();
  Sequential<Dev> full = dense_model<Dev>(3, true);
  mpi::DataParallel<Dev> dp(s);
  dp.fit(full, data, global_batch, {.epochs = 2, .verbose = 0});
  const std::vector<float> expected = host_weights(full);

  // Rank 0 resumes from the checkpoint of epoch 1; the others start from a model of another
  // seed, compiled alike: fit makes them rank 0's (weights and Adam's state) first.
  const auto resumed = [&](Model<Dev>& m) {
    dp.fit(m, data, global_batch, {.epochs = 2, .verbose = 0, .initial_epoch = 1});
    return std::pair(host_weights(m), m.optimizer().iterations());
  };
  std::pair<std::vector<float>, std::uint64_t> got;
  if (s.rank() == 0) {
    Model<Dev> m = load_model<Dev>(dir / "ckpt-01.keras");
    got = resumed(m);
  } else {
    Sequential<Dev> m = dense_model<Dev>(11, true);
    got = resumed(m);
  }
  const closeness c = compare(got.first, expected, 1e-6, 1e-7);
  std::printf(
      "rank %d: resumed vs uninterrupted, %zu weights: max |difference| %.3g, worst "
      "|difference| / (1e-7 + 1e-6 |value|) %.3g; optimizer iterations %llu vs %llu\n",
      s.rank(), expected.size(), c.max_abs, c.worst, static_cast<unsigned long long>(got.second),
      static_cast<unsigned long long>(full.optimizer().iterations()));
  check(c.worst <= 1, "the resumed run's weights differ from the uninterrupted run's");
  check(got.second == full.optimizer().iterations(),
        "the resumed run's optimizer iterations differ");
  check(same_on_all_ranks(s, got.first, "the resumed weights"),
        "the ranks' resumed weights differ");
}
#endif

template <AnyDevice Dev>
void run(mpi::Session& s, const std::string& mode, const std::filesystem::path& dir) {
  if (mode == "equivalence") {
    equivalence<Dev>(s);
  } else if (mode == "throw" || mode == "die" || mode == "stall") {
    failure<Dev>(s, mode);
  } else if (mode == "uneven") {
    uneven<Dev>(s);
#ifdef LOCUS_MPI_TEST_IO
  } else if (mode == "checkpoint") {
    checkpoint<Dev>(s, dir);
  } else if (mode == "resume") {
    resume<Dev>(s, dir);
#endif
  } else {
    (void)dir;
    throw std::invalid_argument("unknown mode '" + mode + "'");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <mode> <cpu|gpu> [dir]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], device = argv[2];
  const std::filesystem::path dir = argc > 3 ? argv[3] : ".";
  mpi::Session session;
  const auto start = std::chrono::steady_clock::now();
  if (device == "gpu")
    run<G>(session, mode, dir);
  else
    run<C>(session, mode, dir);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("rank %d: %s on %s: %s in %.2f s\n", session.rank(), mode.c_str(),
              device == "gpu" ? device_name<G>().c_str() : device_name<C>().c_str(),
              failures ? "FAILED" : "passed", secs);
  return failures ? 1 : 0;
}
