// mpi::Session: this process's membership of an MPI job, for the lifetime of one object.
//
//   int main() {
//     locus::mpi::Session mpi;  // MPI_Init_thread ... MPI_Finalize
//     if (mpi.rank() == 0) ...
//   }
//
// Every collective locus runs waits with a deadline (wait() below): MPI's own collectives
// block forever when one process has died without the runtime noticing, or is alive but
// no longer taking part (stuck in a data pipeline, a deadlock of its own), and a training
// job that hangs silently until a scheduler kills it is the failure users of
// data-parallel training complain about most. Here a rank that waited longer than the
// timeout throws communication_error naming what it waited for, and the job is stopped.
#pragma once

// locus uses MPI's C interface only. The MPI-2 C++ bindings (removed from the standard in
// MPI-3.0, and from Open MPI 5) are kept out of every translation unit that includes this
// header: their inline code does not compile warning-free (-Wcast-function-type).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <thread>

#include "../../error.hpp"

namespace locus::mpi {

/// Whether this process was started by an MPI launcher (mpirun/mpiexec of Open MPI, MPICH or
/// a PMI-speaking scheduler such as Slurm's srun): a program can then choose MPI without a
/// flag of its own.
inline bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

class Session {
 public:
  /// The wait of a collective before it is given up, unless LOCUS_MPI_TIMEOUT (whole
  /// seconds) says otherwise.
  static constexpr std::chrono::seconds default_timeout{60};

  /// Initialises MPI (MPI_THREAD_FUNNELED: only the thread that made the session calls MPI;
  /// the pipelines' and kernels' threads never do), unless someone else already has: then
  /// this session joins it and leaves finalisation to its owner. Works on a private
  /// duplicate of MPI_COMM_WORLD, whose errors are returned (and thrown as
  /// communication_error) instead of killing the job from inside MPI.
  Session() : timeout_(timeout_from_environment()) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) throw communication_error("locus::mpi::Session: MPI was already finalised");
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw communication_error("locus::mpi::Session: MPI_Init_thread failed");
      owner_ = true;
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        throw communication_error(
            "locus::mpi::Session: this MPI library offers no thread support "
            "(MPI_THREAD_FUNNELED); locus's data pipelines and kernels run threads of their own");
      }
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  /// Finalises MPI if this session initialised it. After a collective that timed out, that
  /// would wait forever for the missing rank, so the job is stopped instead.
  ~Session() {
    if (broken_) abort(1, "a collective operation did not complete (see the error above)");
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&comm_);
    if (owner_) MPI_Finalize();
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// The session's communicator (a duplicate of MPI_COMM_WORLD): messages of the user's
  /// own on MPI_COMM_WORLD never meet locus's.
  MPI_Comm communicator() const noexcept { return comm_; }

  /// How long a collective may wait for the other ranks before communication_error. Long
  /// enough for the slowest rank's longest step (a first kernel compilation, a checkpoint
  /// written by rank 0) plus the job's start-up skew.
  void set_timeout(std::chrono::seconds t) {
    if (t.count() <= 0) throw argument_error("locus::mpi::Session::set_timeout: must be > 0 s");
    timeout_ = t;
  }
  std::chrono::seconds timeout() const noexcept { return timeout_; }

  /// Stops every rank of the job: one line on stderr naming this rank and why, then
  /// MPI_Abort with `code` (mpirun's exit status). For a failure only this rank saw: the
  /// others would otherwise wait in their next collective.
  [[noreturn]] void abort(int code, const std::string& why) const noexcept {
    std::cout.flush();
    std::fprintf(stderr, "locus::mpi: rank %d failed: %s; stopping all ranks\n", rank_,
                 why.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should an MPI library return, exit anyway
  }

  /// Completes a non-blocking operation, or throws communication_error once it has waited
  /// longer than timeout(). `what` names the operation ("the gradient all-reduce of step 12
  /// of epoch 2"). A timed-out operation stays pending (MPI cannot cancel a collective), so
  /// the session is broken from then on: its destructor stops the job.
  void wait(MPI_Request& request, const std::string& what) {
    using clock = std::chrono::steady_clock;
    const clock::time_point start = clock::now();
    for (unsigned polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      if (clock::now() - start >= timeout_) {
        broken_ = true;
        throw communication_error("locus::mpi: rank " + std::to_string(rank_) + " waited " +
                                  std::to_string(timeout_.count()) + " s for " + what +
                                  "; another rank failed or stopped (LOCUS_MPI_TIMEOUT or "
                                  "Session::set_timeout sets the wait)");
      }
      // MPI progresses a non-blocking collective inside MPI_Test, so poll closely while the
      // others are about to arrive; then back off, so that a rank that waits leaves the
      // cores to ranks still computing on the same machine.
      if (polls >= 64)
        std::this_thread::sleep_for(std::chrono::microseconds(polls < 1024 ? 20 : 200));
    }
  }

  /// Throws communication_error for an MPI error code (the session's communicator returns
  /// them instead of aborting).
  void check(int code, const std::string& what) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw communication_error("locus::mpi: rank " + std::to_string(rank_) + ": " + what +
                              " failed: " + std::string(text, static_cast<std::size_t>(length)));
  }

 private:
  static std::chrono::seconds timeout_from_environment() {
    const char* v = std::getenv("LOCUS_MPI_TIMEOUT");
    if (!v || !*v) return default_timeout;
    char* end = nullptr;
    const long s = std::strtol(v, &end, 10);
    if (*end != '\0' || s <= 0) {
      throw argument_error("locus::mpi::Session: LOCUS_MPI_TIMEOUT='" + std::string(v) +
                           "' is not a positive number of seconds");
    }
    return std::chrono::seconds(s);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owner_ = false;
  bool broken_ = false;
  std::chrono::seconds timeout_;
};

}  // namespace locus::mpi
