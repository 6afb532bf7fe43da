// Data-parallel training on several devices of one process: Mirrored<Devs...> and the ring
// all-reduce it runs on. (Across processes and machines: <locus/parallel/mpi.hpp>, the mpi
// package component.)
#pragma once

#include "parallel/mirrored.hpp"
#include "parallel/ring_allreduce.hpp"
