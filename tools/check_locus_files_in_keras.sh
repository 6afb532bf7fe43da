#!/usr/bin/env bash
# Checks files locus wrote in real Keras 3: each Keras fixture of tests/data/keras with one
# input is read by locus and written again (locus-model convert: .keras with its optimizer
# state, and .weights.h5), a model trained by locus is saved by the
# train_on_gpu_serve_on_gpu example, locus-model predicts each, and
# tools/check_keras_load.py loads every file in Keras and compares its predictions with
# locus's (1e-5), and the optimizer variables Keras restored with the file's.
#
#   tools/check_locus_files_in_keras.sh [BUILD_DIR] [OUT_DIR]
#
# Needs a build with tools and examples (default build/rel) and Python with keras 3,
# tensorflow, h5py and numpy; neither is a dependency of the library or of its tests.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-${ROOT}/build/rel}"
OUT="${2:-$(mktemp -d)}"
TOOL="${BUILD}/locus-model"
FIX="${ROOT}/tests/data/keras"
mkdir -p "${OUT}"
export LOCUS_OPENCL_ALLOW_CPU="${LOCUS_OPENCL_ALLOW_CPU:-1}"

for input in "${FIX}"/*.input.npy; do
  stem="$(basename "${input}" .input.npy)"
  [[ -f "${FIX}/${stem}.keras" ]] || continue
  "${TOOL}" convert "${FIX}/${stem}.keras" "${OUT}/${stem}.keras"
  "${TOOL}" convert "${FIX}/${stem}.keras" "${OUT}/${stem}.weights.h5"
  cp "${input}" "${OUT}/${stem}.input.npy"
  "${TOOL}" predict "${OUT}/${stem}.keras" "${input}" "${OUT}/${stem}.output.npy"
done

# A model trained by locus (on Device<GPU>), with its Adam state.
if [[ -x "${BUILD}/examples/train_on_gpu_serve_on_gpu" ]]; then
  "${BUILD}/examples/train_on_gpu_serve_on_gpu" --quick --output "${OUT}/locus_trained_cnn.keras" > "${OUT}/train.log"
  python3 -c "import numpy as np; np.save('${OUT}/locus_trained_cnn.input.npy', np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32))"
  "${TOOL}" predict "${OUT}/locus_trained_cnn.keras" "${OUT}/locus_trained_cnn.input.npy" \
    "${OUT}/locus_trained_cnn.output.npy" --device gpu
fi

echo "locus-written files in ${OUT}"
TF_CPP_MIN_LOG_LEVEL=3 python3 "${ROOT}/tools/check_keras_load.py" "${OUT}"
