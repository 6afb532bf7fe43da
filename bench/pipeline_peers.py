#!/usr/bin/env python3
"""Input-pipeline throughput of tf.data and PyTorch's DataLoader, the peers of locus's
bench_data_pipeline (pipeline_throughput), doing the same work per epoch:

    read the uncompressed Fashion-MNIST training IDX files from disk (page cache is fine),
    shuffle all 60,000 records (seeded, reshuffled every epoch), batch (256, remainder
    kept), normalise each batch: x float32 [N, 28, 28, 1] = (pixels / 255 - 0.2860) / 0.3530,
    labels int32 [N]; the consumer reads x[0, 0, 0, 0] of every batch.

    tf.data:           FixedLengthRecordDataset x2 (raw records) -> zip -> shuffle(60000,
                       seed, reshuffle_each_iteration) -> batch -> map(decode_raw + normalise
                       on the whole batch, AUTOTUNE) -> prefetch(AUTOTUNE), with --threads
                       intra/inter-op threads and a private pool of that size. Decoding per
                       batch rather than per record (decode_raw before shuffle) is the fast
                       form: on 2 cores ~94-150k images/s against ~12-15k per record.
    torch_dataloader:  map-style Dataset over numpy.memmap of the two files with a batched
                       __getitems__ (DataLoader, torch >= 2.2, hands it the whole batch's
                       indices: one fancy-indexing read of each memmap per batch), DataLoader
                       (shuffle, 2 workers, persistent, seeded generator); the normalisation
                       runs in collate_fn, i.e. in the workers; torch.set_num_threads

One warm-up epoch, then --epochs timed epochs per side. Prints `tf_data <images/s>` and
`torch_dataloader <images/s>` (median over the epochs of images / epoch seconds), and
`#` lines with the versions and settings.

    python3 bench/pipeline_peers.py --data DIR [--epochs 3] [--threads 2] [--batch 256]
                                    [--skip-tf] [--skip-torch]
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
IMAGE_HEADER, LABEL_HEADER, PIXELS = 16, 8, 28 * 28
MEAN, STD = 0.2860, 0.3530
SEED = 42


def record_count(data):
    n = (os.path.getsize(os.path.join(data, IMAGES)) - IMAGE_HEADER) // PIXELS
    assert n == os.path.getsize(os.path.join(data, LABELS)) - LABEL_HEADER, "image/label counts differ"
    return n


def timed_epochs(epoch, epochs, n):
    """Runs one warm-up epoch and `epochs` timed ones; returns the median images/s."""
    rates = []
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        seen = epoch()
        dt = time.perf_counter() - t0
        assert seen == n, f"epoch delivered {seen} images, expected {n}"
        if e > 0:  # epoch 0 warms up (worker start, graph tracing, page cache)
            rates.append(n / dt)
    return statistics.median(rates)


# ---- PyTorch -------------------------------------------------------------------------


class IdxDataset:
    """Map-style dataset over memmaps of the IDX files. The memmaps are opened lazily in
    each worker: pickling a memmap to a worker would copy the whole array into memory.

    __getitems__ is the batched form: with auto-collation the DataLoader's fetcher
    (torch/utils/data/_utils/fetch.py, torch >= 2.2) calls it with the batch's indices and
    hands its result to collate_fn, so a batch is one fancy-indexing read of each memmap
    instead of batch-size __getitem__ calls."""

    def __init__(self, data):
        self.data, self.n = data, record_count(data)
        self.images = self.labels = None

    def __len__(self):
        return self.n

    def _open(self):
        if self.images is None:
            self.images = np.memmap(os.path.join(self.data, IMAGES), np.uint8, "r", IMAGE_HEADER, (self.n, PIXELS))
            self.labels = np.memmap(os.path.join(self.data, LABELS), np.uint8, "r", LABEL_HEADER, (self.n,))

    def __getitem__(self, i):
        self._open()
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):
        """(uint8 [B, 784], uint8 [B]) for the batch's indices, in their (shuffled) order."""
        self._open()
        idx = np.asarray(indices, dtype=np.intp)
        return np.asarray(self.images[idx]), np.asarray(self.labels[idx])  # copies out of the memmaps


def collate_normalise(batch):
    import torch

    if isinstance(batch, tuple):  # from __getitems__: (images [B, 784], labels [B])
        x, y = batch
    else:  # a list of __getitem__ samples (a DataLoader that does not call __getitems__)
        x, y = np.stack([s[0] for s in batch]), np.array([s[1] for s in batch])
    x = torch.from_numpy(x).to(torch.float32).div_(255).sub_(MEAN).div_(STD).view(-1, 28, 28, 1)
    y = torch.from_numpy(y.astype(np.int32))
    return x, y


def bench_torch(args, n):
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(args.threads)
    loader = DataLoader(IdxDataset(args.data), batch_size=args.batch, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(SEED), persistent_workers=True,
                        collate_fn=collate_normalise)

    def epoch():
        seen = 0
        for x, y in loader:
            float(x[0, 0, 0, 0])  # touch the batch
            seen += y.shape[0]
        return seen

    print(f"# torch {torch.__version__}: DataLoader batch {args.batch}, num_workers 2, persistent, "
          f"collate_fn normalises, set_num_threads({torch.get_num_threads()})")
    print("# torch Dataset: batched __getitems__(indices), one fancy-indexing read of the memmaps "
          "per batch; normalisation in collate_fn in the workers")
    rate = timed_epochs(epoch, args.epochs, n)
    del loader  # stops the persistent workers before TensorFlow starts its threads
    return rate


# ---- tf.data -------------------------------------------------------------------------


def import_tensorflow():
    """absl writes oneDNN's notice to fd 2 during the import, before TF_CPP_MIN_LOG_LEVEL
    applies: silence fd 2 for the import only (an ImportError still shows, raised after)."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tf


def bench_tf(args, n):
    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    def records(name, header, size):  # raw byte-string records, re-read by every epoch's iterator
        return tf.data.FixedLengthRecordDataset(os.path.join(args.data, name), record_bytes=size, header_bytes=header)

    def decode_normalise(x, y):  # on a whole batch: x string [B] (784 bytes each), y string [B] (1 byte)
        x = tf.io.decode_raw(x, tf.uint8)  # [B, 784]
        y = tf.io.decode_raw(y, tf.uint8)  # [B, 1]
        x = (tf.cast(x, tf.float32) / 255.0 - MEAN) / STD
        return tf.reshape(x, [-1, 28, 28, 1]), tf.cast(tf.reshape(y, [-1]), tf.int32)

    ds = tf.data.Dataset.zip((records(IMAGES, IMAGE_HEADER, PIXELS), records(LABELS, LABEL_HEADER, 1)))
    ds = ds.shuffle(n, seed=SEED, reshuffle_each_iteration=True).batch(args.batch)
    ds = ds.map(decode_normalise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    ds = ds.with_options(options)

    def epoch():
        seen = 0
        for x, y in ds:  # a new iterator: reshuffles, reads the files again
            float(x[0, 0, 0, 0])  # touch the batch
            seen += int(y.shape[0])
        return seen

    th = tf.config.threading
    print(f"# tensorflow {tf.__version__}: tf.data batch {args.batch}, intra-op "
          f"{th.get_intra_op_parallelism_threads()} / inter-op {th.get_inter_op_parallelism_threads()} "
          f"threads, private_threadpool_size {args.threads}")
    print(f"# tf.data pipeline: FixedLengthRecordDataset x2 (raw records) -> zip -> shuffle({n}, seed {SEED}, "
          f"reshuffle_each_iteration) -> batch({args.batch}) -> map(decode_raw + normalise per batch, "
          f"AUTOTUNE) -> prefetch(AUTOTUNE)")
    return timed_epochs(epoch, args.epochs, n)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="directory with the uncompressed train-*-ubyte files")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--skip-tf", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    args = p.parse_args()
    n = record_count(args.data)
    print(f"# pipeline_peers: {n} images from {args.data}, batch {args.batch}, shuffle buffer {n}, "
          f"seed {SEED}, 1 warm-up + {args.epochs} timed epochs, median; python {sys.version.split()[0]}, "
          f"numpy {np.__version__}")
    # PyTorch first: its workers fork before TensorFlow's thread pools exist.
    if not args.skip_torch:
        print(f"torch_dataloader {bench_torch(args, n):.0f}", flush=True)
    if not args.skip_tf:
        print(f"tf_data {bench_tf(args, n):.0f}", flush=True)


if __name__ == "__main__":  # workers started by spawn/forkserver import this module
    main()
