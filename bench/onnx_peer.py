#!/usr/bin/env python3
"""ONNX Runtime peer of bench/bench_inference.cpp: the cnn and residual models of
bench/cnn_peer_common.py as ONNX graphs, in float32 and in int8 (static post-training
quantization), timed with onnxruntime on the CPU.

    onnx_peer.py export --model cnn|residual --out DIR [--keras FILE]
        DIR/<model>.fp32.onnx  input "input" [N, 28, 28, 1] float32 (NHWC, dynamic batch),
                               output "probabilities" [N, 10]
        DIR/<model>.int8.onnx  onnxruntime.quantization.quantize_static of the model after
                               quant_pre_process: QDQ format, per-channel weights, QUInt8
                               activations, QInt8 weights, calibrated on the first 512
                               Fashion-MNIST training images
    onnx_peer.py time --onnx FILE [--threads 2] [--min-time 2] [--repeats 1]

The graph is written with onnx.helper from the weights (no exporter in between, so nothing
but the model is in it): Transpose(NHWC -> NCHW) -> Conv [-> BatchNormalization] -> Relu
-> MaxPool / Add / GlobalAveragePool [-> Transpose(NCHW -> NHWC)] -> Flatten -> Gemm ->
Softmax, as tf2onnx writes a Keras model (ORT's transpose optimizer removes the transposes
around its NHWC int8 kernels). ONNX Runtime folds the BatchNormalization
into the Conv and picks its own layouts (NCHWc for float32 on x86). Weights: --keras FILE (a
.keras file saved by locus or Keras; its Conv2D, BatchNormalization and Dense layers taken in
order, and the ONNX model checked against keras.Model.predict), else Keras's initial values
(glorot_uniform kernels, zero biases, identity batch normalization; speed does not depend
on them). export prints the execution providers and the operators of the graph ORT runs
(the optimized model), so that one sees whether the int8 model became QLinearConv /
QLinearMatMul kernels or fell back to DequantizeLinear + float32 ops.

time prints, after a `# onnx_peer` line, like the other peers (wall-clock, or CPU time with
--clock cpu; each the median of --repeats measurements):

    infer_images_per_second  256 test images per run, 8 distinct chunks in turn
    latency_us               one test image per run (64 images in turn), time per call
    infer_form / latency_form  the faster of session.run (numpy in and out) and
                             run_with_iobinding (input and output OrtValues bound up front)

Session: CPUExecutionProvider, intra_op_num_threads --threads, inter_op_num_threads 1,
sequential execution, ORT_ENABLE_ALL, ORT's defaults otherwise (spinning thread pool).
"""

import argparse
import os
import statistics
import sys
import tempfile
from collections import Counter

import numpy as np

from cnn_peer_common import (
    INFER_BATCH,
    INFER_CHUNKS,
    LATENCY_IMAGES,
    MODELS_HELP,
    load_split,
    measure,
)

CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 64
OPSET = 17
INPUT, OUTPUT = "input", "probabilities"


# ---------------------------------------------------------------------------- weights


def glorot_uniform(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


class Weights:
    """The model's weights in Keras's layouts, consumed in layer order."""

    def __init__(self, convs, bns, dense):
        self.convs, self.bns, self.dense = list(convs), list(bns), dense

    @staticmethod
    def initial(model):
        rng = np.random.default_rng(42)
        chans = [(1, 32)] if model == "cnn" else [(1, 16)] + [(16, 16)] * 2 + [(16, 32)] + [(32, 32)] * 2
        if model == "residual":
            chans += [(32, 64)] + [(64, 64)] * 2
        convs = [(glorot_uniform(rng, (3, 3, ci, co), 9 * ci, 9 * co), np.zeros(co, np.float32)) for ci, co in chans]
        bns = []
        if model == "residual":  # gamma, beta, moving mean, moving variance
            bns = [tuple(np.full(co, v, np.float32) for v in (1, 0, 0, 1)) for _, co in chans]
        units = 13 * 13 * 32 if model == "cnn" else 64
        return Weights(convs, bns, (glorot_uniform(rng, (units, 10), units, 10), np.zeros(10, np.float32)))

    @staticmethod
    def from_keras(model):
        kinds = {"Conv2D": [], "BatchNormalization": [], "Dense": []}
        for layer in model.layers:
            if type(layer).__name__ in kinds:
                kinds[type(layer).__name__].append(tuple(np.asarray(w, np.float32) for w in layer.get_weights()))
        if len(kinds["Dense"]) != 1:
            raise ValueError("expected one Dense layer, found %d" % len(kinds["Dense"]))
        return Weights(kinds["Conv2D"], kinds["BatchNormalization"], kinds["Dense"][0])


# ---------------------------------------------------------------------------- graph


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, value):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type, inputs, **attrs):
        from onnx import helper

        self.n += 1
        out = "%s_%d" % (op_type.lower(), self.n)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, w, padding):
        kernel, bias = self.take(w.convs)
        pads = [1, 1, 1, 1] if padding == "same" else [0, 0, 0, 0]
        k = self.const("conv%d_kernel" % self.n, kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        b = self.const("conv%d_bias" % self.n, bias)
        return self.op("Conv", [x, k, b], kernel_shape=[3, 3], pads=pads, strides=[1, 1])

    def bn(self, x, w):
        gamma, beta, mean, var = self.take(w.bns)
        names = [
            self.const("bn%d_%s" % (self.n, s), v)
            for s, v in zip(("scale", "bias", "mean", "var"), (gamma, beta, mean, var))
        ]
        return self.op("BatchNormalization", [x] + names, epsilon=1e-3)

    @staticmethod
    def take(queue):
        if not queue:
            raise ValueError("the weights have fewer layers than the model")
        return queue.pop(0)


def build_onnx(model, w):
    """The ONNX model of `model` ("cnn" or "residual") with weights `w` (consumed)."""
    from onnx import TensorProto, checker, helper

    g = Graph()
    x = g.op("Transpose", [INPUT], perm=[0, 3, 1, 2])  # NHWC -> NCHW
    if model == "cnn":
        h = g.op("MaxPool", [g.op("Relu", [g.conv(x, w, "valid")])], kernel_shape=[2, 2], strides=[2, 2])
        h = g.op("Transpose", [h], perm=[0, 2, 3, 1])  # back to NHWC: Keras's Flatten order (h, w, c)
    else:

        def conv_bn(h, relu=True):
            h = g.bn(g.conv(h, w, "same"), w)
            return g.op("Relu", [h]) if relu else h

        def block(h):
            return g.op("Relu", [g.op("Add", [h, conv_bn(conv_bn(h), relu=False)])])

        h = block(conv_bn(x))
        h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        h = block(conv_bn(h))
        h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        h = g.op("GlobalAveragePool", [block(conv_bn(h))])
    if w.convs or w.bns:
        raise ValueError("the weights have more layers than the model")
    flat = g.op("Flatten", [h], axis=1)
    kernel, bias = w.dense
    logits = g.op("Gemm", [flat, g.const("dense_kernel", kernel), g.const("dense_bias", bias)])
    g.nodes.append(helper.make_node("Softmax", [logits], [OUTPUT], name="softmax", axis=-1))
    graph = helper.make_graph(
        g.nodes,
        model,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 10])],
        g.inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="locus onnx_peer")
    m.ir_version = 8
    checker.check_model(m, full_check=True)
    return m


# ---------------------------------------------------------------------------- sessions


def session(path, threads, optimized_path=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # no warning about hardware-specific optimized models
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def kernels(path, threads):
    """(providers, 'op xN, ...') of the graph ORT runs for `path` (its optimized model)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        opt = os.path.join(tmp, "optimized.onnx")
        s = session(path, threads, opt)
        ops = Counter((n.domain + "." if n.domain else "") + n.op_type for n in onnx.load(opt).graph.node)
    return s.get_providers(), ", ".join("%s x%d" % (k, v) if v > 1 else k for k, v in sorted(ops.items()))


def run_all(sess, x, batch=INFER_BATCH):
    return np.concatenate([sess.run([OUTPUT], {INPUT: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


# ---------------------------------------------------------------------------- export


class Calibration:
    """onnxruntime.quantization.CalibrationDataReader over the first 512 training images."""

    def __init__(self, images):
        self.batches = iter(
            [{INPUT: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)]
        )

    def get_next(self):
        return next(self.batches, None)


def export(args):
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    os.makedirs(args.out, exist_ok=True)
    keras_model = None
    if args.keras:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        keras_model = keras.saving.load_model(args.keras, compile=False)
        weights = Weights.from_keras(keras_model)
    else:
        weights = Weights.initial(args.model)
    fp32 = os.path.join(args.out, args.model + ".fp32.onnx")
    int8 = os.path.join(args.out, args.model + ".int8.onnx")
    onnx.save(build_onnx(args.model, weights), fp32)

    x_train, _ = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    x_check, y_check = x_test[: args.check_images], y_test[: args.check_images]
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(fp32, pre)  # shape inference + ORT's basic fusions (Conv + BN)
        quantize_static(
            pre,
            int8,
            Calibration(np.ascontiguousarray(x_train[:CALIBRATION_IMAGES])),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, args.calibration),
        )

    print(
        "# onnx_peer export %s, onnxruntime %s, onnx %s, opset %d, weights %s"
        % (args.model, ort.__version__, onnx.__version__, OPSET, args.keras or "Keras's initial values (seed 42)")
    )
    print(
        "# calibration: %d training images, %s, QDQ, per-channel, activations QUInt8, weights QInt8"
        % (CALIBRATION_IMAGES, args.calibration)
    )
    probs = {}
    for path in (fp32, int8):
        providers, ops = kernels(path, args.threads)
        print("%s: %d bytes, providers %s" % (path, os.path.getsize(path), providers))
        print("  ORT runs (optimized graph, ORT_ENABLE_ALL): %s" % ops)
        probs[path] = run_all(session(path, args.threads), x_check)
    agree = (probs[fp32].argmax(1) == probs[int8].argmax(1)).mean()
    acc = {p: (v.argmax(1) == y_check).mean() for p, v in probs.items()}
    print(
        "# on %d test images: int8 top-1 agrees with fp32 on %.4f; accuracy fp32 %.4f, int8 %.4f; "
        "max |p_int8 - p_fp32| %.3g"
        % (len(x_check), agree, acc[fp32], acc[int8], np.abs(probs[int8] - probs[fp32]).max())
    )
    if keras_model is not None:
        ref = keras_model.predict(x_check, batch_size=INFER_BATCH, verbose=0)
        diff = np.abs(ref - probs[fp32]).max()
        print("# max |p_onnx_fp32 - p_keras| over %d test images: %.3g" % (len(x_check), diff))
        if diff > 1e-4:
            sys.exit("onnx_peer.py: the ONNX model does not reproduce %s (max difference %.3g)" % (args.keras, diff))


# ---------------------------------------------------------------------------- time


def forms(sess, inputs):
    """name -> (list of per-input calls): session.run and run_with_iobinding."""
    import onnxruntime as ort

    def run(x):
        return lambda: sess.run([OUTPUT], {INPUT: x})

    def bound(x):
        b = sess.io_binding()
        b.bind_ortvalue_input(INPUT, ort.OrtValue.ortvalue_from_numpy(x))
        b.bind_ortvalue_output(OUTPUT, ort.OrtValue.ortvalue_from_shape_and_type([len(x), 10], np.float32))
        return lambda: sess.run_with_iobinding(b)

    return {"run": [run(x) for x in inputs], "iobinding": [bound(x) for x in inputs]}


def cycling(calls):
    state = {"i": 0}

    def once():
        calls[state["i"] % len(calls)]()
        state["i"] += 1

    return once


def time_model(args):
    import time

    import onnxruntime as ort

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    x_test, _ = load_split(args.data, "t10k")
    infer_x = [np.ascontiguousarray(x_test[c * INFER_BATCH : (c + 1) * INFER_BATCH]) for c in range(INFER_CHUNKS)]
    one_x = [np.ascontiguousarray(x_test[i : i + 1]) for i in range(LATENCY_IMAGES)]
    providers, ops = kernels(args.onnx, args.threads)
    sess = session(args.onnx, args.threads)
    infer_forms, lat_forms = forms(sess, infer_x), forms(sess, one_x)
    for calls, warm in ((infer_forms, 3), (lat_forms, 20)):
        for f in calls.values():
            once = cycling(f)
            for _ in range(warm):
                once()
    infer = {k: [] for k in infer_forms}
    lat = {k: [] for k in lat_forms}
    for _ in range(args.repeats):
        for k, f in infer_forms.items():
            infer[k].append(INFER_BATCH / measure(cycling(f), args.min_time, clock))
        for k, f in lat_forms.items():
            lat[k].append(measure(cycling(f), args.min_time, clock) * 1e6)
    infer = {k: statistics.median(v) for k, v in infer.items()}
    lat = {k: statistics.median(v) for k, v in lat.items()}
    best_infer, best_lat = max(infer, key=infer.get), min(lat, key=lat.get)
    print(
        "# onnx_peer %s, onnxruntime %s, providers %s, intra-op %d / inter-op 1 threads, ORT_ENABLE_ALL, "
        "%s time, median of %d"
        % (os.path.basename(args.onnx), ort.__version__, ",".join(providers), args.threads, args.clock, args.repeats)
    )
    print("infer_images_per_second=%.1f" % infer[best_infer])
    print("latency_us=%.2f" % lat[best_lat])
    print("infer_form=%s" % best_infer)
    print("latency_form=%s" % best_lat)
    print(
        "# infer (images/s): "
        + ", ".join("%s %.1f" % kv for kv in infer.items())
        + "; latency (us): "
        + ", ".join("%s %.2f" % kv for kv in lat.items())
    )
    print("# kernels: " + ops)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=MODELS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data", default=os.environ.get("LOCUS_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
    )
    common.add_argument("--threads", type=int, default=2, help="intra-op threads (inter-op: 1)")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", parents=[common], help="write DIR/<model>.fp32.onnx and DIR/<model>.int8.onnx")
    ex.add_argument("--model", choices=("cnn", "residual"), required=True)
    ex.add_argument("--out", required=True, help="directory")
    ex.add_argument("--keras", help="a .keras file whose weights to use (default: Keras's initial values)")
    ex.add_argument(
        "--calibration",
        choices=("MinMax", "Percentile", "Entropy"),
        default="MinMax",
        help="onnxruntime.quantization.CalibrationMethod (default MinMax, ORT's default)",
    )
    ex.add_argument("--check-images", type=int, default=2048, help="test images for the fp32/int8 agreement")
    tm = sub.add_parser("time", parents=[common], help="print infer_images_per_second= and latency_us=")
    tm.add_argument("--onnx", required=True)
    tm.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    tm.add_argument("--repeats", type=int, default=1, help="measurements per figure (median reported)")
    tm.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    export(args) if args.command == "export" else time_model(args)


if __name__ == "__main__":
    main()
