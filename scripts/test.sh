#!/usr/bin/env bash
# The whole locus test suite, from a fresh Debian 12 machine to a verdict. CI runs exactly
# this (.ci/run). Phases:
#   deps      scripts/install-deps.sh (apt-get; as root, or through sudo)
#   opencl    clinfo must list at least one OpenCL device: a CI without one FAILS
#   release   Release build with -Werror in build/ci (tests, examples, benchmarks, doctor)
#   ctest     every test of build/ci: unit, compile-fail/pass (through one precompiled
#             <locus/locus.hpp>, LOCUS_COMPILE_CHECK_PCH), the -march matrix (one
#             translation unit of every CPU kernel compiled at -O3 -Werror for x86-64-v2/
#             v3/v4, cooperlake and icelake-server with -mtune=generic, sapphirerapids with
#             its own and generic tuning, and native; a whole training step for x86-64-v4
#             and native; why each: tests/CMakeLists.txt), the install-deps root/sudo
#             check, doctor, examples (--quick)
#   clang     the compile-fail/pass tests and the -march matrix (x86-64-v2/v3/v4,
#             sapphirerapids, native: no -mtune twins) again with clang++
#   asan      ASan+UBSan build (-O1, LOCUS_PORTABLE: the generic SIMD path whatever the
#             CPU) in build/ci-asan; runs the kernel unit tests, one model-level unit
#             (LOCUS_SANITIZE_ALL_TESTS=OFF, see tests/CMakeLists.txt; the concurrency
#             tests are left to tsan) and the io tests
#   tsan      ThreadSanitizer build of the concurrency tests (tests/test_nn_concurrency.cpp)
#             and of the replicas on threads (tests/test_parallel_mirrored.cpp)
#             in build/ci-tsan; runs them on the host and on PoCL (the only sanitizer
#             that runs them)
#   install   install to a temporary prefix, build and run examples/consumer (locus alone),
#             examples/consumer_io (the io component and the installed locus-model) and
#             examples/consumer_mpi (the mpi component, two ranks)
# Prints the time of each phase and a final "N passed, M failed" line; exits non-zero on
# any failure.
#
# Environment:
#   LOCUS_CI_JOBS=2        parallel compile and test jobs
#   LOCUS_CI_SKIP="clang asan"   phases to skip (for local use; CI skips none)
#   CXX                    compiler for the release and asan builds (default: c++)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
JOBS="${LOCUS_CI_JOBS:-2}"
SKIP=" ${LOCUS_CI_SKIP:-} "

SCRIPT_START=$(date +%s)
PHASES=()
TOTAL_PASSED=0
TOTAL_FAILED=0
FAILURES=()

log() { printf '\n==== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# phase_start NAME ... phase_end STATUS: times one phase. A failed phase is recorded; the
# script goes on with the phases that do not depend on it and exits non-zero at the end.
# CPU seconds (user + sys) used so far by the commands this script ran: with the wall
# time it tells a slow phase on a busy machine from a phase that is really expensive.
cpu_seconds() {
  # Fields 16 and 17 of /proc/<this shell>/stat: CPU time of waited-for children, in ticks.
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($16 + $17) / hz }' "/proc/$$/stat"
}
phase_start() {
  PHASE_NAME="$1"
  PHASE_T0=$(date +%s)
  PHASE_CPU0=$(cpu_seconds)
  log "phase ${PHASE_NAME}"
}
phase_end() {
  local status="$1"
  local dt=$(( $(date +%s) - PHASE_T0 ))
  local cpu=$(( $(cpu_seconds) - PHASE_CPU0 ))
  PHASES+=("$(printf '%-8s %5ss wall %6ss cpu  %s' "${PHASE_NAME}" "${dt}" "${cpu}" "${status}")")
  log "phase ${PHASE_NAME}: ${status} after ${dt}s (${cpu}s cpu)"
  if [[ "${status}" != ok && "${status}" != skipped ]]; then
    FAILURES+=("${PHASE_NAME}")
  fi
}

summary() {
  local rc=$?
  local total=$(( $(date +%s) - SCRIPT_START ))
  echo
  echo "==================== locus test summary ===================="
  for p in "${PHASES[@]}"; do echo "  ${p}"; done
  printf '  %-8s %5ss wall %6ss cpu\n' total "${total}" "$(cpu_seconds)"
  if [[ ${#FAILURES[@]} -gt 0 ]]; then
    echo "  failed phases: ${FAILURES[*]}"
  fi
  echo "${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed"
  if [[ ${rc} -eq 0 && ${#FAILURES[@]} -gt 0 ]]; then
    exit 1
  fi
}
trap summary EXIT

skipped() { [[ "${SKIP}" == *" $1 "* ]]; }

# run_ctest LOG_NAME ctest-arguments...: runs ctest, adds its counts to the totals.
run_ctest() {
  local name="$1"
  shift
  local logfile="${ROOT}/build/ctest-${name}.log"
  local rc=0
  ctest --output-on-failure --no-tests=error -j "${JOBS}" "$@" 2>&1 | tee "${logfile}" || rc=$?
  local line
  line="$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "${logfile}" | tail -n 1 || true)"
  if [[ -n "${line}" ]]; then
    local failed total
    failed="$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"${line}")"
    total="$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"${line}")"
    TOTAL_PASSED=$(( TOTAL_PASSED + total - failed ))
    TOTAL_FAILED=$(( TOTAL_FAILED + failed ))
  elif [[ ${rc} -ne 0 ]]; then
    TOTAL_FAILED=$(( TOTAL_FAILED + 1 ))
  fi
  return "${rc}"
}

# ---- deps -----------------------------------------------------------------------------------
phase_start deps
if skipped deps; then
  phase_end skipped
else
  ./scripts/install-deps.sh
  phase_end ok
fi

# Ninja when installed, else Makefiles; either way keep going after a failed compile so one
# broken file does not hide the state of everything else.
GENERATOR=()
KEEP_GOING=(-- -k)
if command -v ninja >/dev/null 2>&1; then
  GENERATOR=(-G Ninja)
  KEEP_GOING=(-- -k 0)
fi
mkdir -p build

# ---- opencl: no device means failure, never a skip --------------------------------------
phase_start opencl
export POCL_DEVICES="pthread pthread"
clinfo -l 2>&1 | tee build/clinfo.txt || true
ndev="$(grep -c 'Device #' build/clinfo.txt || true)"
if [[ "${ndev}" -lt 1 ]]; then
  echo "ERROR: clinfo lists no OpenCL device. locus needs one to test Device<GPU>;" >&2
  echo "       install pocl-opencl-icd (scripts/install-deps.sh) or a GPU driver." >&2
  ls -l /etc/OpenCL/vendors/ >&2 || true
  phase_end "FAILED (no OpenCL device)"
  exit 1
fi
echo "OpenCL devices: ${ndev}"
unset POCL_DEVICES
phase_end ok

# ---- release build ------------------------------------------------------------------------
phase_start release
if ! cmake -S . -B build/ci "${GENERATOR[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DLOCUS_WERROR=ON \
  -DLOCUS_BUILD_TESTS=ON -DLOCUS_BUILD_EXAMPLES=ON -DLOCUS_BUILD_BENCHMARKS=ON \
  -DLOCUS_BUILD_TOOLS=ON; then
  phase_end "FAILED (configure)"
  exit 1
fi
if cmake --build build/ci -j "${JOBS}" "${KEEP_GOING[@]}"; then
  phase_end ok
else
  # Go on: the tests of everything that did build still run and are reported (a target
  # that did not build shows up as a failing test).
  phase_end FAILED
fi

# ---- all tests of the release build -----------------------------------------------------------
phase_start ctest
if run_ctest release --test-dir build/ci; then phase_end ok; else phase_end FAILED; fi

# ---- compile-fail/pass tests with clang++ -----------------------------------------------------
phase_start clang
CLANGXX="$(command -v clang++ || command -v clang++-15 || command -v clang++-14 || true)"
if skipped clang; then
  phase_end skipped
elif [[ -z "${CLANGXX}" ]]; then
  echo "ERROR: no clang++ found (pocl-opencl-icd depends on clang-15, so it should be there)" >&2
  phase_end "FAILED (no clang++)"
else
  if CXX="${CLANGXX}" cmake -S . -B build/ci-clang "${GENERATOR[@]}" \
       -DCMAKE_BUILD_TYPE=Release -DLOCUS_WERROR=ON \
       -DLOCUS_BUILD_TESTS=ON -DLOCUS_BUILD_EXAMPLES=OFF -DLOCUS_BUILD_BENCHMARKS=OFF \
       -DLOCUS_BUILD_TOOLS=OFF &&
     run_ctest clang --test-dir build/ci-clang -L compile; then
    phase_end ok
  else
    phase_end FAILED
  fi
fi

# ---- sanitizers -------------------------------------------------------------------------------
phase_start asan
if skipped asan; then
  phase_end skipped
else
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:check_initialization_order=1"
  export LSAN_OPTIONS="suppressions=${ROOT}/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  if cmake -S . -B build/ci-asan "${GENERATOR[@]}" \
       -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
       -DLOCUS_SANITIZE=ON -DLOCUS_SANITIZE_ALL_TESTS=OFF -DLOCUS_WERROR=ON -DLOCUS_PORTABLE=ON \
       -DLOCUS_BUILD_TESTS=ON -DLOCUS_BUILD_EXAMPLES=OFF -DLOCUS_BUILD_BENCHMARKS=OFF \
       -DLOCUS_BUILD_TOOLS=OFF &&
     cmake --build build/ci-asan -j "${JOBS}" --target locus_tests locus_io_tests "${KEEP_GOING[@]}" &&
     run_ctest asan --test-dir build/ci-asan -L "^(unit|io)$"; then
    phase_end ok
  else
    phase_end FAILED
  fi
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
fi

# ---- ThreadSanitizer: concurrent inference and training -----------------------------------------
phase_start tsan
if skipped tsan; then
  phase_end skipped
else
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
  if cmake -S . -B build/ci-tsan "${GENERATOR[@]}" \
       -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
       -DLOCUS_TSAN=ON -DLOCUS_WERROR=ON -DLOCUS_PORTABLE=ON \
       -DLOCUS_BUILD_TESTS=ON -DLOCUS_BUILD_EXAMPLES=OFF -DLOCUS_BUILD_BENCHMARKS=OFF \
       -DLOCUS_BUILD_TOOLS=OFF &&
     cmake --build build/ci-tsan -j "${JOBS}" --target locus_tsan_tests "${KEEP_GOING[@]}" &&
     LOCUS_OPENCL_ALLOW_CPU=1 POCL_DEVICES="pthread pthread" build/ci-tsan/tests/locus_tsan_tests \
       2>&1 | tee build/tsan.log; then
    n="$(grep -Eo '[0-9]+ tests? from [0-9]+ test suites? ran' build/tsan.log | grep -Eo '^[0-9]+' || echo 0)"
    TOTAL_PASSED=$(( TOTAL_PASSED + n ))
    phase_end ok
  else
    TOTAL_FAILED=$(( TOTAL_FAILED + 1 ))
    phase_end FAILED
  fi
  unset TSAN_OPTIONS
fi

# ---- install + find_package consumer ------------------------------------------------------------
phase_start install
PREFIX="$(mktemp -d "${TMPDIR:-/tmp}/locus-install.XXXXXX")"
if cmake --install build/ci --prefix "${PREFIX}" &&
   cmake -S examples/consumer -B build/consumer "${GENERATOR[@]}" \
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX}" \
     -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON &&
   cmake --build build/consumer -j "${JOBS}" &&
   run_ctest consumer --test-dir build/consumer &&
   cmake -S examples/consumer_io -B build/consumer_io "${GENERATOR[@]}" \
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX}" \
     -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON &&
   cmake --build build/consumer_io -j "${JOBS}" &&
   run_ctest consumer_io --test-dir build/consumer_io &&
   cmake -S examples/consumer_mpi -B build/consumer_mpi "${GENERATOR[@]}" \
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX}" \
     -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON &&
   cmake --build build/consumer_mpi -j "${JOBS}" &&
   run_ctest consumer_mpi --test-dir build/consumer_mpi; then
  phase_end ok
else
  phase_end FAILED
fi
rm -rf "${PREFIX}"

[[ ${#FAILURES[@]} -eq 0 ]]
