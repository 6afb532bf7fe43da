#!/usr/bin/env python3
"""PyTorch peer of bench/bench_cnn.cpp: the same CNN on the CPU, the same data.

    Conv2d(1, 32, 3x3) + ReLU -> MaxPool2d(2x2) -> Flatten -> Linear(5408, 10) (+ softmax),
    Adam (lr 1e-3), sparse categorical cross-entropy (CrossEntropyLoss on the logits).

Fashion-MNIST is read from the IDX .gz files (default /usr/share/datasets/fashion-mnist,
or $LOCUS_FASHION_MNIST_DIR), scaled to [0, 1], NHWC -> NCHW.

Figures (wall-clock, or process CPU time with --clock cpu; torch.set_num_threads(2)
unless --threads), each the median of
--repeats measurements, printed one per line as `name=value` after a `# pytorch_cnn` line:

    train_images_per_second    training at batch 32: gather of a shuffled batch, forward,
                               loss, backward, Adam step, running loss/accuracy sums
                               (like locus's fit), over 64-step epochs of 2,048 images
    infer_images_per_second    forward + softmax of 256 test images under torch.no_grad()
    latency_us                 forward + softmax of one test image under torch.no_grad()

--accuracy trains 2 epochs (batch 32, shuffled) on all 60,000 images and prints the test
accuracy instead (test_accuracy=...).
"""

import argparse
import gzip
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

TRAIN_BATCH = 32
FIT_STEPS = 64  # batches per timed epoch (2,048 images)
FIT_CHUNKS = 8
INFER_BATCH = 256
INFER_CHUNKS = 8
LATENCY_IMAGES = 64


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
    images = read_idx(find(directory, prefix + "-images-idx3-ubyte"))  # [N, 28, 28]
    labels = read_idx(find(directory, prefix + "-labels-idx1-ubyte"))  # [N]
    # NHWC [N, 28, 28, 1] in [0, 1], as locus loads it, then NCHW for PyTorch.
    nhwc = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    return torch.from_numpy(nchw), torch.from_numpy(labels.astype(np.int64))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 13 * 13, 10)

    def forward(self, x):  # logits; softmax is applied at inference
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def make_model():
    torch.manual_seed(42)
    model = CNN()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def train_epoch(model, opt, loss_fn, x, y, gen):
    """One epoch over (x, y) in shuffled batches of 32; returns (mean loss, accuracy)."""
    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    for s in range(0, n, TRAIN_BATCH):
        idx = perm[s : s + TRAIN_BATCH]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss.detach() * xb.shape[0]
            correct += (out.argmax(1) == yb).sum()
    return loss_sum.item() / n, correct.item() / n


def predict(model, x):
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def measure(fn, min_time, clock=time.perf_counter):
    """Runs fn until min_time seconds of `clock` have passed; returns seconds per call."""
    calls, t0 = 0, clock()
    while True:
        fn()
        calls += 1
        el = clock() - t0
        if el >= min_time:
            return el / calls


def benchmark(args, train, test):
    x_train, y_train = train
    x_test, _ = test
    loss_fn = nn.CrossEntropyLoss()
    n = FIT_STEPS * TRAIN_BATCH
    fit_x = [x_train[c * n : (c + 1) * n].contiguous() for c in range(FIT_CHUNKS)]
    fit_y = [y_train[c * n : (c + 1) * n].contiguous() for c in range(FIT_CHUNKS)]
    infer_x = [x_test[c * INFER_BATCH : (c + 1) * INFER_BATCH].contiguous() for c in range(INFER_CHUNKS)]
    one_x = [x_test[i : i + 1].contiguous() for i in range(LATENCY_IMAGES)]

    model, opt = make_model()
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, loss_fn, fit_x[0][: 4 * TRAIN_BATCH], fit_y[0][: 4 * TRAIN_BATCH], gen)  # warm-up
    state = {"i": 0}

    def fit_once():
        c = state["i"] % FIT_CHUNKS
        state["i"] += 1
        train_epoch(model, opt, loss_fn, fit_x[c], fit_y[c], gen)

    def infer_once():
        c = state["i"] % INFER_CHUNKS
        state["i"] += 1
        predict(model, infer_x[c])

    def one_once():
        c = state["i"] % LATENCY_IMAGES
        state["i"] += 1
        predict(model, one_x[c])

    for _ in range(3):
        infer_once()
    for _ in range(20):
        one_once()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    train, infer, lat = [], [], []
    for _ in range(args.repeats):
        train.append(n / measure(fit_once, args.min_time, clock))
        infer.append(INFER_BATCH / measure(infer_once, args.min_time, clock))
        lat.append(measure(one_once, args.min_time, clock) * 1e6)
    print(
        "# pytorch_cnn torch %s, %d threads, CPU, %s time, median of %d"
        % (torch.__version__, torch.get_num_threads(), args.clock, args.repeats)
    )
    print("train_images_per_second=%.1f" % statistics.median(train))
    print("infer_images_per_second=%.1f" % statistics.median(infer))
    print("latency_us=%.2f" % statistics.median(lat))
    sys.stdout.flush()


def accuracy(args, train, test):
    x_train, y_train = train
    x_test, y_test = test
    model, opt = make_model()
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss, acc = train_epoch(model, opt, loss_fn, x_train, y_train, gen)
        secs = time.perf_counter() - t0
        print(
            "# epoch %d/%d: loss %.4f, accuracy %.4f, %.1f s, %.0f images/s"
            % (epoch + 1, args.epochs, loss, acc, secs, x_train.shape[0] / secs)
        )
    model.eval()
    correct = 0
    for s in range(0, x_test.shape[0], INFER_BATCH):
        p = predict(model, x_test[s : s + INFER_BATCH])
        correct += (p.argmax(1) == y_test[s : s + INFER_BATCH]).sum().item()
    print("test_accuracy=%.4f" % (correct / x_test.shape[0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    train = load_split(args.data, "train")
    test = load_split(args.data, "t10k")
    if args.accuracy:
        accuracy(args, train, test)
    else:
        benchmark(args, train, test)


if __name__ == "__main__":
    main()
