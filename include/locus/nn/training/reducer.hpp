// GradientReducer: where data-parallel training joins fit().
//
// Data parallelism keeps one training loop per replica (Trainer::run_fit, unchanged) and
// makes the replicas agree at three points of every epoch, the points this interface names:
// after each backward pass the gradients become those of the global batch; at the end of an
// epoch the non-trainable state (batch normalisation's moving statistics) and the logs
// become the replicas' common ones; and stopping (EarlyStopping, a callback's
// stop_training) is decided for all at once, so that no replica waits forever for one that
// has left. In-process replicas (parallel/mirrored.hpp) implement it with a ring over their
// devices, MPI ranks (parallel/mpi.hpp) with MPI_Allreduce.
#pragma once

#include <cstddef>
#include <vector>

#include "../../device.hpp"
#include "../parameter.hpp"
#include "callbacks.hpp"

namespace locus {

template <AnyDevice Dev, class T>
class Model;

template <AnyDevice Dev, class T>
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  /// After the backward pass of a batch of `rows` rows here, before the optimizer: every
  /// parameter's gradient (the mean over this replica's rows) becomes the mean over the
  /// global batch, the same on every replica.
  virtual void reduce_gradients(const std::vector<nn::Parameter<Dev, T>*>& params,
                                std::size_t rows) = 0;
  /// At the end of an epoch of `rows` rows here, before validation and the callbacks: the
  /// model's non-trainable state and the epoch's logs become the replicas' common ones.
  virtual void end_epoch(Model<Dev, T>& model, Logs& logs, std::size_t rows) = 0;
  /// Whether training stops after this epoch: true on every replica when any asks.
  virtual bool stop(bool requested) = 0;
};

}  // namespace locus
