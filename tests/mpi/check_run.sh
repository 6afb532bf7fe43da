#!/usr/bin/env bash
# One ctest of data-parallel training across processes: runs tests/mpi/mpi_training.cpp's
# program under mpirun (two ranks) and checks what a user would see: the exit status, the
# lines that must be in the output, and that the job ends within a bound (a job that
# hangs is the failure this component exists to prevent; the bound is generous, it is
# not a timing measurement).
#
#   check_run.sh CASE PROGRAM DEVICE WORKDIR LAUNCHER...
#     CASE      equivalence | throw | die | stall | uneven | restart
#     DEVICE    cpu | gpu (the program's Device<CPU> or Device<GPU>)
#     WORKDIR   a scratch directory (emptied first)
#     LAUNCHER  the mpirun command line up to the program ("mpirun -n 2 --oversubscribe")
set -uo pipefail
case_name="$1" program="$2" device="$3" work="$4"
shift 4
launcher=("$@")
rm -rf "${work}"
mkdir -p "${work}"
failed=0

fail() {
  echo "check_run.sh: FAILED (${case_name}, ${device}): $*"
  failed=1
}

# run BOUND MODE [ARG]: runs the program in MODE; leaves its exit status in status and its
# output (stdout and stderr) in output.
run() {
  local bound="$1"
  shift
  local log="${work}/$1.log"
  local start end
  start=$(date +%s.%N)
  timeout -k 10 "${bound}" "${launcher[@]}" "${program}" "$1" "${device}" "${@:2}" >"${log}" 2>&1
  status=$?
  end=$(date +%s.%N)
  output="$(cat "${log}")"
  echo "----- ${launcher[*]} ${program} $* ${device}"
  echo "${output}"
  echo "----- exit status ${status} after $(awk "BEGIN { printf \"%.1f\", ${end} - ${start} }") s"
  if [[ ${status} -eq 124 || ${status} -eq 137 ]]; then
    fail "the job did not end within ${bound} s"
  fi
}

expect_success() { [[ ${status} -eq 0 ]] || fail "exit status ${status}, expected 0"; }
expect_failure() {
  [[ ${status} -ne 0 && ${status} -ne 124 && ${status} -ne 137 ]] ||
    fail "exit status ${status}, expected the job to stop with an error"
}
expect_output() {
  grep -Eq -- "$1" <<<"${output}" || fail "the output has no line matching: $1"
}
forbid_output() {
  if grep -Eq -- "$1" <<<"${output}"; then fail "the output has a line matching: $1"; fi
}

case "${case_name}" in
  equivalence)
    run 240 equivalence
    expect_success
    expect_output "^2 ranks vs 1 process, [0-9]+ weights: max \|difference\|"
    expect_output "^rank 0: equivalence on .*: passed"
    expect_output "^rank 1: equivalence on .*: passed"
    ;;
  throw)
    # An exception of rank 1's pipeline: rank 1 names itself and the error, and stops all.
    run 240 throw
    expect_failure
    expect_output "^locus::mpi: rank 1 failed: .*record 100: injected failure at record 100; stopping all ranks$"
    forbid_output "training ended"
    ;;
  die)
    # Rank 1 vanishes (std::_Exit): the MPI runtime must end the job. The collectives' own
    # timeout is set far beyond the bound, so that it cannot be what ended it.
    LOCUS_MPI_TIMEOUT=600 run 240 die
    expect_failure
    forbid_output "waited [0-9]+ s for"
    forbid_output "training ended"
    ;;
  stall)
    # Rank 1 is alive but stops taking part (sleeps in its pipeline): only the collectives'
    # timeout can end this job.
    LOCUS_MPI_TIMEOUT=5 run 240 stall
    expect_failure
    expect_output "^locus::mpi: rank 0 failed: locus::mpi: rank 0 waited 5 s for the gradient all-reduce of step [0-9]+ of epoch 1; another rank failed or stopped \(LOCUS_MPI_TIMEOUT"
    forbid_output "training ended"
    ;;
  uneven)
    run 240 uneven
    expect_failure
    expect_output "^locus::mpi: rank [01] failed: locus::mpi::DataParallel::fit: 193 examples in global batches of 32 leave a last batch of 1 example for 2 ranks"
    ;;
  restart)
    # Rank 0 checkpoints every epoch; rank 1 dies in epoch 2. A new job resumes from the
    # checkpoint of epoch 1 and must end where an uninterrupted run ends.
    run 240 checkpoint "${work}"
    expect_failure
    [[ -f "${work}/ckpt-01.keras" ]] || fail "no checkpoint of epoch 1 (${work}/ckpt-01.keras)"
    [[ ! -e "${work}/ckpt-02.keras" ]] || fail "a checkpoint of epoch 2: rank 1 did not die in epoch 2"
    if [[ ${failed} -eq 0 ]]; then
      run 240 resume "${work}"
      expect_success
      expect_output "^rank 0: resumed vs uninterrupted, [0-9]+ weights: max \|difference\|"
      expect_output "^rank 1: resume on .*: passed"
    fi
    ;;
  *)
    fail "unknown case"
    ;;
esac

if [[ ${failed} -ne 0 ]]; then exit 1; fi
echo "check_run.sh: ${case_name} on ${device} passed"
