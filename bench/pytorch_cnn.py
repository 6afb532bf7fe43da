#!/usr/bin/env python3
"""PyTorch peer of bench/bench_cnn.cpp: the same models on the CPU, the same data.

    --model cnn (default):  Conv2d(1, 32, 3x3) + ReLU -> MaxPool2d(2x2) -> Flatten
                            -> Linear(5408, 10) (+ softmax)
    --model residual:       the residual CNN of examples/residual_cnn.cpp (see below), with
                            nn.BatchNorm2d(momentum=0.1, eps=1e-3), Keras's BN definitions

Both with Keras's initializers (glorot_uniform weights, zero biases), Adam (lr 1e-3,
epsilon 1e-7 as in Keras and locus), sparse categorical cross-entropy (CrossEntropyLoss on
the logits; the softmax is applied at inference).

Fashion-MNIST is read from the IDX .gz files (default /usr/share/datasets/fashion-mnist,
or $LOCUS_FASHION_MNIST_DIR), scaled to [0, 1], NHWC -> NCHW.

Figures (wall-clock, or process CPU time with --clock cpu; torch.set_num_threads(2)
unless --threads), each the median of
--repeats measurements, printed one per line as `name=value` after a `# pytorch_cnn` line:

    train_images_per_second    training at batch 32: gather of a shuffled batch, forward,
                               loss, backward, Adam step, running loss/accuracy sums
                               (like locus's fit), over 64-step epochs of 2,048 images
    infer_images_per_second    forward + softmax of 256 test images under torch.no_grad(),
                               model.eval() (batch normalization with the moving statistics)
    latency_us                 forward + softmax of one test image, the same way

--accuracy trains --epochs epochs (default 2; batch 32, shuffled) on all 60,000 images and
prints the test accuracy instead (test_accuracy=...).
"""

import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from cnn_peer_common import (
    FIT_CHUNKS,
    FIT_STEPS,
    INFER_BATCH,
    INFER_CHUNKS,
    LATENCY_IMAGES,
    TRAIN_BATCH,
    argument_parser,
    clock_of,
    load_split as load_nhwc,
    measure,
)


def load_split(directory, prefix):
    x, y = load_nhwc(directory, prefix)  # NHWC, as locus and Keras take it; NCHW for PyTorch
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y.astype(np.int64))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 13 * 13, 10)

    def forward(self, x):  # logits; softmax is applied at inference
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def conv3x3_same(cin, cout):
    return nn.Conv2d(cin, cout, kernel_size=3, padding="same")


def batch_norm(channels):
    # Keras's BatchNormalization(momentum=0.9, epsilon=1e-3): PyTorch's momentum is the
    # weight of the new batch statistic, Keras's that of the moving average.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1)


class ResidualBlock(nn.Module):
    """y = Conv -> BN -> relu -> Conv -> BN; out = relu(h + y)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1, self.bn1 = conv3x3_same(channels, channels), batch_norm(channels)
        self.conv2, self.bn2 = conv3x3_same(channels, channels), batch_norm(channels)

    def forward(self, h):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(h)))))
        return torch.relu(h + y)


class ResidualCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = conv3x3_same(1, 16), batch_norm(16)
        self.block1 = ResidualBlock(16)
        self.pool = nn.MaxPool2d(2)
        self.conv2, self.bn2 = conv3x3_same(16, 32), batch_norm(32)
        self.block2 = ResidualBlock(32)
        self.conv3, self.bn3 = conv3x3_same(32, 64), batch_norm(64)
        self.block3 = ResidualBlock(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):  # logits; softmax is applied at inference
        h = self.block1(torch.relu(self.bn1(self.conv1(x))))
        h = self.pool(h)  # 14x14x16
        h = self.block2(torch.relu(self.bn2(self.conv2(h))))
        h = self.pool(h)  # 7x7x32
        h = self.block3(torch.relu(self.bn3(self.conv3(h))))  # 7x7x64
        return self.fc(h.mean(dim=(2, 3)))  # GlobalAveragePooling2D


def keras_initializers(model):
    """glorot_uniform kernels and zero biases, as Keras (and locus) initialise them; PyTorch's
    xavier_uniform_ uses the same fans for a conv kernel (in * kh * kw, out * kh * kw)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def make_model(name):
    torch.manual_seed(42)
    model = {"cnn": CNN, "residual": ResidualCNN}[name]()
    keras_initializers(model)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)


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


def benchmark(args, train, test):
    x_train, y_train = train
    x_test, _ = test
    loss_fn = nn.CrossEntropyLoss()
    n = FIT_STEPS * TRAIN_BATCH
    fit_x = [x_train[c * n : (c + 1) * n].contiguous() for c in range(FIT_CHUNKS)]
    fit_y = [y_train[c * n : (c + 1) * n].contiguous() for c in range(FIT_CHUNKS)]
    infer_x = [x_test[c * INFER_BATCH : (c + 1) * INFER_BATCH].contiguous() for c in range(INFER_CHUNKS)]
    one_x = [x_test[i : i + 1].contiguous() for i in range(LATENCY_IMAGES)]

    model, opt = make_model(args.model)
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

    model.eval()  # train_epoch switches back to training mode
    for _ in range(3):
        infer_once()
    for _ in range(20):
        one_once()

    clock = clock_of(args)
    train, infer, lat = [], [], []
    for _ in range(args.repeats):
        train.append(n / measure(fit_once, args.min_time, clock))
        model.eval()  # inference: batch normalization with the moving statistics
        infer.append(INFER_BATCH / measure(infer_once, args.min_time, clock))
        lat.append(measure(one_once, args.min_time, clock) * 1e6)
    print(
        "# pytorch_cnn model %s, torch %s, %d threads (%d inter-op), CPU, %s time, median of %d"
        % (args.model, torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads(), args.clock,
           args.repeats)
    )
    print("train_images_per_second=%.1f" % statistics.median(train))
    print("infer_images_per_second=%.1f" % statistics.median(infer))
    print("latency_us=%.2f" % statistics.median(lat))
    sys.stdout.flush()


def accuracy(args, train, test):
    x_train, y_train = train
    x_test, y_test = test
    model, opt = make_model(args.model)
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
    args = argument_parser(__doc__).parse_args()

    torch.set_num_threads(args.threads)
    train = load_split(args.data, "train")
    test = load_split(args.data, "t10k")
    if args.accuracy:
        accuracy(args, train, test)
    else:
        benchmark(args, train, test)


if __name__ == "__main__":
    main()
