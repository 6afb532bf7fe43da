"""What bench/pytorch_cnn.py and bench/keras_cnn.py share with bench/bench_cnn.cpp: the
sizes of the timed work, the Fashion-MNIST loader, the timing loop and the command line.

Only numpy here (no framework): each peer imports this module, then its own framework.
"""

import argparse
import gzip
import os
import struct
import time

import numpy as np

# The same pieces as bench/bench_cnn.cpp (kTrainBatch, kFitSteps, ...).
TRAIN_BATCH = 32
FIT_STEPS = 64  # batches per timed epoch (2,048 images)
FIT_CHUNKS = 8  # distinct training subsets, used in turn
INFER_BATCH = 256
INFER_CHUNKS = 8
LATENCY_IMAGES = 64

MODELS_HELP = """models (--model; the same definitions as locus and Keras, Keras's initializers and
Adam(1e-3, epsilon 1e-7), sparse categorical cross-entropy, batch 32):

  cnn       examples/fashion_mnist_cnn.cpp:
            Conv2D(32, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(10, softmax)
  residual  examples/residual_cnn.cpp:
            Conv2D(16, 3, same) -> BN -> relu -> block(16) -> MaxPooling2D(2)
            -> Conv2D(32, 3, same) -> BN -> relu -> block(32) -> MaxPooling2D(2)
            -> Conv2D(64, 3, same) -> BN -> relu -> block(64)
            -> GlobalAveragePooling2D -> Dense(10, softmax),
            block(h, f): y = Conv2D(f, 3, same) -> BN -> relu -> Conv2D(f, 3, same) -> BN;
                         h = relu(h + y)
            (Conv2D with bias; BN momentum 0.9, epsilon 1e-3 in Keras's terms)"""


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"{os.path.join(directory, stem)}[.gz] not found (apt-get install dataset-fashion-mnist)")


def load_split(directory, prefix):
    """(images, labels) of one split: NHWC float32 [N, 28, 28, 1] in [0, 1] as locus loads
    them, and uint8 labels [N]."""
    images = read_idx(find(directory, prefix + "-images-idx3-ubyte"))  # [N, 28, 28]
    labels = read_idx(find(directory, prefix + "-labels-idx1-ubyte"))  # [N]
    return (images.astype(np.float32) / 255.0)[..., np.newaxis], labels


def measure(fn, min_time, clock=time.perf_counter):
    """Runs fn until min_time seconds of `clock` have passed; returns seconds per call."""
    calls, t0 = 0, clock()
    while True:
        fn()
        calls += 1
        el = clock() - t0
        if el >= min_time:
            return el / calls


def clock_of(args):
    return time.process_time if args.clock == "cpu" else time.perf_counter


def argument_parser(doc):
    ap = argparse.ArgumentParser(
        description=doc, epilog=MODELS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", choices=("cnn", "residual"), default="cnn")
    ap.add_argument("--data", default=os.environ.get("LOCUS_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="measurements per figure (median reported)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time, or the process's CPU time (a load-robust per-core figure with --threads 1)",
    )
    ap.add_argument("--accuracy", action="store_true", help="train --epochs epochs, print the test accuracy")
    ap.add_argument("--epochs", type=int, default=2)
    return ap
