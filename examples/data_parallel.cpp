// Data-parallel training of the headline CNN on two devices.
//
//   data_parallel [--epochs N] [--quick]
//       one process, replicas on Device<GPU, 0> and Device<GPU, 1> (Mirrored): each global
//       batch of 64 is split 32 + 32, the gradients are summed round a ring of the devices.
//   mpirun -np 2 data_parallel [--epochs N] [--quick] [--checkpoint PATH]
//       two processes (MPI ranks), each with the model on Device<GPU, 0> of its own
//       process: the training set is sharded by rank, the gradients are all-reduced with
//       MPI, rank 0 logs and (with --checkpoint) saves a checkpoint each epoch; a run
//       started again with the same --checkpoint resumes from it.
//
// Without a real GPU, Device<GPU, N> is PoCL (LOCUS_OPENCL_ALLOW_CPU=1, POCL_DEVICES="pthread
// pthread" for two devices). --quick (CI) trains on 6,000 images and tests on 1,000. The
// program fails if the replicas' weights differ or the test accuracy is below 0.70.
#include <locus/io.hpp>
#include <locus/locus.hpp>
#include <locus/parallel/mpi.hpp>

#include "headline_cnn_model.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace locus;
using G0 = Device<GPU, 0>;
using G1 = Device<GPU, 1>;

struct Options {
  std::size_t epochs = 2;
  bool quick = false;
  std::string checkpoint;
};

constexpr std::size_t kGlobalBatch = 64;
constexpr double kFloor = 0.70;

std::size_t train_images(const Options& o) {
  return o.quick ? 6000 : 60000;
}
std::size_t test_images(const Options& o) {
  return o.quick ? 1000 : 10000;
}

// Whether the weights of two models are bitwise equal.
template <AnyDevice A, AnyDevice B>
bool same_weights(Model<A>& a, Model<B>& b) {
  auto wa = a.weights();
  auto wb = b.weights();
  for (std::size_t i = 0; i < wa.size(); ++i) {
    const auto ha = to<Device<CPU>>(*wa[i].second);
    const auto hb = to<Device<CPU>>(*wb[i].second);
    if (std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(float)) != 0) return false;
  }
  return true;
}

int in_one_process(const Options& o) {
  Mirrored<G0, G1> model(headline_example::headline_cnn<G0>(/*seed=*/42));
  // The global batches come from the host; each replica uploads its half.
  const auto train = data::fashion_mnist_dataset("train")
                         .take(train_images(o))
                         .shuffle(10000, /*seed=*/1)
                         .batch(kGlobalBatch);
  const auto test = data::fashion_mnist_dataset("t10k").take(test_images(o)).batch(256);

  reset_stats<G0>();
  const auto t0 = std::chrono::steady_clock::now();
  model.fit(train, {.epochs = o.epochs, .verbose = 2});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t steps = o.epochs * ((train_images(o) + kGlobalBatch - 1) / kGlobalBatch);

  const Logs result = model.replica<0>().evaluate(to<G0>(test));
  std::cout << "2 replicas (Device<GPU, 0>, Device<GPU, 1>): test accuracy "
            << result.at("accuracy") << ", "
            << static_cast<double>(train_images(o) * o.epochs) / secs << " training images/s, "
            << stats<G0>().device_to_device_bytes / steps
            << " bytes sent per step by each replica (ring bound "
            << model.allreduce_bytes_per_step() << ")\n";
  if (!same_weights(model.replica<0>(), model.replica<1>())) {
    std::cerr << "error: the replicas' weights differ\n";
    return 1;
  }
  if (result.at("accuracy") < kFloor) {
    std::cerr << "error: test accuracy " << result.at("accuracy") << " is below " << kFloor << "\n";
    return 1;
  }
  return 0;
}

// The highest N of the checkpoints dir/epoch-NN.keras (0 when there is none).
std::size_t last_checkpoint(const std::filesystem::path& dir) {
  std::size_t last = 0;
  if (!std::filesystem::is_directory(dir)) return 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 14 && name.starts_with("epoch-") && name.ends_with(".keras"))
      last = std::max<std::size_t>(last, std::stoul(name.substr(6, 2)));
  }
  return last;
}

int on_mpi_ranks(const Options& o) {
  mpi::Session session;
  const bool root = session.rank() == 0;
  // Each rank trains on Device<GPU, 0> of its own process (LOCUS_GPU_DEVICES picks which
  // physical device that is, e.g. from the rank on a machine with several GPUs).
  auto model = headline_example::headline_cnn<G0>(/*seed=*/42);

  // A restart resumes from rank 0's last checkpoint: rank 0 loads it, every rank learns the
  // epoch, and fit starts by broadcasting rank 0's model (weights and optimizer state).
  std::size_t initial_epoch = 0;
  std::optional<Model<G0>> resumed;
  std::vector<std::shared_ptr<Callback>> rank0_callbacks;
  if (!o.checkpoint.empty()) {
    initial_epoch = mpi::max_over_ranks(session, root ? last_checkpoint(o.checkpoint) : 0,
                                        "the last checkpoint's epoch");
    std::filesystem::create_directories(o.checkpoint);
    if (root && initial_epoch > 0) {
      const auto file = std::filesystem::path(o.checkpoint) /
                        ("epoch-" + std::string(initial_epoch < 10 ? "0" : "") +
                         std::to_string(initial_epoch) + ".keras");
      std::cout << "rank 0: resuming from " << file.string() << "\n";
      resumed.emplace(load_model<G0>(file));
    }
  }
  Model<G0>& m = resumed ? *resumed : model;
  if (!o.checkpoint.empty()) {
    rank0_callbacks.push_back(std::make_shared<ModelCheckpoint<G0>>(
        m, (std::filesystem::path(o.checkpoint) / "epoch-{epoch:02d}.keras").string()));
  }
  if (initial_epoch >= o.epochs) {
    if (root) std::cout << "all " << o.epochs << " epochs are in the checkpoint already\n";
    return 0;
  }

  // The same shuffled host pipeline on every rank; fit shards it by rank and batches each
  // shard by kGlobalBatch / ranks.
  const auto train =
      data::fashion_mnist_dataset("train").take(train_images(o)).shuffle(10000, /*seed=*/1);
  mpi::DataParallel<G0> dp(session);
  const auto t0 = std::chrono::steady_clock::now();
  dp.fit(m, train, kGlobalBatch, {.epochs = o.epochs, .verbose = 2, .initial_epoch = initial_epoch},
         rank0_callbacks);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!root) return 0;

  const Logs result =
      m.evaluate(to<G0>(data::fashion_mnist_dataset("t10k").take(test_images(o)).batch(256)));
  std::cout << session.size() << " ranks: test accuracy " << result.at("accuracy") << ", "
            << static_cast<double>(train_images(o) * (o.epochs - initial_epoch)) / secs
            << " training images/s, " << dp.last_step_bytes()
            << " bytes all-reduced per step (one buffer)\n";
  if (result.at("accuracy") < kFloor) {
    std::cerr << "error: test accuracy " << result.at("accuracy") << " is below " << kFloor << "\n";
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--epochs" && i + 1 < argc) {
      opt.epochs = std::stoul(argv[++i]);
    } else if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--checkpoint" && i + 1 < argc) {
      opt.checkpoint = argv[++i];
    } else {
      std::cerr << "usage: " << argv[0] << " [--epochs N] [--quick] [--checkpoint PATH]\n";
      return 2;
    }
  }
  try {
    return mpi::launched_by_mpirun() ? on_mpi_ranks(opt) : in_one_process(opt);
  } catch (const locus::error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
