#!/usr/bin/env bash
# locus inference (Model::predict, InferencePlan fp32, QuantizedPlan int8) vs ONNX Runtime
# (fp32 and static int8 QDQ) on the Fashion-MNIST CNNs, on the CPU: exports the ONNX models
# once (bench/onnx_peer.py export), then runs bench_inference's CPU benchmarks and
# bench/onnx_peer.py time on both ONNX models, alternating, ROUNDS times, and prints one
# table per model with the medians and the ratios.
#
#   bench/run_inference_comparison.sh [path/to/bench_inference]
#
# Without an argument the binary is looked for in build*/bench/, build/*/bench/ and build*/
# of the repository. Environment:
#   ROUNDS=3           rounds (each: every model on locus, ORT fp32, ORT int8)
#   MIN_TIME=2         seconds per measurement (every side)
#   MODELS="cnn residual"
#   THREADS=2          CPU threads: LOCUS_NUM_THREADS (unless set), ORT's intra-op threads
#                      (inter-op 1)
#   PYTHON=python3     interpreter with numpy, onnx and onnxruntime
#
# Ratios: throughput locus/ORT, latency ORT time/locus time (> 1: locus faster);
# "int8/ORT best" compares with the faster of ORT's fp32 and int8 models, "int8/fp32" is
# locus int8 against locus fp32 (the gain of quantization).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
rounds="${ROUNDS:-3}"
min_time="${MIN_TIME:-2}"
python="${PYTHON:-python3}"
threads="${THREADS:-2}"
read -r -a models <<<"${MODELS:-cnn residual}"
export LOCUS_NUM_THREADS="${LOCUS_NUM_THREADS:-$threads}"
for m in "${models[@]}"; do
  if [[ "$m" != cnn && "$m" != residual ]]; then
    echo "$0: MODELS may name cnn and residual, not '$m'" >&2
    exit 2
  fi
done

bin="${1:-}"
if [[ -z "$bin" ]]; then
  for c in "$root"/build*/bench/bench_inference "$root"/build/*/bench/bench_inference \
    "$root"/build*/bench_inference; do
    if [[ -x "$c" ]]; then
      bin="$c"
      break
    fi
  done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "usage: $0 path/to/bench_inference   (none found in $root/build*/bench/)" >&2
  exit 2
fi
if ! "$python" -c 'import numpy, onnx, onnxruntime' 2>/dev/null; then
  echo "$0: $python cannot import numpy, onnx and onnxruntime" \
    "(python3 -m pip install onnx onnxruntime)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/inference_comparison.XXXXXX")"
trap 'rm -rf "$work"' EXIT

locus_version="$(sed -n 's/^ *VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt" | head -1)"
git_rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  git_rev+=", working tree modified"
fi
echo "locus: ${locus_version:-?} (git $git_rev), $bin, LOCUS_NUM_THREADS=$LOCUS_NUM_THREADS"
echo "ORT:   onnxruntime $("$python" -c 'import onnxruntime; print(onnxruntime.__version__)'), $threads" \
  "intra-op / 1 inter-op thread(s), ORT_ENABLE_ALL, CPUExecutionProvider"
echo "models: ${models[*]}; rounds: $rounds; min time: $min_time s"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"

# run NAME STEM cmd...: stdout to STEM.txt, stderr to STEM.log, a failure to STEM.failed.
run() {
  local name="$1" stem="$2"
  shift 2
  local rc=0
  "$@" >"$stem.txt" 2>"$stem.log" || rc=$?
  if ((rc != 0)); then
    { echo "$name exited with status $rc:" && tail -5 "$stem.log"; } >"$stem.failed"
  fi
}

for m in "${models[@]}"; do
  echo "exporting $m to ONNX (fp32, int8)" >&2
  run "export $m" "$work/export_$m" "$python" "$here/onnx_peer.py" export --model "$m" \
    --out "$work/onnx" --threads "$threads"
done
for ((r = 1; r <= rounds; ++r)); do
  for m in "${models[@]}"; do
    echo "round $r/$rounds, $m: locus" >&2
    run locus "$work/locus_${m}_$r" "$bin" --benchmark_filter="^inference_${m}_(predict|fp32|int8)_cpu/" \
      --benchmark_min_time="$min_time" --benchmark_out="$work/locus_${m}_$r.json" \
      --benchmark_out_format=json
    for p in fp32 int8; do
      echo "round $r/$rounds, $m: ORT $p" >&2
      if [[ -f "$work/onnx/$m.$p.onnx" ]]; then
        run "ORT $p" "$work/ort_${m}_${p}_$r" "$python" "$here/onnx_peer.py" time \
          --onnx "$work/onnx/$m.$p.onnx" --threads "$threads" --min-time "$min_time"
      fi
    done
  done
done
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$work" "$rounds" "${models[@]}" <<'EOF'
import json, os, statistics, sys

work, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
FIGS = [("infer", "batch-256 img/s"), ("latency", "latency us (1 image)")]
UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
PEER_KEYS = {"infer": "infer_images_per_second", "latency": "latency_us"}

def med(v):
    return statistics.median(v) if v else None

def read(path):
    return open(path).read().strip() if os.path.exists(path) else ""

def locus(model, kind, notes):
    vals = {f: [] for f, _ in FIGS}
    for r in range(1, rounds + 1):
        try:
            runs = json.load(open(os.path.join(work, f"locus_{model}_{r}.json")))["benchmarks"]
        except (OSError, ValueError, KeyError):
            continue
        for b in runs:
            parts = b["name"].split("/")  # inference_<model>_<kind>_cpu/<figure>/process_time/real_time
            if parts[0] != f"inference_{model}_{kind}_cpu" or b.get("run_type", "iteration") != "iteration":
                continue
            if b.get("error_occurred"):
                notes.add(f"locus {kind}: ERROR {b.get('error_message', 'error')}")
                continue
            if b.get("label"):
                notes.add(f"locus {kind}: {b['label']}")
            if parts[1] == "batch256":
                vals["infer"].append(b["items_per_second"])
            else:
                vals["latency"].append(b["real_time"] * UNIT[b["time_unit"]])
    return {f: med(v) for f, v in vals.items()}

def ort(model, kind, notes):
    vals = {f: [] for f in PEER_KEYS}
    for r in range(1, rounds + 1):
        for line in read(os.path.join(work, f"ort_{model}_{kind}_{r}.txt")).splitlines():
            if line.startswith("# kernels: "):
                notes.add(f"ORT {kind} kernels: {line[11:]}")
            elif "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                f = next((f for f, key in PEER_KEYS.items() if key == k), None)
                if f:
                    vals[f].append(float(v))
    return {f: med(v) for f, v in vals.items()}

def fmt(v, fig):
    return "n/a" if v is None else (f"{v:,.0f}" if fig == "infer" else f"{v:,.1f}")

def ratio(a, b, fig):  # > 1: a is faster
    if a is None or b is None:
        return "n/a"
    return f"{(a / b if fig == 'infer' else b / a):.2f}x"

def best(a, b, fig):
    vs = [v for v in (a, b) if v is not None]
    return None if not vs else (max(vs) if fig == "infer" else min(vs))

for model in models:
    notes = set()
    cols = {
        "locus predict": locus(model, "predict", notes),
        "locus fp32": locus(model, "fp32", notes),
        "locus int8": locus(model, "int8", notes),
        "ORT fp32": ort(model, "fp32", notes),
        "ORT int8": ort(model, "int8", notes),
    }
    head = [f"{model}: wall-clock, median of {rounds}"] + list(cols) + ["fp32/ORT fp32", "int8/ORT best", "int8/fp32"]
    rows = []
    for fig, title in FIGS:
        v = {k: c[fig] for k, c in cols.items()}
        rows.append([title] + [fmt(x, fig) for x in v.values()] + [
            ratio(v["locus fp32"], v["ORT fp32"], fig),
            ratio(v["locus int8"], best(v["ORT fp32"], v["ORT int8"], fig), fig),
            ratio(v["locus int8"], v["locus fp32"], fig),
        ])
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
    print()
    print(line(head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line(r))
    for l in read(os.path.join(work, f"export_{model}.txt")).splitlines():
        if l.startswith("# on "):
            notes.add("ORT export: " + l[2:])
    for stem in [f"export_{model}"] + [f"{s}_{model}_{r}" for s in ("locus", "ort_fp32", "ort_int8")
                                       for r in range(1, rounds + 1)]:
        if read(os.path.join(work, stem + ".failed")):
            notes.add("ERROR " + read(os.path.join(work, stem + ".failed")).replace("\n", " | "))
    for n in sorted(notes):
        print("  " + n)
print()
print("ratios: throughput locus/ORT, latency ORT time/locus time (> 1: locus faster)")
EOF
