#!/usr/bin/env python3
"""Writes the Keras reference fixtures of locus's loader parity tests.

Usage (from the repository root):

    python3 tools/keras_fixtures/make_fixtures.py tests/data/keras

Needs Python 3 with keras 3 (TensorFlow backend), tensorflow, h5py and numpy; the Keras 2
files (NAME.k2.h5) also need tf_keras (`pip install --user tf_keras`); without it they are
left out with a note. Python only makes these files: neither locus nor its tests run it.

For every model NAME it writes into the output directory:

  NAME.keras          model.save (Keras 3 zip: metadata.json, config.json, model.weights.h5)
  NAME.h5             model.save in the legacy HDF5 format (model_weights/LAYER/...)
  NAME.weights.h5     model.save_weights (Keras 3 layout: layers/<snake_case class>/vars/i)
  NAME.input.npy      float32, a batch of 3 samples (NAME.input0.npy, NAME.input1.npy, ...
                      for a model with several inputs); Embedding ids are integer-valued
                      floats within the vocabulary
  NAME.output.npy     float32, model.predict of the inputs (NAME.output0.npy, ... for
                      several outputs)

and a manifest.json: a list of {"name", "kind": "Sequential"|"Functional", "inputs",
"outputs", "layers": [the class names in the configuration, nested models included, in
order of first appearance], "optimizer": class name or null, "k2": the Keras 2 files
written for it (below)}.

The models are small (8x8 images, a few channels) and every weight is set to random values
from a fixed seed (kernels ~ N(0, (1.3/sqrt(fan_in))^2), 2.5 instead of 1.3 in
seq_dense_activations, biases and betas ~ N(0, 0.2^2), gammas ~
U(0.5, 1.5), BatchNormalization moving means ~ N(0, 0.5^2) and moving variances ~
U(0.5, 1.5)), so that nothing depends on Keras's initialisers:

  seq_cnn                 Sequential: Conv2D, BatchNormalization, MaxPooling2D, Dropout,
                          Flatten, Dense (default layer names)
  seq_dense_activations   Sequential: one Dense(5) per activation both Keras and locus
                          know, and Activation layers
  func_residual           Functional: residual block (Conv2D, BatchNormalization, ReLU, Add,
                          1x1 shortcut), ZeroPadding2D, AveragePooling2D, DepthwiseConv2D,
                          SeparableConv2D, GlobalAveragePooling2D, Dense (named layers)
  func_merge              Functional, two inputs and two outputs: Add, Subtract, Multiply,
                          Concatenate, LeakyReLU, ELU, Softmax, Reshape, GlobalMaxPooling2D
  func_sequence           Functional: Embedding, Conv1D, LayerNormalization,
                          GlobalAveragePooling1D, Dense
  nested                  Functional holding a Sequential sub-model "inner" and a Functional
                          sub-model "block" (nested weight paths)
  seq_trained_adam        Sequential trained 2 epochs with Adam (with a BatchNormalization,
  seq_trained_rmsprop     whose moving statistics the optimizer does not track), RMSprop
  seq_trained_sgd         (momentum=0.5, centered=True) and SGD (momentum=0.9): the files
                          keep the optimizer state; NAME.optimizer.json lists
                          model.optimizer.variables in order as [{"path", "shape"}, ...]

With tf_keras (Keras 2) also NAME.k2.h5 for seq_cnn and func_residual (the same weights,
written by Keras 2: weight names end in ':0', the names are variable-length strings as
h5py 3 writes them) and NAME.k2.output.npy, Keras 2's predict of NAME.input.npy; and
seq_cnn.k2fixed.h5 (with seq_cnn.k2fixed.output.npy), seq_cnn.k2.h5 with every string
attribute rewritten as a fixed-length byte string, as Keras 2 files written with h5py 2
have them.

And the files locus must refuse (no inputs or outputs):

  unsupported_lstm.keras  a Sequential with an LSTM layer named "my_lstm"
  channels_first.keras    a Conv2D with data_format="channels_first"
  float16.keras           a Dense layer with dtype float16 (float16 weights)
  not_a_model.keras       a .keras whose config.json is a Dense layer, not a model
"""

import json
import os
import shutil
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
for _v in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

BATCH = 3

# The activation names both Keras 3 and locus accept (include/locus/nn/activation.hpp).
# "swish" is left out: Keras 3 resolves it to silu and writes "silu", so a Dense made with
# "swish" would be saved exactly as the "silu" one.
# The chain ends with the linear one, so that the output keeps the spread of the values.
ACTIVATIONS = ["relu", "sigmoid", "tanh", "softmax", "gelu", "silu", "elu", "selu", "leaky_relu",
               "softplus", "hard_sigmoid", "linear"]


# ---- random weights -----------------------------------------------------------------------

def random_value(name, shape, rng, gain=1.3):
    """A random value for a variable called `name` (kernel, bias, gamma, ...); kernels have
    a standard deviation of gain / sqrt(fan_in)."""
    shape = tuple(int(d) for d in shape)
    if name == "moving_variance":
        v = rng.uniform(0.5, 1.5, shape)
    elif name == "moving_mean":
        v = rng.normal(0.0, 0.5, shape)
    elif name == "gamma":
        v = rng.uniform(0.5, 1.5, shape)
    elif name in ("beta", "bias"):
        v = rng.normal(0.0, 0.2, shape)
    elif name == "embeddings":
        v = rng.normal(0.0, 1.0, shape)
    elif name == "depthwise_kernel":
        # [kh, kw, channels, multiplier]: each output sees kh * kw inputs.
        v = rng.normal(0.0, 1.0 / np.sqrt(shape[0] * shape[1]), shape)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[:-1]))
        v = rng.normal(0.0, gain / np.sqrt(fan_in), shape)
    else:
        v = rng.normal(0.0, 0.5, shape)
    return v


def randomize(model, rng, gain=1.3):
    """Sets every variable of the model (trainable or not, nested models included)."""
    for v in model.weights:
        name = v.path.split("/")[-1]
        v.assign(random_value(name, v.shape, rng, gain).astype(v.dtype))


# ---- the models -------------------------------------------------------------------------------

def seq_cnn(K):
    L = K.layers
    return K.Sequential([
        K.Input(shape=(8, 8, 1)),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.Conv2D(4, 3, strides=2, padding="valid"),
        L.BatchNormalization(),
        L.MaxPooling2D(),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(8, activation="tanh"),
        L.Dense(3, activation="softmax"),
    ], name="seq_cnn")


def seq_dense_activations(K):
    L = K.layers
    stack = [K.Input(shape=(6,))]
    for a in ACTIVATIONS:
        stack.append(L.Dense(5, activation=a, name="dense_" + a))
        if a == "relu":  # Activation layers between the Dense layers
            stack.append(L.Activation("gelu", name="act_gelu"))
        if a == "softmax":
            stack.append(L.Activation("selu", name="act_selu"))
    return K.Sequential(stack, name="seq_dense_activations")


def func_residual(K):
    L = K.layers
    x = K.Input(shape=(8, 8, 3), name="image")
    y = L.Conv2D(4, 3, padding="same", strides=1, name="stem_conv")(x)
    y = L.BatchNormalization(name="stem_bn")(y)
    y = L.ReLU(name="stem_relu")(y)
    y = L.Conv2D(4, 3, padding="same", name="block_conv")(y)
    s = L.Conv2D(4, 1, name="shortcut")(x)
    y = L.Add(name="residual_add")([y, s])
    y = L.ZeroPadding2D(1, name="pad")(y)                      # 10x10x4
    y = L.AveragePooling2D(2, name="avg_pool")(y)               # 5x5x4
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(y)  # 5x5x8
    y = L.SeparableConv2D(4, 3, padding="same", activation="relu", name="separable")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = L.Dense(3, name="logits")(y)
    return K.Model(x, y, name="func_residual")


def func_merge(K):
    L = K.layers
    a = K.Input(shape=(6,), name="in_a")
    b = K.Input(shape=(6,), name="in_b")
    da = L.Dense(8, name="dense_a")(a)
    db = L.Dense(8, activation="tanh", name="dense_b")(b)
    s = L.Add(name="add")([da, db])
    d = L.Subtract(name="subtract")([da, db])
    p = L.Multiply(name="multiply")([s, d])
    c = L.Concatenate(name="concat")([s, d, p])                  # 24
    h = L.Dense(4, name="hidden")(c)
    h = L.LeakyReLU(negative_slope=0.2, name="leaky")(h)
    h = L.ELU(alpha=0.7, name="elu")(h)
    out1 = L.Softmax(name="probs")(h)
    r = L.Reshape((2, 2, 6), name="reshape")(c)
    r = L.GlobalMaxPooling2D(name="gmp")(r)
    out2 = L.Dense(2, name="out2")(r)
    return K.Model([a, b], [out1, out2], name="func_merge")


def func_sequence(K):
    L = K.layers
    x = K.Input(shape=(5,), name="ids")
    y = L.Embedding(11, 4, name="embed")(x)
    y = L.Conv1D(6, 3, padding="same", activation="relu", name="conv1d")(y)
    y = L.LayerNormalization(name="norm")(y)
    y = L.GlobalAveragePooling1D(name="gap1d")(y)
    y = L.Dense(2, name="out")(y)
    return K.Model(x, y, name="func_sequence")


def nested(K):
    L = K.layers
    inner = K.Sequential([K.Input(shape=(4,)), L.Dense(4, activation="relu"), L.Dense(4)],
                         name="inner")
    bi = K.Input(shape=(4,), name="block_in")
    t = L.Dense(5, activation="tanh", name="branch_t")(bi)
    u = L.Dense(3, name="branch_u")(bi)
    block = K.Model(bi, L.Concatenate(name="block_concat")([t, u]), name="block")
    x = K.Input(shape=(6,), name="x")
    h = L.Dense(4, name="pre")(x)
    h = inner(h)
    h = block(h)
    y = L.Dense(2, name="head")(h)
    return K.Model(x, y, name="nested")


def seq_trained(K, units, activation, out, name):
    L = K.layers
    stack = [K.Input(shape=(4,)), L.Dense(units, activation=activation)]
    if name == "seq_trained_adam":
        stack.append(L.BatchNormalization())
    stack.append(L.Dense(out, activation="softmax" if name != "seq_trained_adam" else "linear"))
    return K.Sequential(stack, name=name)


TRAINED = {
    # name: (units, activation, outputs, optimizer, loss, metrics)
    "seq_trained_adam": (8, "relu", 3, lambda: keras.optimizers.Adam(learning_rate=0.01),
                         "mean_squared_error", ["mae"]),
    "seq_trained_rmsprop": (6, "tanh", 3,
                            lambda: keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5,
                                                             centered=True),
                            "categorical_crossentropy", ["accuracy"]),
    "seq_trained_sgd": (5, "sigmoid", 2,
                        lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                        "sparse_categorical_crossentropy", ["accuracy"]),
}

MODELS = [
    ("seq_cnn", seq_cnn),
    ("seq_dense_activations", seq_dense_activations),
    ("func_residual", func_residual),
    ("func_merge", func_merge),
    ("func_sequence", func_sequence),
    ("nested", nested),
]
K2_MODELS = {"seq_cnn", "func_residual"}
K2_FIXED_MODELS = {"seq_cnn"}


# ---- writing ----------------------------------------------------------------------------------

def fresh(seed):
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def sample_inputs(model, name, rng):
    xs = []
    for t in model.inputs:
        shape = (BATCH,) + tuple(int(d) for d in t.shape[1:])
        if name == "func_sequence":
            xs.append(rng.integers(0, 11, shape).astype(np.float32))
        else:
            xs.append(rng.normal(0.0, 1.0, shape).astype(np.float32))
    return xs


def class_names(config, seen=None):
    """Every class_name of a model configuration, nested models included, in order."""
    seen = [] if seen is None else seen
    for e in config["config"]["layers"]:
        if e["class_name"] not in seen:
            seen.append(e["class_name"])
        if e["class_name"] in ("Sequential", "Functional", "Model"):
            class_names(e, seen)
    return seen


def save_arrays(out, stem, kind, arrays):
    if len(arrays) == 1:
        np.save(os.path.join(out, f"{stem}.{kind}.npy"), arrays[0].astype(np.float32))
    else:
        for i, a in enumerate(arrays):
            np.save(os.path.join(out, f"{stem}.{kind}{i}.npy"), a.astype(np.float32))


def predict(model, xs):
    y = model.predict(xs if len(xs) > 1 else xs[0], verbose=0, batch_size=BATCH)
    return [np.asarray(a) for a in (y if isinstance(y, (list, tuple)) else [y])]


def save_model_files(model, out, name, xs):
    model.save(os.path.join(out, f"{name}.keras"))
    model.save(os.path.join(out, f"{name}.h5"))  # Keras 3 writes the legacy HDF5 format
    model.save_weights(os.path.join(out, f"{name}.weights.h5"))
    ys = predict(model, xs)
    save_arrays(out, name, "input", xs)
    save_arrays(out, name, "output", ys)
    # What was saved must come back with the same outputs.
    back = keras.models.load_model(os.path.join(out, f"{name}.keras"))
    for a, b in zip(ys, predict(back, xs)):
        assert np.array_equal(a, b), f"{name}: the reloaded .keras predicts differently"
    return ys


def write_k2(name, builder, model, xs, out):
    """The same model and weights written by Keras 2 (tf_keras) as NAME.k2.h5."""
    import tf_keras
    tf_keras.backend.clear_session()
    m2 = builder(tf_keras)
    l3 = [l for l in model.layers if l.weights]
    l2 = [l for l in m2.layers if l.weights]
    assert [type(l).__name__ for l in l3] == [type(l).__name__ for l in l2], name
    for a, b in zip(l3, l2):
        b.set_weights(a.get_weights())
    m2.save(os.path.join(out, f"{name}.k2.h5"))
    y2 = np.asarray(m2.predict(xs[0], verbose=0, batch_size=BATCH), np.float32)
    np.save(os.path.join(out, f"{name}.k2.output.npy"), y2)
    files = [f"{name}.k2.h5"]
    if name in K2_FIXED_MODELS:
        fixed_length_strings(os.path.join(out, f"{name}.k2.h5"),
                             os.path.join(out, f"{name}.k2fixed.h5"))
        np.save(os.path.join(out, f"{name}.k2fixed.output.npy"), y2)
        files.append(f"{name}.k2fixed.h5")
    y3 = np.load(os.path.join(out, f"{name}.output.npy"))
    return files, float(np.max(np.abs(y2 - y3)))


def fixed_length_strings(src, dst):
    """A copy of a Keras 2 .h5 with its string attributes as fixed-length byte strings.

    Keras 2 stores its names as bytes (`name.encode("utf8")`); h5py 2, which Keras 2 used
    until TensorFlow 2.4 or so, wrote those as fixed-length strings (H5T_STRING of a fixed
    size: layer_names an array of "S<n>", model_config a scalar "S<n>"), where h5py 3 writes
    variable-length ones. Empty weight_names stay what both write: float64 arrays of shape (0,).
    """
    shutil.copyfile(src, dst)

    def fix(obj):
        for key in list(obj.attrs.keys()):
            v = obj.attrs[key]
            if isinstance(v, (str, bytes)):
                b = v.encode("utf8") if isinstance(v, str) else v
                obj.attrs[key] = np.bytes_(b)
            elif isinstance(v, np.ndarray) and v.dtype == object and v.size:
                b = [x.encode("utf8") if isinstance(x, str) else bytes(x) for x in v.ravel()]
                obj.attrs[key] = np.array(b, dtype=f"S{max(len(x) for x in b)}").reshape(v.shape)

    with h5py.File(dst, "r+") as h:
        fix(h)
        h.visititems(lambda _, o: fix(o))


def have_tf_keras():
    try:
        import tf_keras  # noqa: F401
        return True
    except ImportError:
        return False


def make_models(out, manifest, k2):
    for seed, (name, builder) in enumerate(MODELS, start=1):
        rng = fresh(seed)
        model = builder(keras)
        # Larger kernels in the chain of activations, so that each sees values beyond
        # its linear part around 0.
        randomize(model, rng, 2.5 if name == "seq_dense_activations" else 1.3)
        xs = sample_inputs(model, name, rng)
        ys = save_model_files(model, out, name, xs)
        entry = {"name": name, "kind": type(model).__name__, "inputs": len(xs),
                 "outputs": len(ys), "layers": class_names(json.loads(model.to_json())),
                 "optimizer": None, "k2": []}
        if k2 and name in K2_MODELS:
            entry["k2"], diff = write_k2(name, builder, model, xs, out)
            print(f"  {entry['k2']}: tf_keras vs keras 3 max |diff| {diff:.3g}")
        manifest.append(entry)
        print(f"  {name}: {entry['kind']}, outputs {[y.shape for y in ys]}")


def make_trained(out, manifest):
    for seed, (name, (units, act, nout, opt, loss, metrics)) in enumerate(TRAINED.items(),
                                                                          start=100):
        rng = fresh(seed)
        model = seq_trained(keras, units, act, nout, name)
        randomize(model, rng)
        model.compile(optimizer=opt(), loss=loss, metrics=metrics)
        x = rng.normal(0.0, 1.0, (16, 4)).astype(np.float32)
        if loss == "sparse_categorical_crossentropy":
            y = rng.integers(0, nout, (16,)).astype(np.float32)
        elif loss == "categorical_crossentropy":
            y = np.eye(nout, dtype=np.float32)[rng.integers(0, nout, (16,))]
        else:
            y = rng.normal(0.0, 1.0, (16, nout)).astype(np.float32)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        xs = [rng.normal(0.0, 1.0, (BATCH, 4)).astype(np.float32)]
        ys = save_model_files(model, out, name, xs)
        variables = [{"path": v.path, "shape": [int(d) for d in v.shape]}
                     for v in model.optimizer.variables]
        with open(os.path.join(out, f"{name}.optimizer.json"), "w") as f:
            json.dump(variables, f, indent=1)
            f.write("\n")
        manifest.append({"name": name, "kind": "Sequential", "inputs": 1, "outputs": len(ys),
                         "layers": class_names(json.loads(model.to_json())),
                         "optimizer": type(model.optimizer).__name__, "k2": []})
        print(f"  {name}: {type(model.optimizer).__name__}, iterations "
              f"{int(model.optimizer.iterations.numpy())}, {len(variables)} optimizer variables")


def make_unsupported(out):
    L = layers
    rng = fresh(200)
    m = keras.Sequential([keras.Input(shape=(4, 3)), L.LSTM(2, name="my_lstm"), L.Dense(1)],
                         name="with_lstm")
    randomize(m, rng)
    m.save(os.path.join(out, "unsupported_lstm.keras"))

    rng = fresh(201)
    m = keras.Sequential([keras.Input(shape=(1, 6, 6)),
                          L.Conv2D(2, 3, data_format="channels_first", name="conv_cf"),
                          L.Flatten(), L.Dense(2)], name="channels_first")
    randomize(m, rng)
    m.save(os.path.join(out, "channels_first.keras"))

    rng = fresh(202)
    m = keras.Sequential([keras.Input(shape=(4,)), L.Dense(3, dtype="float16", name="half")],
                         name="float16")
    randomize(m, rng)
    assert all(v.dtype == "float16" for v in m.weights)
    m.save(os.path.join(out, "float16.keras"))

    # A .keras with the three members of a model file whose config.json is a layer's.
    rng = fresh(203)
    dense = L.Dense(3, name="lonely_dense")
    dense.build((None, 4))
    for v in dense.weights:
        v.assign(random_value(v.path.split("/")[-1], v.shape, rng).astype(np.float32))
    cfg = keras.saving.serialize_keras_object(dense)
    tmp = os.path.join(out, "not_a_model.weights.tmp.h5")
    with h5py.File(tmp, "w") as h:  # the layout Keras gives a layer's own variables
        g = h.create_group("vars")
        for i, v in enumerate(dense.weights):
            g.create_dataset(str(i), data=np.asarray(v.numpy()))
    meta = {"keras_version": keras.__version__, "date_saved": "2000-01-01@00:00:00"}
    with open(tmp, "rb") as f:
        weights = f.read()
    with zipfile.ZipFile(os.path.join(out, "not_a_model.keras"), "w") as z:
        for member, data in (("metadata.json", json.dumps(meta)), ("config.json", json.dumps(cfg)),
                             ("model.weights.h5", weights)):
            z.writestr(zipfile.ZipInfo(member, date_time=(2000, 1, 1, 0, 0, 0)), data)
    os.remove(tmp)
    print("  unsupported_lstm, channels_first, float16, not_a_model")


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    k2 = have_tf_keras()
    if not k2:
        print("note: tf_keras is not installed; the Keras 2 files (NAME.k2.h5) are left out",
              file=sys.stderr)
    print(f"keras {keras.__version__} -> {out}")
    manifest = []
    make_models(out, manifest, k2)
    make_trained(out, manifest)
    make_unsupported(out)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
