// Image augmentation as Dataset::map functions, on any device: random horizontal flip,
// random crop after zero padding (torchvision's RandomCrop(padding=p), the usual CIFAR
// recipe) and per-channel normalisation. They take NHWC images, one ([H, W, C]) or a batch
// ([N, H, W, C]), and are const and thread-safe, so map may run them on several threads.
//
// Randomness comes from the element's key (a function of the epoch and the record) and
// the augmentation's own seed, never from a shared generator, so an epoch's augmented
// batches are the same whatever the number of threads, and the same on every device.
// Flip and crop move whole pixels: they are one gather of pixel rows (nn_backend's
// gather_rows, whose out-of-range index gives the zero padding) with an index computed on
// the host from the per-image choices; on an OpenCL device that index is one upload per
// element (4 bytes per pixel), so augmenting before to<Dev> costs less bus traffic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../backend/nn_backend.hpp"
#include "../device.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "../transfer.hpp"
#include "example.hpp"

namespace locus::data {

namespace detail {

struct image_geometry {
  std::size_t n, h, w, c;
};

inline image_geometry geometry_of(const Shape& s, const char* who) {
  if (s.rank() == 3) return {1, s[0], s[1], s[2]};
  if (s.rank() == 4) return {s[0], s[1], s[2], s[3]};
  throw shape_error(std::string("locus::data::") + who +
                    ": images are [H, W, C] or [N, H, W, C] (NHWC), not " + to_string(s));
}

/// An integer in [0, n) from a 64-bit key (the modulo's bias, below n / 2^64, is nil
/// for the handful of choices a crop has).
inline std::size_t pick(std::uint64_t key, std::size_t n) {
  return static_cast<std::size_t>(key % n);
}

/// Moves pixel rows: out pixel (i, j) of image b comes from (i + dy[b], j' + dx[b]), with
/// j' = W - 1 - j when flip[b], or is zero outside the image.
template <AnyDevice Dev, class T>
Tensor<T, Dev> move_pixels(const Tensor<T, Dev>& x, const image_geometry& g,
                           const std::vector<int>& dy, const std::vector<int>& dx,
                           const std::vector<bool>& flip) {
  const std::size_t pixels = g.n * g.h * g.w;
  Tensor<std::int32_t, Device<CPU>> index(uninitialized, {pixels});
  std::int32_t* p = index.data();
  const auto H = static_cast<int>(g.h), W = static_cast<int>(g.w);
  for (std::size_t b = 0; b < g.n; ++b) {
    for (int i = 0; i < H; ++i) {
      for (int j = 0; j < W; ++j) {
        const int si = i + dy[b], sj = (flip[b] ? W - 1 - j : j) + dx[b];
        const bool inside = si >= 0 && si < H && sj >= 0 && sj < W;
        *p++ = inside ? static_cast<std::int32_t>((b * g.h + static_cast<std::size_t>(si)) * g.w +
                                                  static_cast<std::size_t>(sj))
                      : -1;
      }
    }
  }
  const Tensor<std::int32_t, Dev> idx = locus::to<Dev>(index);
  Tensor<T, Dev> out(uninitialized, x.shape());
  nn_backend_for<Dev>::gather_rows(x.storage(), g.c, idx.storage(), pixels, out.storage());
  return out;
}

}  // namespace detail

/// Flips each image left-right with probability 1/2.
class RandomFlip {
 public:
  explicit RandomFlip(std::uint64_t seed = 0) : seed_(seed) {}
  template <AnyDevice Dev, class T, class L>
  Example<Dev, T, L> operator()(Example<Dev, T, L> e) const {
    const auto g = detail::geometry_of(e.x.shape(), "RandomFlip");
    std::vector<int> zero(g.n, 0);
    std::vector<bool> flip(g.n);
    for (std::size_t b = 0; b < g.n; ++b)
      flip[b] = (mix_keys(mix_keys(seed_, e.key), b) >> 63) != 0;
    e.x = detail::move_pixels(e.x, g, zero, zero, flip);
    return e;
  }

 private:
  std::uint64_t seed_;
};

/// Pads each image with `padding` zeros on every side and crops it back to its size at a
/// uniformly random offset (each shift in [-padding, padding] on both axes).
class RandomCrop {
 public:
  explicit RandomCrop(std::size_t padding, std::uint64_t seed = 0) : pad_(padding), seed_(seed) {}
  template <AnyDevice Dev, class T, class L>
  Example<Dev, T, L> operator()(Example<Dev, T, L> e) const {
    const auto g = detail::geometry_of(e.x.shape(), "RandomCrop");
    std::vector<int> dy(g.n), dx(g.n);
    std::vector<bool> flip(g.n, false);
    const std::size_t choices = 2 * pad_ + 1;
    const int p = static_cast<int>(pad_);
    for (std::size_t b = 0; b < g.n; ++b) {
      const std::uint64_t k = mix_keys(mix_keys(seed_ ^ 0x63726f70ull, e.key), b);
      dy[b] = static_cast<int>(detail::pick(k, choices)) - p;
      dx[b] = static_cast<int>(detail::pick(mix_keys(k, 1), choices)) - p;
    }
    e.x = detail::move_pixels(e.x, g, dy, dx, flip);
    return e;
  }

 private:
  std::size_t pad_;
  std::uint64_t seed_;
};

/// (x - mean) / std, one mean and standard deviation for all channels or one per channel.
class Normalize {
 public:
  Normalize(double mean, double stddev) : Normalize(std::vector<double>{mean}, {stddev}) {}
  Normalize(std::vector<double> mean, std::vector<double> stddev)
      : mean_(std::move(mean)), std_(std::move(stddev)) {
    if (mean_.empty() || mean_.size() != std_.size()) {
      throw argument_error(
          "locus::data::Normalize: give one mean and one standard deviation, or "
          "one of each per channel (" +
          std::to_string(mean_.size()) + " means, " + std::to_string(std_.size()) + " deviations)");
    }
    for (double s : std_) {
      if (!(s > 0))
        throw argument_error("locus::data::Normalize: standard deviations must be positive");
    }
  }
  template <AnyDevice Dev, class T, class L>
  Example<Dev, T, L> operator()(Example<Dev, T, L> e) const {
    if (mean_.size() == 1) {
      e.x = (e.x - static_cast<T>(mean_[0])) * static_cast<T>(1.0 / std_[0]);
      return e;
    }
    const Shape& s = e.x.shape();
    if (s.rank() == 0 || s[s.rank() - 1] != mean_.size()) {
      throw shape_error("locus::data::Normalize: " + std::to_string(mean_.size()) +
                        " channel statistics for features of shape " + to_string(s) +
                        " (channels last)");
    }
    const std::size_t c = mean_.size();
    std::vector<T> m(c), inv(c);
    for (std::size_t i = 0; i < c; ++i) {
      m[i] = static_cast<T>(mean_[i]);
      inv[i] = static_cast<T>(1.0 / std_[i]);
    }
    // Two [C] tensors per call: 8 bytes a channel, against an image batch.
    const auto mt = from_host<Dev>(Shape{c}, m.data());
    const auto it = from_host<Dev>(Shape{c}, inv.data());
    e.x = (e.x - mt) * it;
    return e;
  }

 private:
  std::vector<double> mean_, std_;
};

}  // namespace locus::data
