#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: installs the dependencies, builds the headline
# example and runs it. Arguments are passed to the example (e.g. --quick).
#
#   ./scripts/quickstart.sh [example arguments...]   (as root, or as a user with sudo)
#
#   LOCUS_EXAMPLE=<name>   run examples/<name>.cpp instead of the headline example
#   LOCUS_PORTABLE=ON      build without -march=native
set -euo pipefail

# The headline example; examples/<EXAMPLE>.cpp.
EXAMPLE="${LOCUS_EXAMPLE:-fashion_mnist_cnn}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -f "examples/${EXAMPLE}.cpp" ]]; then
  first="$(find examples -maxdepth 1 -name '*.cpp' -printf '%f\n' 2>/dev/null | sort | head -n 1)"
  if [[ -z "${first}" ]]; then
    echo "quickstart.sh: no examples/${EXAMPLE}.cpp and no other example to run" >&2
    exit 1
  fi
  echo "quickstart.sh: examples/${EXAMPLE}.cpp does not exist yet; running ${first} instead"
  EXAMPLE="${first%.cpp}"
fi

./scripts/install-deps.sh

GENERATOR=()
if command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi

cmake -S . -B build/quickstart "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DLOCUS_BUILD_TESTS=OFF -DLOCUS_BUILD_BENCHMARKS=OFF -DLOCUS_BUILD_EXAMPLES=ON \
  -DLOCUS_BUILD_TOOLS=OFF -DLOCUS_PORTABLE="${LOCUS_PORTABLE:-OFF}"
cmake --build build/quickstart --target "example_${EXAMPLE}" -j "$(nproc)"

# Device<GPU> needs an OpenCL device. Without a real GPU (no OpenCL device of type GPU or
# accelerator), say so and opt in explicitly to PoCL's CPU device, which locus otherwise
# refuses to treat as a GPU (DESIGN rule 6: no silent fallback).
if [[ -z "${LOCUS_OPENCL_ALLOW_CPU:-}" ]]; then
  if ! clinfo --raw 2>/dev/null | grep -E 'CL_DEVICE_TYPE' | grep -qE 'GPU|ACCELERATOR'; then
    echo "quickstart.sh: no OpenCL GPU found; running Device<GPU> on PoCL's CPU device"
    echo "               (explicit opt-in: LOCUS_OPENCL_ALLOW_CPU=1)"
    export LOCUS_OPENCL_ALLOW_CPU=1
  fi
fi

echo "quickstart.sh: running build/quickstart/examples/${EXAMPLE} $*"
exec "build/quickstart/examples/${EXAMPLE}" "$@"
