#!/usr/bin/env python3
"""Keras 3 (TensorFlow backend) peer of bench/bench_cnn.cpp: the same models on the CPU,
the same data, the same figures as bench/pytorch_cnn.py.

    --model cnn (default):  Conv2D(32, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(10, softmax)
    --model residual:       the residual CNN of examples/residual_cnn.cpp (see below)

Adam(1e-3), sparse categorical cross-entropy, accuracy metric; Keras's defaults otherwise
(initializers, BatchNormalization(momentum=0.9, epsilon=1e-3), jit_compile="auto", which
Keras resolves to no XLA on a CPU-only machine; --jit-compile overrides it).

Fashion-MNIST is read from the IDX .gz files (default /usr/share/datasets/fashion-mnist,
or $LOCUS_FASHION_MNIST_DIR) as NHWC in [0, 1], and held as tf tensors (as the other sides
hold theirs in their own tensors).

Threads: tf.config.threading intra-op and inter-op parallelism (2 and 2 unless --threads /
--inter-op-threads), set before TensorFlow runs any op (it refuses changes afterwards).
oneDNN is TensorFlow's default on x86 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns it off.

Figures (wall-clock, or process CPU time with --clock cpu), each the median of --repeats
measurements, printed one per line as `name=value` after a `# keras_cnn` line:

    train_images_per_second    model.fit(x, y, batch_size=32, epochs=1, shuffle=True,
                               verbose=0) over 64-step epochs of 2,048 images
    infer_images_per_second    256 test images to softmax probabilities: the faster of
                               model.predict(x, batch_size=256) and the fastest direct form,
                               chosen by a short probe (each min-time/4) among
                                 predict_on_batch   model.predict_on_batch(x)
                                 tf.function        model(x, training=False) in a tf.function
                                 tf.function+xla    the same with jit_compile=True
                                 eager_call         model(x, training=False), eagerly
                               `infer_form=` names the figure's form (or `predict`)
    latency_us                 one test image the same way (`latency_form=`)

plus predict_infer_images_per_second= and predict_latency_us= (model.predict alone) and
`#` note lines with every form's figure and the probe.

A tf.function or eager call returns with its result computed (TensorFlow's eager execution
is synchronous); predict and predict_on_batch also convert it to numpy.

--accuracy trains --epochs epochs (default 2; batch 32, shuffled) on all 60,000 images and
prints the test accuracy instead (test_accuracy=...).
"""

import os
import statistics
import sys
import time

from cnn_peer_common import (
    FIT_CHUNKS,
    FIT_STEPS,
    INFER_BATCH,
    INFER_CHUNKS,
    LATENCY_IMAGES,
    TRAIN_BATCH,
    argument_parser,
    clock_of,
    load_split,
    measure,
)


def parse_args():
    ap = argument_parser(__doc__)
    ap.add_argument("--inter-op-threads", type=int, default=None, help="default: --threads")
    ap.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="model.compile(jit_compile=...): XLA for fit and predict (auto: Keras's choice)",
    )
    return ap.parse_args()


args = parse_args()
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] != "tensorflow":
    sys.exit("keras_cnn.py: KERAS_BACKEND must be tensorflow (it is %s)" % os.environ["KERAS_BACKEND"])

import tensorflow as tf  # noqa: E402  (after the arguments: --help without loading TensorFlow)

# Before any op: TensorFlow fixes its thread pools when the runtime starts.
tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(
    args.threads if args.inter_op_threads is None else args.inter_op_threads
)

import keras  # noqa: E402
from keras import layers  # noqa: E402


def onednn_state():
    """Whether TensorFlow's oneDNN ops are on (they read TF_ENABLE_ONEDNN_OPTS), and why."""
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        from tensorflow.python.util import _pywrap_util_port

        on = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        on = "unknown"
    return "oneDNN %s (TF_ENABLE_ONEDNN_OPTS %s)" % (on, "unset" if env is None else "=" + env)


def os_threads():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return -1


def residual_block(h, filters):
    y = layers.Conv2D(filters, 3, padding="same")(h)
    y = layers.BatchNormalization(momentum=0.9)(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    y = layers.BatchNormalization(momentum=0.9)(y)
    return layers.ReLU()(layers.Add()([h, y]))


def make_model(name, jit_compile):
    keras.utils.set_random_seed(42)
    if name == "cnn":
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Conv2D(32, 3, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(10, activation="softmax"),
            ]
        )
    else:
        x = keras.Input((28, 28, 1))
        h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(layers.Conv2D(16, 3, padding="same")(x)))
        h = residual_block(h, 16)
        h = layers.MaxPooling2D(2)(h)  # 14x14x16
        h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(layers.Conv2D(32, 3, padding="same")(h)))
        h = residual_block(h, 32)
        h = layers.MaxPooling2D(2)(h)  # 7x7x32
        h = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(layers.Conv2D(64, 3, padding="same")(h)))
        h = residual_block(h, 64)  # 7x7x64
        y = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(h))
        model = keras.Model(x, y)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile={"auto": "auto", "true": True, "false": False}[jit_compile],
    )
    return model


def fit_epoch(model, x, y, epochs=1):
    return model.fit(x, y, batch_size=TRAIN_BATCH, epochs=epochs, shuffle=True, verbose=0)


def call_forms(model):
    """The direct inference calls, besides model.predict: name -> f(x)."""
    traced = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True, reduce_retracing=True)
    return {
        "predict_on_batch": model.predict_on_batch,
        "tf.function": traced,
        "tf.function+xla": xla,  # tf.function(jit_compile=True)
        "eager_call": lambda x: model(x, training=False),
    }


def cycling(inputs, f):
    state = {"i": 0}

    def once():
        x = inputs[state["i"] % len(inputs)]
        state["i"] += 1
        return f(x)

    return once


def pick_fastest(forms, inputs, warmups, probe_time, clock):
    """Warms every form up, times each for probe_time; returns {name: seconds per call}."""
    times = {}
    for name, f in forms.items():
        once = cycling(inputs, f)
        for _ in range(warmups):
            once()
        times[name] = measure(once, probe_time, clock)
    return times


def benchmark(args, train, test):
    x_train, y_train = train
    x_test, _ = test
    n = FIT_STEPS * TRAIN_BATCH
    fit_x = [tf.constant(x_train[c * n : (c + 1) * n]) for c in range(FIT_CHUNKS)]
    fit_y = [tf.constant(y_train[c * n : (c + 1) * n].astype("int32")) for c in range(FIT_CHUNKS)]
    infer_x = [tf.constant(x_test[c * INFER_BATCH : (c + 1) * INFER_BATCH]) for c in range(INFER_CHUNKS)]
    one_x = [tf.constant(x_test[i : i + 1]) for i in range(LATENCY_IMAGES)]

    model = make_model(args.model, args.jit_compile)
    fit_epoch(model, fit_x[0][: 4 * TRAIN_BATCH], fit_y[0][: 4 * TRAIN_BATCH])  # warm-up: traces fit's step
    clock = clock_of(args)
    probe_time = max(0.05, args.min_time / 4)

    predict_batch = lambda x: model.predict(x, batch_size=INFER_BATCH, verbose=0)  # noqa: E731
    predict_one = lambda x: model.predict(x, batch_size=1, verbose=0)  # noqa: E731
    forms = call_forms(model)
    infer_probe = pick_fastest(forms, infer_x, 3, probe_time, clock)
    lat_probe = pick_fastest(forms, one_x, 20, probe_time, clock)
    infer_form = min(infer_probe, key=infer_probe.get)
    lat_form = min(lat_probe, key=lat_probe.get)
    for f, xs, w in ((predict_batch, infer_x, 3), (predict_one, one_x, 20)):
        once = cycling(xs, f)
        for _ in range(w):
            once()

    state = {"c": 0}

    def fit_once():
        c = state["c"] % FIT_CHUNKS
        state["c"] += 1
        fit_epoch(model, fit_x[c], fit_y[c])

    train, busy = [], []
    infer = {"predict": [], infer_form: []}
    lat = {"predict": [], lat_form: []}
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        train.append(n / measure(fit_once, args.min_time, clock))
        busy.append((time.process_time() - c0) / (time.perf_counter() - w0))
        infer["predict"].append(INFER_BATCH / measure(cycling(infer_x, predict_batch), args.min_time, clock))
        infer[infer_form].append(INFER_BATCH / measure(cycling(infer_x, forms[infer_form]), args.min_time, clock))
        lat["predict"].append(measure(cycling(one_x, predict_one), args.min_time, clock) * 1e6)
        lat[lat_form].append(measure(cycling(one_x, forms[lat_form]), args.min_time, clock) * 1e6)

    infer = {k: statistics.median(v) for k, v in infer.items()}
    lat = {k: statistics.median(v) for k, v in lat.items()}
    best_infer = max(infer, key=infer.get)
    best_lat = min(lat, key=lat.get)
    print(
        "# keras_cnn model %s, tensorflow %s, keras %s, %s, intra-op %d / inter-op %d threads, "
        "jit_compile %s, CPU, %s time, median of %d"
        % (
            args.model,
            tf.__version__,
            keras.__version__,
            onednn_state(),
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
            model.jit_compile,
            args.clock,
            args.repeats,
        )
    )
    print("train_images_per_second=%.1f" % statistics.median(train))
    print("infer_images_per_second=%.1f" % infer[best_infer])
    print("latency_us=%.2f" % lat[best_lat])
    print("infer_form=%s" % best_infer)
    print("latency_form=%s" % best_lat)
    print("predict_infer_images_per_second=%.1f" % infer["predict"])
    print("predict_latency_us=%.2f" % lat["predict"])
    print(
        "# infer (images/s): "
        + ", ".join("%s %.1f%s" % (k, v, " (figure)" if k == best_infer else "") for k, v in infer.items())
        + "; probe: "
        + ", ".join("%s %.1f" % (k, INFER_BATCH / s) for k, s in infer_probe.items())
    )
    print(
        "# latency (us): "
        + ", ".join("%s %.1f%s" % (k, v, " (figure)" if k == best_lat else "") for k, v in lat.items())
        + "; probe: "
        + ", ".join("%s %.1f" % (k, s * 1e6) for k, s in lat_probe.items())
    )
    print(
        "# training: process CPU time / wall time %.2f (median), %d OS threads, %d CPUs"
        % (statistics.median(busy), os_threads(), os.cpu_count() or 0)
    )
    sys.stdout.flush()


def accuracy(args, train, test):
    x_train, y_train = train
    x_test, y_test = test
    model = make_model(args.model, args.jit_compile)
    xs, ys = tf.constant(x_train), tf.constant(y_train.astype("int32"))
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        h = fit_epoch(model, xs, ys).history
        secs = time.perf_counter() - t0
        print(
            "# epoch %d/%d: loss %.4f, accuracy %.4f, %.1f s, %.0f images/s"
            % (epoch + 1, args.epochs, h["loss"][-1], h["accuracy"][-1], secs, x_train.shape[0] / secs)
        )
    p = model.predict(x_test, batch_size=INFER_BATCH, verbose=0)
    print("test_accuracy=%.4f" % (p.argmax(1) == y_test).mean())


def main():
    train = load_split(args.data, "train")
    test = load_split(args.data, "t10k")
    if args.accuracy:
        accuracy(args, train, test)
    else:
        benchmark(args, train, test)


if __name__ == "__main__":
    main()
