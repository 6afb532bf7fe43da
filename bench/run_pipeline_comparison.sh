#!/usr/bin/env bash
# locus vs tf.data vs PyTorch's DataLoader on the Fashion-MNIST input pipeline: runs
# bench_data_pipeline (pipeline_throughput) and bench/pipeline_peers.py (tf.data, then
# DataLoader, one process each), alternating, ROUNDS times, and prints the median images/s
# of every side and the ratios locus/tf.data and locus/DataLoader (> 1: locus faster).
#
#   bench/run_pipeline_comparison.sh [path/to/bench_data_pipeline]
#
# Every side reads the uncompressed training IDX files from disk each epoch, shuffles all
# 60,000 images, batches 256 and normalises to float32 [N, 28, 28, 1] (see
# bench/pipeline_peers.py --help). The .gz files are decompressed into a temporary
# directory, removed on exit; locus gets it as LOCUS_PIPELINE_DATA_DIR.
#
# Without an argument the binary is looked for in build*/bench/, build/*/bench/ and build*/
# of the repository; without one, locus is left out and only the peers run. Environment:
#   ROUNDS=3           rounds (each: locus, tf.data, DataLoader)
#   EPOCHS=3           timed epochs of each peer per round (after one warm-up epoch)
#   THREADS=2          LOCUS_NUM_THREADS (unless set), TensorFlow's intra/inter-op pools and
#                      tf.data's private pool, torch.set_num_threads (DataLoader: 2 workers)
#   PYTHON=python3     interpreter with numpy and tensorflow and/or torch
#   SKIP_TF=1          leave tf.data out
#   SKIP_TORCH=1       leave DataLoader out
#   LOCUS_FASHION_MNIST_DIR  where train-{images-idx3,labels-idx1}-ubyte.gz are
#                      (default /usr/share/datasets/fashion-mnist)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
rounds="${ROUNDS:-3}"
epochs="${EPOCHS:-3}"
threads="${THREADS:-2}"
python="${PYTHON:-python3}"
skip_tf="${SKIP_TF:-0}"
skip_torch="${SKIP_TORCH:-0}"
src="${LOCUS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
export LOCUS_NUM_THREADS="${LOCUS_NUM_THREADS:-$threads}"

bin="${1:-}"
if [[ -z "$bin" ]]; then
  for c in "$root"/build*/bench/bench_data_pipeline "$root"/build/*/bench/bench_data_pipeline \
    "$root"/build*/bench_data_pipeline; do
    if [[ -x "$c" ]]; then
      bin="$c"
      break
    fi
  done
fi
if [[ -n "$bin" && ! -x "$bin" ]]; then
  echo "$0: $bin is not an executable" >&2
  exit 2
fi
[[ -n "$bin" ]] || echo "no bench_data_pipeline found in $root/build*/bench/: locus left out" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/pipeline_comparison.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/data"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte; do
  gzip -dc "$src/$f.gz" >"$work/data/$f"
done

# side NAME cmd...: runs one side, appends its images/s (stdout's last line not starting
# with #) to NAME.txt, keeps its # lines (versions, settings) in NAME.header;
# a failure is noted in NAME.failed and the other sides go on.
side() {
  local name="$1" out value
  shift
  if out="$("$@" 2>"$work/$name.log")" && value="$(grep -v '^#' <<<"$out" | tail -1)" \
    && [[ -n "$value" ]]; then
    echo "$value" >>"$work/$name.txt"
    grep '^#' <<<"$out" >"$work/$name.header" || true
  else
    { echo "$name failed:"; tail -3 "$work/$name.log"; } >"$work/$name.failed"
  fi
}

# The locus JSON's benchmarks carry a counter images_per_second (median if repeated).
locus_rate='import json, statistics, sys
b = [x["images_per_second"] for x in json.load(sys.stdin)["benchmarks"]
     if x.get("run_type") != "aggregate" and "images_per_second" in x]
print(statistics.median(b))'
peer() {  # peer KEY FLAGS...: pipeline_peers.py's # lines and the value of its KEY line
  local key="$1"
  shift
  "$python" "$here/pipeline_peers.py" --data "$work/data" --epochs "$epochs" --threads "$threads" "$@" |
    awk -v k="$key" '/^#/ { print } $1 == k { print $2 }'
}
locus() {  # JSON to a file first, so the binary's own error is what the log ends with
  LOCUS_PIPELINE_DATA_DIR="$work/data" "$bin" --benchmark_filter='pipeline_throughput' \
    --benchmark_format=json >"$work/locus.json" && "$python" -c "$locus_rate" <"$work/locus.json"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
for ((r = 1; r <= rounds; ++r)); do
  # Alternating sides, so a slow phase of a busy machine hits them all alike.
  if [[ -n "$bin" ]]; then echo "round $r/$rounds: locus" >&2; side locus locus; fi
  if [[ "$skip_tf" != 1 ]]; then echo "round $r/$rounds: tf.data" >&2; side tf peer tf_data --skip-torch; fi
  if [[ "$skip_torch" != 1 ]]; then
    echo "round $r/$rounds: DataLoader" >&2
    side torch peer torch_dataloader --skip-tf
  fi
done
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$work" "$rounds" "${bin:-}" <<'EOF'
import os, statistics, sys

work, rounds, binary = sys.argv[1], sys.argv[2], sys.argv[3]

def read(name):
    path = os.path.join(work, name)
    return open(path).read().strip() if os.path.exists(path) else ""

sides = [("locus", "locus"), ("tf.data", "tf"), ("DataLoader", "torch")]
med = {}
for title, name in sides:
    vals = [float(v) for v in read(name + ".txt").split()]
    med[title] = statistics.median(vals) if vals else None
fmt = lambda x: "n/a" if x is None else f"{x:,.0f}"
ratio = lambda a, b: "n/a" if a is None or not b else f"{a / b:.2f}x"
print(f"\nmedian of {rounds} round(s), images/s (wall-clock)")
rows = [(t, fmt(med[t])) for t, _ in sides]
rows += [("locus/tf.data", ratio(med["locus"], med["tf.data"])),
         ("locus/DataLoader", ratio(med["locus"], med["DataLoader"]))]
for t, v in rows:
    print(f"  {t:<17} {v:>10}")
print("  locus: " + (binary or "not found, left out"))
notes = []  # versions and settings (each once), failures
for _, name in sides:
    for line in (read(name + ".header") + "\n" + read(name + ".failed")).splitlines():
        if line.strip() and line not in notes:
            notes.append(line)
for line in notes:
    print("  " + line.lstrip("# "))
EOF
