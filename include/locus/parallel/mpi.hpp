// The mpi component: data-parallel training across the processes of an MPI job (one
// process per device or machine), on any device type.
//
//   locus::mpi::Session mpi;                          // MPI_Init_thread ... MPI_Finalize
//   locus::mpi::DataParallel<Device<GPU>> dp(mpi);
//   dp.fit(model, unbatched_host_dataset, /*global_batch=*/256, {.epochs = 5});
//
// Run with mpirun -n <ranks> ./program. Needs an MPI library (Open MPI, MPICH):
// find_package(locus CONFIG REQUIRED COMPONENTS mpi) and link locus::mpi. Neither
// <locus/locus.hpp> nor <locus/parallel.hpp> includes this header, so a program that does
// not use MPI needs none of it. Within one process, several devices train together with
// Mirrored (<locus/parallel.hpp>).
#pragma once

#include "mpi/broadcast_model.hpp"
#include "mpi/collectives.hpp"
#include "mpi/data_parallel.hpp"
#include "mpi/session.hpp"
