// host_staging<Dev, T>: tensors of a device gathered into one host buffer for MPI, and
// scattered back.
//
// MPI moves host memory (locus does not rely on a CUDA- or OpenCL-aware MPI), and one
// collective of n values costs about as much as one of a few values plus n times the
// bandwidth, so many small tensors (a model's weights, its gradients) cross together:
// on a device they are copied into one device tensor (device-side copies), which crosses
// with one counted download, and come back with one counted upload (locus::to and
// locus::from_host, rule 4 of the contract); on the host they are copied into a buffer
// kept from one call to the next.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "../../device.hpp"
#include "../../error.hpp"
#include "../../tensor.hpp"
#include "../../transfer.hpp"

namespace locus::mpi::detail {

template <AnyDevice Dev, class T>
class host_staging {
 public:
  using tensor = Tensor<T, Dev>;

  /// The values of `tensors`, in order, followed by `extra` slots for the caller (values
  /// undefined), in host memory valid until the next gather.
  std::span<T> gather(const std::vector<const tensor*>& tensors, std::size_t extra) {
    std::size_t n = extra;
    for (const tensor* t : tensors) n += t->size();
    if constexpr (HostDevice<Dev>) {
      host_.resize(n);
      std::size_t at = 0;
      for (const tensor* t : tensors) {
        std::copy(t->data(), t->data() + t->size(), host_.data() + at);
        at += t->size();
      }
      return {host_.data(), n};
    } else {
      if (device_.size() != n) device_ = tensor(uninitialized, {n});
      std::size_t at = 0;
      for (const tensor* t : tensors) {
        backend_t<Dev>::copy(t->storage(), 0, device_.storage(), at, t->size());
        at += t->size();
      }
      downloaded_ = locus::to<Device<CPU>>(device_);
      return {downloaded_.data(), n};
    }
  }

  /// Writes values[0, total size of `tensors`) back into `tensors`, in order. A tensor
  /// without values yet (a model made without initialising its weights) is given `shapes`'
  /// shape first; otherwise its shape must be that one.
  void scatter(std::span<const T> values, const std::vector<tensor*>& tensors,
               const std::vector<Shape>& shapes) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i]->size() == 0 && shapes[i].size() != 0) {
        *tensors[i] = tensor(uninitialized, shapes[i]);
      } else if (!(tensors[i]->shape() == shapes[i])) {
        throw shape_error("locus::mpi: a tensor of shape " + to_string(tensors[i]->shape()) +
                          " receives values of shape " + to_string(shapes[i]));
      }
      n += shapes[i].size();
    }
    if (values.size() < n) {
      throw argument_error("locus::mpi: " + std::to_string(values.size()) + " values for " +
                           std::to_string(n) + " elements");
    }
    if constexpr (HostDevice<Dev>) {
      std::size_t at = 0;
      for (tensor* t : tensors) {
        std::copy(values.data() + at, values.data() + at + t->size(), t->data());
        at += t->size();
      }
    } else {
      const tensor uploaded = locus::from_host<Dev>(Shape{n}, values.data());
      std::size_t at = 0;
      for (tensor* t : tensors) {
        backend_t<Dev>::copy(uploaded.storage(), at, t->storage(), 0, t->size());
        at += t->size();
      }
    }
  }

 private:
  std::vector<T> host_;                // the host's buffer
  tensor device_;                      // a device's gathering tensor, reused while n holds
  Tensor<T, Device<CPU>> downloaded_;  // its last download
};

}  // namespace locus::mpi::detail
