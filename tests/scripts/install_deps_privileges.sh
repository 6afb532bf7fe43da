#!/usr/bin/env bash
# The quick-start commands must work when pasted as root (a fresh Debian 12 used as root
# has no sudo) and as a user with sudo. Runs scripts/install-deps.sh against stand-ins for
# id, sudo, dpkg-query and apt-get (first on PATH; nothing is installed) and checks that
#   root             runs apt-get itself and never calls sudo,
#   user with sudo   runs apt-get through sudo,
#   user, no sudo    stops with a message that says what to do, installing nothing;
# and that the README's two quick-start commands are pasteable as root (no `sudo`).
set -euo pipefail
script="$1/scripts/install-deps.sh"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
failures=0

# make_env DIR UID WITH_SUDO: a bin directory of stand-ins that log their calls to DIR/log.
make_env() {
  local dir="$1" uid="$2" with_sudo="$3"
  mkdir -p "${dir}/bin"
  : >"${dir}/log"
  printf '#!/bin/sh\n[ "$1" = -u ] && echo %s && exit 0\nexec /usr/bin/id "$@"\n' "${uid}" >"${dir}/bin/id"
  # Every package reads as missing, so the script must install.
  printf '#!/bin/sh\necho "unknown ok not-installed"\n' >"${dir}/bin/dpkg-query"
  printf '#!/bin/sh\necho "apt-get $*" >>"%s/log"\n' "${dir}" >"${dir}/bin/apt-get"
  if [[ "${with_sudo}" == yes ]]; then
    printf '#!/bin/sh\necho "sudo $1" >>"%s/log"\nexec "$@"\n' "${dir}" >"${dir}/bin/sudo"
  fi
  chmod +x "${dir}"/bin/*
}

# The real sudo, if this machine has one, must not be found: PATH is the stand-ins plus a
# directory of the few tools the script needs.
make_path() {
  local dir="$1"
  mkdir -p "${dir}/tools"
  for t in bash sh env cat echo printf; do
    local p
    p="$(command -v "${t}")" && ln -sf "${p}" "${dir}/tools/${t}"
  done
  echo "${dir}/bin:${dir}/tools"
}

check() {
  local name="$1" cond="$2"
  if eval "${cond}"; then
    echo "ok:   ${name}"
  else
    echo "FAIL: ${name}"
    failures=$((failures + 1))
  fi
}

# run_case NAME UID WITH_SUDO: runs the script as that kind of user; sets rc, log and out.
run_case() {
  make_env "${work}/$1" "$2" "$3"
  log="${work}/$1/log"
  out="${work}/$1/out"
  rc=0
  PATH="$(make_path "${work}/$1")" bash "${script}" >"${out}" 2>&1 || rc=$?
}

run_case root 0 no
check "root: exit 0" '[[ ${rc} -eq 0 ]]'
check "root: apt-get update and install run directly" \
  'grep -q "^apt-get update" "${log}" && grep -q "^apt-get install" "${log}"'
check "root: sudo is never called" '! grep -q "^sudo" "${log}"'

run_case user 1000 yes
check "user with sudo: exit 0" '[[ ${rc} -eq 0 ]]'
check "user with sudo: apt-get runs through sudo" \
  'grep -q "^sudo apt-get" "${log}" && grep -q "^apt-get install" "${log}"'

run_case nosudo 1000 no
check "user without sudo: fails" '[[ ${rc} -ne 0 ]]'
check "user without sudo: says to run as root or install sudo" \
  'grep -q "run as root, or install sudo" "${out}"'
check "user without sudo: installs nothing" '! grep -q "^apt-get" "${log}"'

# The README: the first two sh blocks of the quick start are the two commands, as is.
readme="$1/README.md"
commands="$(awk '/^## Quick start/{q=1} q&&/^```sh/{c=1; next} c&&/^```/{c=0; n++; if(n==2) exit} c' "${readme}")"
check "README quick start: the two commands, pasteable as root" \
  '[[ "${commands}" == "./scripts/quickstart.sh"$'"'"'\n'"'"'"./scripts/test.sh" ]]'

if [[ ${failures} -ne 0 ]]; then
  echo "--- README quick-start commands:"; echo "${commands}"
  for d in root user nosudo; do echo "--- ${d}: output"; cat "${work}/${d}/out"; done
  exit 1
fi
