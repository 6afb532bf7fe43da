#!/usr/bin/env bash
# locus vs PyTorch vs Keras 3 (TensorFlow) on the Fashion-MNIST CNNs: runs bench_cnn
# (Device<CPU> and Device<GPU>), bench/pytorch_cnn.py and bench/keras_cnn.py, alternating,
# ROUNDS times, for each model, and prints one table per model with the medians and the
# ratios locus/PyTorch and locus/Keras.
#
#   bench/run_cnn_comparison.sh [path/to/bench_cnn]
#
# Models: cnn (examples/fashion_mnist_cnn.cpp; bench_cnn's cnn_{train_fit,infer,latency})
# and residual (examples/residual_cnn.cpp; cnn_residual_{train_fit,infer,latency}, n/a
# when the binary has none). The peers' definitions are in their scripts (--help).
#
# Without an argument the binary is looked for in build*/bench/, build/*/bench/ and build*/
# of the repository. Environment:
#   ROUNDS=3           rounds (each: every model on locus CPU, locus GPU, PyTorch, Keras)
#   MIN_TIME=2         seconds per measurement (every side)
#   MODELS="cnn residual"
#   THREADS=2          CPU threads of every side: LOCUS_NUM_THREADS (unless set),
#                      torch.set_num_threads, TensorFlow's intra-op and inter-op pools
#   PYTHON=python3     interpreter with numpy and torch and/or tensorflow + keras
#   SKIP_GPU=1         leave Device<GPU> out
#   SKIP_TORCH=1       leave PyTorch out
#   SKIP_KERAS=1       leave Keras out
#   CLOCK=cpu          compare CPU time on one thread instead (THREADS=1, process CPU time
#                      on every side, no GPU): per-core work, much less disturbed than
#                      wall-clock time when the machine is busy
#   LOCUS_OPENCL_ALLOW_CPU defaults to 1 here, so PoCL's CPU device serves as the GPU.
#
# Ratios: throughput locus/peer; latency peer time/locus time. Above 1 means locus is
# faster in every column. The last lines compare locus CPU training with the faster peer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
rounds="${ROUNDS:-3}"
min_time="${MIN_TIME:-2}"
python="${PYTHON:-python3}"
clock="${CLOCK:-wall}"
threads="${THREADS:-2}"
read -r -a models <<<"${MODELS:-cnn residual}"
export LOCUS_OPENCL_ALLOW_CPU="${LOCUS_OPENCL_ALLOW_CPU:-1}"
if [[ "$clock" == cpu ]]; then
  threads=1
  export LOCUS_NUM_THREADS=1
  SKIP_GPU=1
elif [[ "$clock" != wall ]]; then
  echo "$0: CLOCK must be wall or cpu" >&2
  exit 2
fi
export LOCUS_NUM_THREADS="${LOCUS_NUM_THREADS:-$threads}"
for m in "${models[@]}"; do
  if [[ "$m" != cnn && "$m" != residual ]]; then
    echo "$0: MODELS may name cnn and residual, not '$m'" >&2
    exit 2
  fi
done

bin="${1:-}"
if [[ -z "$bin" ]]; then
  for c in "$root"/build*/bench/bench_cnn "$root"/build/*/bench/bench_cnn "$root"/build*/bench_cnn; do
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
skip_torch="${SKIP_TORCH:-0}"
skip_keras="${SKIP_KERAS:-0}"
if ! "$python" -c 'import numpy' 2>/dev/null; then
  echo "$0: $python cannot import numpy (python3 -m pip install numpy)" >&2
  exit 2
fi
if [[ "$skip_torch" != 1 ]] && ! "$python" -c 'import torch' 2>/dev/null; then
  echo "$0: $python cannot import torch (python3 -m pip install torch, or SKIP_TORCH=1)" >&2
  exit 2
fi
if [[ "$skip_keras" != 1 ]] && ! KERAS_BACKEND=tensorflow "$python" -c 'import tensorflow, keras' 2>/dev/null; then
  echo "$0: $python cannot import tensorflow and keras" \
    "(python3 -m pip install tensorflow-cpu keras, or SKIP_KERAS=1)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/cnn_comparison.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Versions and thread settings of every side.
locus_version="$(sed -n 's/^ *VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt" | head -1)"
git_rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  git_rev+=", working tree modified"
fi
echo "locus:   ${locus_version:-?} (git $git_rev), $bin"
gpu_note="OpenCL, device named below (LOCUS_OPENCL_ALLOW_CPU=$LOCUS_OPENCL_ALLOW_CPU)"
[[ "${SKIP_GPU:-0}" == 1 ]] && gpu_note=skipped
echo "         CPU: LOCUS_NUM_THREADS=$LOCUS_NUM_THREADS; GPU: $gpu_note"
if [[ "$skip_torch" != 1 ]]; then
  echo "PyTorch: $("$python" -c 'import sys, torch
torch.set_num_threads(int(sys.argv[1]))
print("%s, %d thread(s), %d inter-op, CPU"
      % (torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads()))' "$threads" 2>/dev/null)"
fi
if [[ "$skip_keras" != 1 ]]; then
  echo "Keras:   $(KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 "$python" -c 'import os, sys, tensorflow as tf
n = int(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(n)
tf.config.threading.set_inter_op_parallelism_threads(n)
import keras
from tensorflow.python.util import _pywrap_util_port as port
env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
th = tf.config.threading
print("%s on TensorFlow %s, oneDNN %s (TF_ENABLE_ONEDNN_OPTS %s), intra-op %d / inter-op %d threads, CPU"
      % (keras.__version__, tf.__version__, "on" if port.IsMklEnabled() else "off",
         "unset" if env is None else "=" + env,
         th.get_intra_op_parallelism_threads(), th.get_inter_op_parallelism_threads()))' "$threads" 2>/dev/null)"
fi
echo "clock:   $clock$([[ $clock == cpu ]] && echo ' (process CPU time, 1 thread each side)'; true)"
echo "models:  ${models[*]}; rounds: $rounds; min time: $min_time s"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
cpus="$(nproc)"
echo "load average at start: $load ($cpus CPUs)"
if [[ "$clock" == wall ]] && awk -v l="${load%% *}" -v c="$cpus" 'BEGIN { exit !(l > c / 2) }'; then
  echo "warning: the machine is busy; wall-clock figures of multi-threaded runs are disturbed (PyTorch's"
  echo "         OpenMP threads spin-wait for descheduled peers and can lose 10x). CLOCK=cpu is steadier."
fi

devices=(cpu)
[[ "${SKIP_GPU:-0}" == 1 ]] || devices+=(gpu)

# Which models the binary has (one listing; a model without benchmarks shows n/a).
list="$("$bin" --benchmark_list_tests 2>/dev/null || true)"
declare -A locus_prefix=([cnn]=cnn [residual]=cnn_residual)
for m in "${models[@]}"; do
  if ! grep -Eq "^${locus_prefix[$m]}_(train_fit|infer|latency)/" <<<"$list"; then
    echo "$bin has no ${locus_prefix[$m]}_{train_fit,infer,latency} benchmarks" >"$work/locus_${m}_absent"
  fi
done

# run NAME LOGFILE_STEM cmd...: stdout to STEM.txt, stderr to STEM.log, a failure to STEM.failed.
run() {
  local name="$1" stem="$2"
  shift 2
  local rc=0
  "$@" >"$stem.txt" 2>"$stem.log" || rc=$?
  if ((rc != 0)); then
    {
      echo "$name exited with status $rc:"
      grep -v '^I0000\|^WARNING: All log messages' "$stem.log" | tail -5
    } >"$stem.failed"
  fi
}

for ((r = 1; r <= rounds; ++r)); do
  for m in "${models[@]}"; do
    if [[ ! -e "$work/locus_${m}_absent" ]]; then
      for dev in "${devices[@]}"; do
        # One process per model and device: a crash on one leaves the others' results.
        echo "round $r/$rounds, $m: locus $dev" >&2
        run "locus $dev" "$work/locus_${m}_${dev}_$r" "$bin" \
          --benchmark_filter="^${locus_prefix[$m]}_(train_fit|infer|latency)/$dev/" \
          --benchmark_min_time="$min_time" --benchmark_out="$work/locus_${m}_${dev}_$r.json" \
          --benchmark_out_format=json
      done
    fi
    if [[ "$skip_torch" != 1 ]]; then
      echo "round $r/$rounds, $m: PyTorch" >&2
      run PyTorch "$work/torch_${m}_$r" "$python" "$here/pytorch_cnn.py" --model "$m" --repeats 1 \
        --min-time "$min_time" --threads "$threads" --clock "$clock"
    fi
    if [[ "$skip_keras" != 1 ]]; then
      echo "round $r/$rounds, $m: Keras" >&2
      run Keras "$work/keras_${m}_$r" env KERAS_BACKEND=tensorflow "$python" "$here/keras_cnn.py" --model "$m" \
        --repeats 1 --min-time "$min_time" --threads "$threads" --clock "$clock"
    fi
  done
done
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$work" "$rounds" "$clock" "$skip_torch" "$skip_keras" "${#devices[@]}" "${devices[@]}" \
  "${models[@]}" <<'EOF'
import json, os, statistics, sys
from collections import Counter

work, rounds, clock = sys.argv[1], int(sys.argv[2]), sys.argv[3]
skip_torch, skip_keras = sys.argv[4] == "1", sys.argv[5] == "1"
ndev = int(sys.argv[6])
devices, models = sys.argv[7 : 7 + ndev], sys.argv[7 + ndev :]
FIGS = [
    ("train", "train img/s (batch 32, fit)"),
    ("infer", "infer img/s (batch 256)"),
    ("latency", "latency us (batch 1)"),
]
PREFIX = {"cnn": "cnn", "residual": "cnn_residual"}
PEER_KEYS = {"train": "train_images_per_second", "infer": "infer_images_per_second", "latency": "latency_us"}
UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}

def med(v):
    return statistics.median(v) if v else None

def failures(stem):
    path = stem + ".failed"
    return [open(path).read().strip().replace("\n", " | ")] if os.path.exists(path) else []

def locus(model, dev):
    vals, errors, label = {f: [] for f, _ in FIGS}, [], ""
    bench = {f: PREFIX[model] + "_" + ("train_fit" if f == "train" else f) for f, _ in FIGS}
    for r in range(1, rounds + 1):
        stem = os.path.join(work, f"locus_{model}_{dev}_{r}")
        errors += failures(stem)
        try:
            runs = json.load(open(stem + ".json"))["benchmarks"]
        except (OSError, ValueError, KeyError):
            continue
        for b in runs:
            fig = next((f for f, n in bench.items() if b["name"].startswith(n + "/")), None)
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
    return {f: med(v) for f, v in vals.items()}, sorted(set(errors)), label

def peer(side, model):
    """Medians of a peer script's name=value lines over the rounds, its header, its errors."""
    vals, header, errors = {}, "", []
    for r in range(1, rounds + 1):
        stem = os.path.join(work, f"{side}_{model}_{r}")
        errors += failures(stem)
        try:
            lines = open(stem + ".txt").read().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("# ") and not header and "_cnn " in line:
                header = line[2:]
            elif "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                vals.setdefault(k, []).append(v.strip())
    figs = {f: med([float(x) for x in vals.get(key, [])]) for f, key in PEER_KEYS.items()}
    return figs, vals, header, sorted(set(errors))

def fmt(x, fig):
    if x is None:
        return "n/a"
    return f"{x:,.1f}" if fig == "latency" else f"{x:,.0f}"

def ratio(lv, pv, fig):
    if lv is None or pv is None or lv == 0 or pv == 0:
        return None
    return pv / lv if fig == "latency" else lv / pv

def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"

summary = []
for model in models:
    cols, notes, peers = [], [], []
    absent = os.path.join(work, f"locus_{model}_absent")
    for dev in devices:
        name = "locus " + dev.upper()
        if os.path.exists(absent):
            cols.append((name, {f: None for f, _ in FIGS}))
            continue
        v, errs, label = locus(model, dev)
        cols.append((name, v))
        if label:
            notes.append(f"{name}: {label}")
        notes += [f"{name}: ERROR {e}" for e in errs]
    if os.path.exists(absent):
        notes.append("locus: " + open(absent).read().strip() + " (n/a)")
    for side, title, skip in (("torch", "PyTorch", skip_torch), ("keras", "Keras", skip_keras)):
        if skip:
            continue
        figs, vals, header, errs = peer(side, model)
        peers.append((title, figs))
        if header:
            notes.append(f"{title}: {header}")
        notes += [f"{title}: ERROR {e}" for e in errs]
        if side == "keras" and vals:
            forms = lambda k: ", ".join(f"{f} {c}/{rounds}" for f, c in Counter(vals.get(k, [])).most_common())
            pi = med([float(x) for x in vals.get("predict_infer_images_per_second", [])])
            pl = med([float(x) for x in vals.get("predict_latency_us", [])])
            notes.append(f"Keras: infer form {forms('infer_form')} (model.predict alone: {fmt(pi, 'infer')} img/s); "
                         f"latency form {forms('latency_form')} (model.predict alone: {fmt(pl, 'latency')} us)")
    table = cols + peers
    ratio_cols = [(lc, pc) for lc, _ in cols for pc, _ in peers]
    head = [f"{model}: {'CPU time, 1 thread' if clock == 'cpu' else 'wall-clock'}, median of {rounds}"]
    head += [c for c, _ in table] + [lc.replace("locus ", "") + "/" + pc for lc, pc in ratio_cols]
    lv = dict(cols)
    pv = dict(peers)
    rows = []
    for fig, title in FIGS:
        rows.append([title] + [fmt(v[fig], fig) for _, v in table]
                    + [fmt_ratio(ratio(lv[lc][fig], pv[pc][fig], fig)) for lc, pc in ratio_cols])
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
    print()
    print(line(head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))
    for n in notes:
        print("  " + n)
    # locus CPU training against the faster peer's training.
    cpu = lv.get("locus CPU", {}).get("train")
    best = max(((t, v["train"]) for t, v in peers if v["train"] is not None), key=lambda p: p[1], default=None)
    x = ratio(cpu, best[1], "train") if best else None
    summary.append(f"locus CPU training vs the faster peer: {fmt_ratio(x)} ({model}"
                   + (f"; {best[0]} {fmt(best[1], 'train')} img/s" if best else "; no peer figure") + ")")

print()
print("ratios: throughput locus/peer, latency peer time/locus time (> 1: locus faster)")
for s in summary:
    print(s)
EOF
