#!/usr/bin/env bash
# Installs everything locus needs to build, test, benchmark and run its examples on
# Debian 12 (bookworm): compilers and build tools, xtensor/xsimd, the OpenCL loader and
# headers, PoCL (an OpenCL implementation on the CPU, used as the device in tests and CI),
# HDF5, libzip and nlohmann-json (the io component), Open MPI (the mpi component: training
# across processes), GoogleTest, Google Benchmark, the peers the benchmarks compare against
# (OpenBLAS, CLBlast) and the Fashion-MNIST data set.
#
# Non-interactive and idempotent: packages already installed are left alone, and
# `apt-get update` is skipped when nothing is missing. Run as root, or as a user with sudo.
#   LOCUS_DEPS_FORCE_UPDATE=1  always run apt-get update
set -euo pipefail

PACKAGES=(
  # build
  build-essential g++ cmake ninja-build pkg-config git ca-certificates
  # CPU backend
  libxtensor-dev xtensor-dev xtl-dev libxsimd-dev zlib1g-dev
  # OpenCL backend: loader, C and C++ headers, PoCL, clinfo (CI checks a device exists)
  ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers pocl-opencl-icd clinfo
  # the io component (saving and loading models): HDF5, libzip, nlohmann-json
  libhdf5-dev libzip-dev nlohmann-json3-dev
  # the mpi component (data-parallel training across processes): Open MPI and mpirun
  libopenmpi-dev openmpi-bin
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libclblast-dev
  # examples
  dataset-fashion-mnist
)

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-deps.sh: run as root, or install sudo" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${PACKAGES[@]}"; do
  # "install ok installed" only for packages that are really installed (not just known).
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 && "${LOCUS_DEPS_FORCE_UPDATE:-0}" != 1 ]]; then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]:-(none missing; refreshing)}"
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"
