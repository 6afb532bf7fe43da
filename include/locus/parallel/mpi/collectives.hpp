// The collectives of data-parallel training, each one non-blocking MPI call completed by
// Session::wait (so that it gives up after the session's timeout instead of hanging):
//   allreduce_sum(session, values, what)  in place: every rank gets the element-wise sum
//   broadcast(session, values, what)      in place: every rank gets rank 0's values
//   any_rank(session, flag, what)         whether the flag is set on any rank
// `what` names the operation in the timeout's message ("the gradient all-reduce of step 3
// of epoch 1"). Every rank must call the same collectives in the same order, with buffers
// of the same length.
#pragma once

#include <climits>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "session.hpp"

namespace locus::mpi {

namespace detail {

template <class T>
MPI_Datatype datatype() {
  if constexpr (std::is_same_v<T, float>) {
    return MPI_FLOAT;
  } else if constexpr (std::is_same_v<T, double>) {
    return MPI_DOUBLE;
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    return MPI_UINT64_T;
  } else if constexpr (std::is_same_v<T, std::int32_t>) {
    return MPI_INT32_T;
  } else {
    static_assert(std::is_same_v<T, float>,
                  "locus::mpi: collectives move float, double, int32 or uint64 values");
  }
}

// MPI counts are int: a larger buffer would have to be split into several collectives.
inline int count_of(std::size_t n, const std::string& what) {
  if (n > static_cast<std::size_t>(INT_MAX)) {
    throw argument_error("locus::mpi: " + what + " has " + std::to_string(n) +
                         " values, more than one MPI call moves (" + std::to_string(INT_MAX) + ")");
  }
  return static_cast<int>(n);
}

}  // namespace detail

/// Sums `values` element-wise over all ranks, in place. Replicas stay bitwise identical
/// only if every rank receives the same bits of each floating-point sum, which MPI
/// recommends rather than promises; tests/mpi checks it for the MPI in use.
template <class T>
void allreduce_sum(Session& s, std::span<T> values, const std::string& what) {
  MPI_Request request = MPI_REQUEST_NULL;
  s.check(MPI_Iallreduce(MPI_IN_PLACE, values.data(), detail::count_of(values.size(), what),
                         detail::datatype<T>(), MPI_SUM, s.communicator(), &request),
          what);
  s.wait(request, what);
}

/// Every rank's `values` become rank 0's, in place.
template <class T>
void broadcast(Session& s, std::span<T> values, const std::string& what) {
  MPI_Request request = MPI_REQUEST_NULL;
  s.check(MPI_Ibcast(values.data(), detail::count_of(values.size(), what), detail::datatype<T>(), 0,
                     s.communicator(), &request),
          what);
  s.wait(request, what);
}

/// Whether `flag` is true on at least one rank (the same answer on every rank).
inline bool any_rank(Session& s, bool flag, const std::string& what) {
  std::int32_t v = flag ? 1 : 0;
  MPI_Request request = MPI_REQUEST_NULL;
  s.check(MPI_Iallreduce(MPI_IN_PLACE, &v, 1, MPI_INT32_T, MPI_LOR, s.communicator(), &request),
          what);
  s.wait(request, what);
  return v != 0;
}

/// The largest of `value` over all ranks (the same answer on every rank).
inline std::uint64_t max_over_ranks(Session& s, std::uint64_t value, const std::string& what) {
  MPI_Request request = MPI_REQUEST_NULL;
  s.check(
      MPI_Iallreduce(MPI_IN_PLACE, &value, 1, MPI_UINT64_T, MPI_MAX, s.communicator(), &request),
      what);
  s.wait(request, what);
  return value;
}

}  // namespace locus::mpi
