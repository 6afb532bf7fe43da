#!/usr/bin/env bash
# locus vs PyTorch on the Fashion-MNIST CNN of examples/fashion_mnist_cnn.cpp:
# runs bench_cnn (Device<CPU> and Device<GPU>) and bench/pytorch_cnn.py, alternating,
# ROUNDS times, and prints the medians with the ratios locus/PyTorch.
#
#   bench/run_cnn_comparison.sh [path/to/bench_cnn]
#
# Without an argument the binary is looked for in build*/bench/ and build*/ of the
# repository. Environment:
#   ROUNDS=3           rounds (each: locus CPU, locus GPU, PyTorch)
#   MIN_TIME=2         seconds per measurement (both sides)
#   PYTHON=python3     interpreter with torch and numpy
#   SKIP_GPU=1         leave Device<GPU> out
#   CLOCK=cpu          compare CPU time on one thread instead (LOCUS_NUM_THREADS=1, torch
#                      1 thread, process CPU time on both sides, no GPU): per-core work,
#                      much less disturbed than wall-clock time when the machine is busy
#   LOCUS_OPENCL_ALLOW_CPU defaults to 1 here, so PoCL's CPU device serves as the GPU.
#
# Ratios: throughput locus/PyTorch; latency PyTorch time/locus time. Above 1 means locus
# is faster in every column.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
rounds="${ROUNDS:-3}"
min_time="${MIN_TIME:-2}"
python="${PYTHON:-python3}"
clock="${CLOCK:-wall}"
export LOCUS_OPENCL_ALLOW_CPU="${LOCUS_OPENCL_ALLOW_CPU:-1}"
torch_threads=2
if [[ "$clock" == cpu ]]; then
  export LOCUS_NUM_THREADS=1
  torch_threads=1
  SKIP_GPU=1
elif [[ "$clock" != wall ]]; then
  echo "$0: CLOCK must be wall or cpu" >&2
  exit 2
fi

bin="${1:-}"
if [[ -z "$bin" ]]; then
  for c in "$root"/build*/bench/bench_cnn "$root"/build*/bench_cnn; do
    if [[ -x "$c" ]]; then
      bin="$c"
      break
    fi
  done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "usage: $0 path/to/bench_cnn   (no bench_cnn found in $root/build*/bench/)" >&2
  exit 2
fi
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  echo "$0: $python cannot import torch and numpy (python3 -m pip install torch numpy)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/cnn_comparison.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "locus:   $bin"
echo "PyTorch: $("$python" -c 'import torch; print(torch.__version__)'), $torch_threads thread(s)"
echo "clock:   $clock$([[ $clock == cpu ]] && echo ' (process CPU time, 1 thread each side)'; true)"
echo "rounds:  $rounds, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

devices=(cpu)
[[ "${SKIP_GPU:-0}" == 1 ]] || devices+=(gpu)

for ((r = 1; r <= rounds; ++r)); do
  for dev in "${devices[@]}"; do
    # One process per device: a crash on one leaves the other's results.
    echo "round $r/$rounds: locus $dev" >&2
    if ! "$bin" --benchmark_filter="^cnn_(train_fit|infer|latency)/$dev/" \
      --benchmark_min_time="$min_time" --benchmark_out="$work/locus_${dev}_$r.json" \
      --benchmark_out_format=json >"$work/locus_${dev}_$r.log" 2>&1; then
      echo "locus $dev exited with status $? (see below)" >"$work/locus_${dev}_$r.failed"
      tail -5 "$work/locus_${dev}_$r.log" >>"$work/locus_${dev}_$r.failed"
    fi
  done
  echo "round $r/$rounds: PyTorch" >&2
  "$python" "$here/pytorch_cnn.py" --repeats 1 --min-time "$min_time" --threads "$torch_threads" \
    --clock "$clock" >"$work/pytorch_$r.txt"
done
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"
echo

"$python" - "$work" "$rounds" "$clock" "${devices[@]}" <<'EOF'
import json, os, statistics, sys

work, rounds, clock, devices = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
FIGS = [("train", "train img/s (batch 32, fit)"), ("infer", "infer img/s (batch 256)"), ("latency", "latency us (batch 1)")]
BENCH = {"train": "cnn_train_fit", "infer": "cnn_infer", "latency": "cnn_latency"}
TORCH = {"train": "train_images_per_second", "infer": "infer_images_per_second", "latency": "latency_us"}
UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}

def locus(dev):
    vals, errors, label = {f: [] for f, _ in FIGS}, [], ""
    for r in range(1, rounds + 1):
        failed = os.path.join(work, f"locus_{dev}_{r}.failed")
        if os.path.exists(failed):
            errors.append(open(failed).read().strip().replace("\n", " | "))
        path = os.path.join(work, f"locus_{dev}_{r}.json")
        try:
            runs = json.load(open(path))["benchmarks"]
        except (OSError, ValueError, KeyError):
            continue
        for b in runs:
            fig = next((f for f, n in BENCH.items() if b["name"].startswith(n + "/")), None)
            if fig is None:
                continue
            if b.get("error_occurred"):
                errors.append(b.get("error_message", "error"))
                continue
            label = b.get("label", label)
            us = b["real_time"] * UNIT[b["time_unit"]]
            rate = b["items_per_second"]
            if clock == "cpu":  # same items per iteration, CPU time instead of wall-clock
                items = rate * us * 1e-6
                us = b["cpu_time"] * UNIT[b["time_unit"]]
                rate = items / (us * 1e-6)
            vals[fig].append(us if fig == "latency" else rate)
    return {f: statistics.median(v) if v else None for f, v in vals.items()}, sorted(set(errors)), label

def pytorch():
    vals = {f: [] for f, _ in FIGS}
    for r in range(1, rounds + 1):
        for line in open(os.path.join(work, f"pytorch_{r}.txt")):
            if "=" in line and not line.startswith("#"):
                k, v = line.strip().split("=", 1)
                for f, key in TORCH.items():
                    if k == key:
                        vals[f].append(float(v))
    return {f: statistics.median(v) if v else None for f, v in vals.items()}

torch_v = pytorch()
cols = [("PyTorch CPU", torch_v)]
notes = []
for dev in devices:
    v, errs, label = locus(dev)
    name = "locus " + dev.upper()
    cols.insert(len(cols) - 1, (name, v))
    if label:
        notes.append(f"{name}: {label}")
    for e in errs:
        notes.append(f"{name}: ERROR {e}")

def fmt(x, fig):
    if x is None:
        return "n/a"
    return f"{x:,.1f}" if fig == "latency" else f"{x:,.0f}"

def ratio(lv, tv, fig):
    if lv is None or tv is None or lv == 0:
        return "n/a"
    return f"{(tv / lv if fig == 'latency' else lv / tv):.2f}x"

head = ["%s, median of %d" % ("CPU time, 1 thread" if clock == "cpu" else "wall-clock", rounds)] + [c for c, _ in cols] + [c.replace("locus ", "") + "/PyTorch" for c, _ in cols[:-1]]
rows = []
for fig, title in FIGS:
    rows.append([title] + [fmt(v[fig], fig) for _, v in cols] + [ratio(v[fig], torch_v[fig], fig) for _, v in cols[:-1]])
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
line = lambda r: "| " + " | ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
print("ratios: throughput locus/PyTorch, latency PyTorch time/locus time (> 1: locus faster)")
for n in notes:
    print(n)
EOF
