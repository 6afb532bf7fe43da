// Fashion-MNIST (Zalando, 70 000 grey 28x28 images of clothes in 10 classes), read from
// the IDX files that Debian's `dataset-fashion-mnist` package installs in
// /usr/share/datasets/fashion-mnist (or any directory holding the same four files,
// gzip-compressed or not; Keras' download cache has the same names).
//
// Directory, in order of precedence: the argument of load_fashion_mnist, the environment
// variable LOCUS_FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../device.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "dataset.hpp"
#include "idx.hpp"

namespace locus::data {

/// The environment variable that overrides the default Fashion-MNIST directory.
inline constexpr const char* fashion_mnist_dir_env = "LOCUS_FASHION_MNIST_DIR";
/// Where Debian's `dataset-fashion-mnist` package installs the files.
inline constexpr const char* fashion_mnist_system_dir = "/usr/share/datasets/fashion-mnist";

/// The 10 class names, indexed by label.
inline const std::array<std::string_view, 10>& fashion_mnist_class_names() {
  static constexpr std::array<std::string_view, 10> names = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

/// The data set: images [N, 28, 28, 1] as floats in [0, 1] (NHWC, like Keras), labels
/// [N] as int32 in 0..9, on the host (move them with locus::to<Dev>).
struct fashion_mnist {
  Tensor<float, Device<CPU>> train_images;
  Tensor<std::int32_t, Device<CPU>> train_labels;
  Tensor<float, Device<CPU>> test_images;
  Tensor<std::int32_t, Device<CPU>> test_labels;

  static const std::array<std::string_view, 10>& class_names() {
    return fashion_mnist_class_names();
  }
};

/// $LOCUS_FASHION_MNIST_DIR when set and not empty, else /usr/share/datasets/fashion-mnist.
inline std::filesystem::path default_fashion_mnist_dir() {
  const char* env = std::getenv(fashion_mnist_dir_env);
  if (env && *env) return std::filesystem::path(env);
  return std::filesystem::path(fashion_mnist_system_dir);
}

namespace detail {

inline std::string fashion_mnist_hint() {
  std::string hint =
      " Install the data set with `apt-get install dataset-fashion-mnist` (it goes to " +
      std::string(fashion_mnist_system_dir) + "), or set " + fashion_mnist_dir_env +
      " (or pass a directory) to a directory holding "
      "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].";
  if (const char* env = std::getenv(fashion_mnist_dir_env); env && *env) {
    hint += std::string(" ") + fashion_mnist_dir_env + " is set to '" + env + "'.";
  }
  return hint;
}

/// `<dir>/<stem>.gz`, else `<dir>/<stem>`; io_error with the installation hint if neither.
inline std::filesystem::path fashion_mnist_file(const std::filesystem::path& dir,
                                                const std::string& stem) {
  std::error_code ec;
  for (const auto& name : {stem + ".gz", stem}) {
    const auto p = dir / name;
    if (std::filesystem::is_regular_file(p, ec)) return p;
  }
  throw io_error("locus::data::load_fashion_mnist: '" + (dir / (stem + ".gz")).string() +
                 "' does not exist (nor its uncompressed form)." + fashion_mnist_hint());
}

struct fashion_mnist_split {
  Tensor<float, Device<CPU>> images;
  Tensor<std::int32_t, Device<CPU>> labels;
};

inline fashion_mnist_split load_fashion_mnist_split(const std::filesystem::path& dir,
                                                    const std::string& prefix, std::size_t limit) {
  const auto image_path = fashion_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const auto label_path = fashion_mnist_file(dir, prefix + "-labels-idx1-ubyte");
  const std::string where = "locus::data::load_fashion_mnist: ";

  // Labels first (small), so that a count mismatch is found before the images are inflated.
  std::size_t n_labels = 0;
  auto labels = read_idx_tensor<std::int32_t>(
      label_path,
      [&](const idx_header& h) {
        if (h.type != idx_type::u8 || h.dims.rank() != 1) {
          throw format_error(where + "'" + label_path.string() +
                             "' should hold ubyte labels of shape [N], it holds " +
                             idx_type_name(h.type) + " of shape " + to_string(h.dims));
        }
        n_labels = h.dims[0];
        return h.dims;
      },
      std::int32_t{1}, limit);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::int32_t l = labels.data()[i];
    if (l < 0 || l > 9) {
      throw format_error(where + "'" + label_path.string() + "': label " + std::to_string(i) +
                         " is " + std::to_string(l) + ", outside the 10 classes 0..9");
    }
  }
  auto images = read_idx_tensor<float>(
      image_path,
      [&](const idx_header& h) {
        if (h.type != idx_type::u8 || h.dims.rank() != 3 || h.dims[1] != 28 || h.dims[2] != 28) {
          throw format_error(where + "'" + image_path.string() +
                             "' should hold ubyte images of shape [N, 28, 28], it holds " +
                             idx_type_name(h.type) + " of shape " + to_string(h.dims));
        }
        if (h.dims[0] != n_labels) {
          throw format_error(where + "'" + image_path.string() + "' holds " +
                             std::to_string(h.dims[0]) + " images but '" + label_path.string() +
                             "' holds " + std::to_string(n_labels) + " labels");
        }
        return Shape{h.dims[0], 28, 28, 1};
      },
      1.0f / 255, limit);
  return {std::move(images), std::move(labels)};
}

}  // namespace detail

/// Loads Fashion-MNIST from `dir`: the first `train_limit` training and `test_limit` test
/// samples (all by default; 60 000 and 10 000). The whole files are read and checked
/// (image and label counts must agree) even when a limit keeps only a prefix; labels
/// outside 0..9 are rejected among the samples kept.
inline fashion_mnist load_fashion_mnist(
    const std::filesystem::path& dir = default_fashion_mnist_dir(),
    std::size_t train_limit = all_samples, std::size_t test_limit = all_samples) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw io_error("locus::data::load_fashion_mnist: the directory '" + dir.string() +
                   "' does not exist." + detail::fashion_mnist_hint());
  }
  auto train = detail::load_fashion_mnist_split(dir, "train", train_limit);
  auto test = detail::load_fashion_mnist_split(dir, "t10k", test_limit);
  return fashion_mnist{std::move(train.images), std::move(train.labels), std::move(test.images),
                       std::move(test.labels)};
}

/// One split of Fashion-MNIST ("train" or "t10k") as a host Dataset streamed from its IDX
/// files, a block of records at a time (images [28, 28, 1] in [0, 1], int32 labels): for
/// pipelines that should not hold the data set in memory.
inline Dataset<> fashion_mnist_dataset(
    const std::string& split = "train",
    const std::filesystem::path& dir = default_fashion_mnist_dir()) {
  if (split != "train" && split != "t10k") {
    throw argument_error(
        "locus::data::fashion_mnist_dataset: the split is \"train\" or \"t10k\", not \"" + split +
        "\"");
  }
  return Dataset<>::from_idx(detail::fashion_mnist_file(dir, split + "-images-idx3-ubyte"),
                             detail::fashion_mnist_file(dir, split + "-labels-idx1-ubyte"));
}

}  // namespace locus::data
