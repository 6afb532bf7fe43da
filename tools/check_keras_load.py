#!/usr/bin/env python3
"""Checks that real Keras 3 loads model files (locus's) and predicts what was recorded.

Usage:

    python3 tools/check_keras_load.py [--atol 1e-5] [--exclude PATTERN ...] DIR

For each model file in DIR (sorted), with its reference arrays STEM.input.npy (or
STEM.input0.npy, STEM.input1.npy, ... for several inputs) and STEM.output.npy (or
STEM.output0.npy, ...), the outputs the writer (locus) predicted for those inputs:

  STEM.keras        keras.models.load_model, then model.predict of the inputs
  STEM.weights.h5   the model of STEM.keras (loaded afresh, every variable set to NaN),
                    then model.load_weights(STEM.weights.h5) and model.predict: checks that
                    every variable came from the weights file
  STEM.h5           a legacy HDF5 file: a whole model (it has a model_config attribute) is
                    loaded with load_model; weights only are loaded into STEM.keras's model
                    as STEM.weights.h5 is

For a STEM with dots (model.k2.h5) whose arrays are missing, the arrays of the shorter
stems (model.input.npy) are used. Each file's line says PASS or FAIL with the largest
absolute difference from the reference outputs (FAIL above --atol, 1e-5 by default, or on
a shape mismatch or NaN). A file without reference arrays is loaded and reported as LOADED.

Where the file holds an optimizer state (optimizer/vars in a .keras or .weights.h5,
optimizer_weights in a legacy .h5), the line also gives the optimizer class and its
iterations, and the variables Keras restored are compared with the file's, in order: a
count or value mismatch (Keras only warns when it skips them) is a failure. Keras 3's
legacy .h5 loader never restores an optimizer state (it builds the optimizer from the
model's own variables, of which a Sequential or Functional has none, and only warns), so
for a legacy .h5 this script builds the optimizer from model.trainable_variables and
sets the file's values itself, which checks their count, order and shapes.

Exits 0 when every file passes, 1 when one fails to load or differs, 2 on bad usage or a
directory without model files. Files whose names match an --exclude pattern (fnmatch,
e.g. 'unsupported_*') are left out. Needs keras 3 with the TensorFlow backend, h5py, numpy.
"""

import argparse
import fnmatch
import glob
import io
import os
import re
import sys
import traceback
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
for _v in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import keras  # noqa: E402

try:
    import tensorflow as tf  # noqa: E402

    tf.get_logger().setLevel("ERROR")
except ImportError:  # another backend
    pass


class CheckError(Exception):
    pass


# ---- reference arrays ---------------------------------------------------------------------------

def numbered(directory, stem, kind):
    """STEM.KIND.npy, or STEM.KIND0.npy, STEM.KIND1.npy, ... in order; [] if none."""
    one = os.path.join(directory, f"{stem}.{kind}.npy")
    if os.path.exists(one):
        return [one]
    pat = re.compile(re.escape(f"{stem}.{kind}") + r"(\d+)\.npy$")
    found = []
    for p in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(stem)}.{kind}*.npy")):
        m = pat.search(os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    found.sort()
    if found and [i for i, _ in found] != list(range(len(found))):
        raise CheckError(f"{stem}.{kind}N.npy are not numbered 0..{len(found) - 1}")
    return [p for _, p in found]


def references(directory, stem):
    """(inputs, outputs, where from): the arrays of STEM or, failing that, of a shorter stem."""
    s = stem
    inputs = outputs = None
    while True:
        if inputs is None:
            found = numbered(directory, s, "input")
            inputs = found or None
        if outputs is None:
            found = numbered(directory, s, "output")
            outputs = found or None
        if (inputs and outputs) or "." not in s:
            break
        s = s.rsplit(".", 1)[0]
    return inputs or [], outputs or []


def model_stem(filename):
    for suffix in (".weights.h5", ".keras", ".h5"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)], suffix
    return None, None


# ---- optimizer state ----------------------------------------------------------------------------

def saved_optimizer_vars(path):
    """The optimizer variables a file holds, in order, or None."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                return None
            data = z.read("model.weights.h5")
        return optimizer_vars_of_h5(h5py.File(io.BytesIO(data), "r"))
    with h5py.File(path, "r") as h:
        return optimizer_vars_of_h5(h)


def optimizer_vars_of_h5(h):
    with h:
        if "optimizer" in h and "vars" in h["optimizer"]:  # Keras 3
            g = h["optimizer"]["vars"]
            keys = sorted(g.keys(), key=int)
            return [np.asarray(g[k]) for k in keys]
        if "optimizer_weights" in h:  # legacy HDF5
            g = h["optimizer_weights"]
            names = g.attrs.get("weight_names", [])
            names = [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]
            return [np.asarray(g[n]) for n in names]
    return None


def check_optimizer(model, path):
    """A note on the optimizer state; raises CheckError when Keras did not restore it."""
    saved = saved_optimizer_vars(path)
    if not saved:
        return ""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise CheckError(f"the file holds {len(saved)} optimizer variables, the model has no "
                         "optimizer")
    note = ""
    if (len(opt.variables) == 2 and len(saved) > 2 and path.endswith(".h5")
            and not path.endswith(".weights.h5")):
        # Keras 3's legacy loader builds the optimizer from model._trainable_variables,
        # which is empty for a Sequential or Functional (the layers hold the variables),
        # then fails to set the saved values and only logs a warning. Do what it means to,
        # with a fresh optimizer (the one Keras built cannot be built again).
        opt = type(opt).from_config(opt.get_config())
        opt.build(model.trainable_variables)
        try:
            opt.set_weights(saved)
        except ValueError as e:
            raise CheckError(f"optimizer {type(opt).__name__}: the file's variables do not "
                             f"fit it: {e}")
        note = " (by this script: Keras 3's legacy .h5 loader does not restore them)"
    loaded = [np.asarray(v.numpy()) for v in opt.variables]
    if len(loaded) != len(saved):
        raise CheckError(f"optimizer {type(opt).__name__}: {len(loaded)} variables, the file "
                         f"has {len(saved)} (Keras skipped loading them)")
    for i, (a, b) in enumerate(zip(loaded, saved)):
        if a.shape != b.shape or not np.array_equal(a.astype(np.float64), b.astype(np.float64)):
            raise CheckError(f"optimizer {type(opt).__name__}: variable {i} "
                             f"({opt.variables[i].path}) differs from the file's")
    return (f"optimizer {type(opt).__name__}, iterations {int(opt.iterations.numpy())}, "
            f"{len(saved)} variables restored{note}")


# ---- the checks ---------------------------------------------------------------------------------

def predict_and_compare(model, inputs, outputs, atol):
    if not isinstance(model, keras.Model):
        raise CheckError(f"loaded a {type(model).__name__}, not a model")
    xs = [np.load(p) for p in inputs]
    refs = [np.load(p) for p in outputs]
    if len(xs) != len(model.inputs):
        raise CheckError(f"{len(xs)} input arrays for a model of {len(model.inputs)} inputs")
    y = model.predict(xs if len(xs) > 1 else xs[0], verbose=0, batch_size=max(len(xs[0]), 1))
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    if len(ys) != len(refs):
        raise CheckError(f"the model has {len(ys)} outputs, {len(refs)} reference arrays")
    worst = 0.0
    for i, (a, b) in enumerate(zip(ys, refs)):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise CheckError(f"output {i}: shape {a.shape}, the reference's {b.shape}")
        if np.isnan(a).any() or np.isnan(b).any():
            raise CheckError(f"output {i}: NaN")
        worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    return worst


def fill_nan(model):
    """NaN in every float variable of the model and of its optimizer."""
    opt = getattr(model, "optimizer", None)
    for v in list(model.variables) + (list(opt.variables) if opt is not None else []):
        if "float" in str(v.dtype):
            v.assign(np.full(v.shape, np.nan, dtype=str(v.dtype)))


def unloaded(model):
    return [v.path for v in model.weights
            if "float" in str(v.dtype) and np.isnan(np.asarray(v.numpy())).any()]


def is_full_h5_model(path):
    with h5py.File(path, "r") as h:
        return "model_config" in h.attrs


def load_weights_file(directory, stem, path):
    """The model of STEM.keras (or of a shorter stem) with the weights of `path`."""
    s = stem
    while not os.path.exists(os.path.join(directory, s + ".keras")):
        if "." not in s:
            raise CheckError(f"no {stem}.keras to build the model of the weights file")
        s = s.rsplit(".", 1)[0]
    model = keras.models.load_model(os.path.join(directory, s + ".keras"))
    fill_nan(model)
    model.load_weights(path)
    missing = unloaded(model)
    if missing:
        raise CheckError(f"variables not in the weights file: {', '.join(missing[:5])}")
    return model


def check_file(directory, filename, atol):
    """(status, message) for one file."""
    path = os.path.join(directory, filename)
    stem, kind = model_stem(filename)
    inputs, outputs = references(directory, stem)
    if kind == ".keras":
        model = keras.models.load_model(path)
    elif kind == ".weights.h5" or not is_full_h5_model(path):
        model = load_weights_file(directory, stem, path)
    else:
        model = keras.models.load_model(path)
    notes = []
    status = "LOADED"
    if inputs and outputs:
        diff = predict_and_compare(model, inputs, outputs, atol)
        status = "PASS" if diff <= atol else "FAIL"
        notes.append(f"max|diff| {diff:.3g}")
    else:
        if not isinstance(model, keras.Model):
            raise CheckError(f"loaded a {type(model).__name__}, not a model")
        notes.append("no reference arrays, not compared")
    opt = check_optimizer(model, path)
    if opt:
        notes.append(opt)
    return status, "; ".join(notes)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory")
    ap.add_argument("--atol", type=float, default=1e-5,
                    help="largest absolute difference that passes (default 1e-5)")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="leave out files whose names match (fnmatch); repeatable")
    args = ap.parse_args(argv[1:])
    if not os.path.isdir(args.directory):
        print(f"{args.directory}: not a directory", file=sys.stderr)
        return 2
    files = sorted(f for f in os.listdir(args.directory)
                   if model_stem(f)[0] is not None
                   and not any(fnmatch.fnmatch(f, p) for p in args.exclude))
    if not files:
        print(f"{args.directory}: no .keras, .weights.h5 or .h5 files", file=sys.stderr)
        return 2
    print(f"keras {keras.__version__} ({keras.backend.backend()}), atol {args.atol:g}")
    failed = 0
    width = max(len(f) for f in files)
    for f in files:
        try:
            status, message = check_file(args.directory, f, args.atol)
        except CheckError as e:
            status, message = "FAIL", str(e)
        except Exception as e:  # a file Keras cannot load
            status = "FAIL"
            message = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            if os.environ.get("CHECK_KERAS_LOAD_TRACEBACK"):
                traceback.print_exc()
        keras.backend.clear_session()
        failed += status == "FAIL"
        print(f"{status:6s} {f:{width}s}  {message}", flush=True)
    print(f"{len(files) - failed} of {len(files)} files pass" if failed
          else f"all {len(files)} files pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
