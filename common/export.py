"""Export a trained model through Keras' own exporters (`model.export`), and check every exported file.

- `model.keras`: the Keras format (written by the training loop), for Python and further training.
- `saved_model/`: a TensorFlow SavedModel (`format="tf_saved_model"`: TF Serving, TF.js).
- `model.onnx`: ONNX (`format="onnx"`, through tf2onnx), for ONNX Runtime and the many runtimes that read it.
- `model.tflite`: LiteRT, float32 (`format="litert"`), for phones and microcontrollers.
- image classifiers also get `model_float16.tflite` (float16 weights, half the size) and `model_int8.tflite`
  (full-integer post-training quantisation calibrated on training images; its input is uint8 raw pixels).
  Both go through `model.export(format="litert", ...)` too: Keras passes converter settings on.

Per lesson: phone price and CIFAR-10 export the whole model (`export_model`, `export_classifier`); IMDB's
SavedModel takes raw strings and its ONNX and LiteRT files take the vectoriser's output
(`export_text_classifier`); the captioner's files give next-word logits and are compared with Keras' outputs
(`export_compared`).

Each file is loaded back from disk with its own runtime (Keras; TensorFlow; ONNX Runtime; the LiteRT
interpreter from `ai-edge-litert`) and run on the test split, so the table gives the file's own size, load
time, latency per example and accuracy, not those of the model in memory it came from.
"""

import contextlib
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UserError
from common.progress import progress
from common.tables import format_table

COLUMNS = ["format", "file", "runtime", "size_mb", "load_s", "ms_per_example", "test_accuracy"]
FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite",
         "tflite_float16": "model_float16.tflite", "tflite_int8": "model_int8.tflite"}


def unavailable():
    """Why this backend cannot export every format (None when it can)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":  # Keras 3.15 exports LiteRT from TF or torch only, SavedModel from TF or JAX
        return (f"model.export to SavedModel, ONNX and LiteRT together needs the TensorFlow backend, "
                f"not {backend}.")
    return None


def export_model(model, folder, x_test, y_test, representative=None, batch_size=250):
    """Export `model` as SavedModel, ONNX and LiteRT (and, given `representative` inputs, LiteRT float16 and
    int8) into `folder` and score each file on (x_test, y_test); returns one row per format (COLUMNS).

    `folder/model.keras`, when it exists (the training loop writes it), is scored as loaded from disk too.
    Outputs with one column are sigmoid probabilities (class = p > 0.5); others are scored by argmax.

    Args:
        model: the trained model.
        folder: where the files go (the model's run folder).
        x_test: the test inputs each file is run on.
        y_test: their integer labels.
        representative: inputs that calibrate int8 quantisation (a few hundred training examples); None:
            no float16 and int8 LiteRT files.
        batch_size: the examples per call when scoring.
    """
    folder = Path(folder)
    x_test = np.asarray(x_test)
    model = float32_copy(model)
    model(x_test[:1])  # the ONNX exporter needs a model that has been called once
    _teach_tf2onnx_erfc()
    rows = []
    if (folder / "model.keras").exists():
        rows.append(_score("keras", folder / "model.keras", _keras_predict, x_test, y_test, batch_size))
    for kind in progress(("saved_model", "onnx", "litert"), "exporting and scoring each file", unit="file"):
        rows.append(_export_and_score(model, kind, folder, x_test, y_test, batch_size))
    if representative is not None:
        for kind in ("float16", "int8"):
            path = folder / FILES[f"tflite_{kind}"]
            export_quantised(model, path, kind, representative)
            rows.append(_score(f"tflite_{kind}", path, litert_predict, x_test, y_test, batch_size))
    return rows


def float32_copy(model):
    """`model` computing in float32: a mixed-precision model (`--mixed-precision`) rebuilt layer by layer with
    a float32 policy and given its (float32) weights, because ONNX and LiteRT cannot mix a bfloat16 or
    float16 graph with float32 inputs; a float32 model itself. The file's own dtypes are the exporter's
    choice (float32, and the float16 and int8 LiteRT files).

    Only the layers that compute in 16 bits are rebuilt, and only weights are carried over: state kept
    outside them (a TextVectorization's adapted vocabulary) would be lost, so a text model is copied from its
    vectoriser's output on (`export_text_classifier`). The other layers and operations (the padding mask's
    `not_equal`) are shared with `model`."""
    if not any(_computes_in_16_bits(layer) for layer in model.layers):
        return model

    def in_float32(layer):
        if not _computes_in_16_bits(layer):
            return layer
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy


def _computes_in_16_bits(layer):
    return getattr(layer, "compute_dtype", None) in ("float16", "bfloat16")


def export_text_classifier(model, folder, reviews, labels, batch_size=250):
    """A classifier of raw strings (TextVectorization inside): the SavedModel takes raw strings, as the
    Keras file does; ONNX and LiteRT get the same model from its vectoriser's output on (token ids in, the
    rows say so): tf2onnx converts no string ops, and LiteRT would run the string lookup only as a TensorFlow
    (Flex) op, which the LiteRT interpreter does not include.

    Args:
        model: the trained classifier of raw strings.
        folder: where the files go (the model's run folder).
        reviews: the test texts each file is run on.
        labels: their integer labels.
        batch_size: the examples per call when scoring.
    """
    folder = Path(folder)
    strings = np.asarray(reviews, dtype=object).reshape(-1, 1)
    model(strings[:1])
    _teach_tf2onnx_erfc()
    rows = []
    if (folder / "model.keras").exists():
        rows.append(_score("keras", folder / "model.keras", _keras_predict, strings, labels, batch_size))
    rows.append(_export_and_score(model, "saved_model", folder, strings, labels, batch_size))
    vectorize = next(layer for layer in model._flatten_layers(include_self=False)
                     if isinstance(layer, keras.layers.TextVectorization))
    if vectorize.get_config()["output_mode"] != "int":
        # Multi-hot n-grams (NBSVM): after the vectoriser a review is a dense vector as wide as the vocabulary
        # (a million n-grams: 4 MB per review), which no ONNX or LiteRT file should take; the SavedModel on
        # raw strings is the file to deploy.
        return rows
    tokens = keras.ops.convert_to_numpy(vectorize(strings))
    # (In float32 when the model computes in 16 bits: ONNX and LiteRT take no bfloat16 graph.)
    tokens_model = float32_copy(keras.Model(vectorize.output, model.output, name=f"{model.name}_tokens"))
    tokens_model(tokens[:1])
    for kind in progress(("onnx", "litert"), "exporting and scoring the token-id model", unit="file"):
        # LiteRT: one review per call. With a free batch size a recurrent layer's loop keeps TensorFlow
        # tensor-list ops (Flex, which ai-edge-litert cannot run); with batch 1 the converter fuses the LSTM.
        signature = [keras.InputSpec(shape=(1, *tokens.shape[1:]), dtype=str(tokens.dtype))]
        row = _export_and_score(tokens_model, kind, folder, tokens, labels, batch_size,
                                input_signature=signature if kind == "litert" else None)
        rows.append({**row, "format": f"{kind} (token ids)"})
    return rows


COMPARE_COLUMNS = ["format", "file", "runtime", "size_mb", "load_s", "ms_per_example", "max_abs_diff",
                   "argmax_agreement"]


def export_compared(model, folder, inputs, batch_size=64):
    """Export a model of several inputs (the captioner: encoder input and caption tokens -> next-word logits)
    as SavedModel, ONNX and LiteRT and compare each file's outputs with the Keras model's on `inputs` (a list
    of arrays): largest absolute difference and the share of positions whose argmax (the next word) agrees.
    Word-by-word caption generation (greedy, beam) is Python around the decoder's step, which no exporter
    takes; these files give the teacher-forced logits, so they are compared rather than scored with BLEU.

    LiteRT takes one example per call: with a free batch size the decoder's recurrent loop keeps TensorFlow
    tensor-list ops (Flex), which the ai-edge-litert interpreter cannot run."""
    folder = Path(folder)
    inputs = [np.asarray(x) for x in inputs]
    model = float32_copy(model)
    expected = keras.ops.convert_to_numpy(model.predict(inputs, batch_size=batch_size, verbose=0))
    _teach_tf2onnx_erfc()
    rows = []
    for kind in progress(("saved_model", "onnx", "litert"), "exporting and comparing each file", unit="file"):
        path = folder / FILES[kind]
        signature = None
        if kind == "litert":
            # one argument, the list of inputs (a flat list would be read as positional arguments)
            signature = [[keras.InputSpec(shape=(1, *x.shape[1:]), dtype=str(x.dtype)) for x in inputs]]
        with _statistics_as_variables(model) if kind == "onnx" else contextlib.nullcontext():
            model.export(str(path), format="tf_saved_model" if kind == "saved_model" else kind, verbose=False,
                         input_signature=signature, **({"opset_version": 17} if kind == "onnx" else {}))
        started = time.perf_counter()
        predict = MULTI_LOADERS[kind](path)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        outputs = np.concatenate([predict([x[i:i + batch_size] for x in inputs])
                                  for i in range(0, len(inputs[0]), batch_size)])
        elapsed = time.perf_counter() - started
        rows.append({"format": kind, "file": path.name,
                     "runtime": {"saved_model": "tensorflow",
                                 "onnx": "onnxruntime"}.get(kind, "ai-edge-litert"),
                     "size_mb": round(_size(path) / 2**20, 3), "load_s": round(load_s, 3),
                     "ms_per_example": round(1000 * elapsed / max(1, len(inputs[0])), 4),
                     "max_abs_diff": float(f"{np.abs(outputs - expected).max():.3g}"),
                     "argmax_agreement": round(float(np.mean(outputs.argmax(-1) == expected.argmax(-1))), 4)})
    return rows


def _saved_model_multi(path):
    loaded = tf.saved_model.load(str(path))
    specs = loaded.serve.input_signature[0]  # one argument: the list of the model's inputs

    def predict(xs):
        return loaded.serve([tf.constant(x, dtype=spec.dtype)
                             for x, spec in zip(xs, specs, strict=True)]).numpy()

    return predict


def _onnx_multi(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(int64)": "int64", "tensor(int32)": "int32"}
    feeds = [(i.name, types.get(i.type, "float32")) for i in session.get_inputs()]
    return lambda xs: session.run(None, {name: np.asarray(x).astype(dtype)
                                         for (name, dtype), x in zip(feeds, xs, strict=True)})[0]


def _litert_multi(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()  # by name; the exporter names them args_0, args_1, ... in order
    names = sorted(details, key=lambda name: int(name.rsplit("_", 1)[-1]) if name[-1].isdigit() else 0)

    def predict(xs):
        rows = []
        for i in range(len(xs[0])):
            feeds = {n: np.asarray(x[i:i + 1]).astype(details[n]["dtype"])
                     for n, x in zip(names, xs, strict=True)}
            rows.append(next(iter(runner(**feeds).values())))
        return np.concatenate(rows)

    return predict


def _export_and_score(model, kind, folder, x, y, batch_size, input_signature=None):
    path = Path(folder) / FILES[kind]
    with _statistics_as_variables(model) if kind == "onnx" else contextlib.nullcontext():
        model.export(str(path), format="tf_saved_model" if kind == "saved_model" else kind, verbose=False,
                     input_signature=input_signature, **({"opset_version": 17} if kind == "onnx" else {}))
    return _score(kind, path, LOADERS[kind], x, y, batch_size)


def export_classifier(model, folder, representative, x_test, y_test, batch_size=250):
    """An image classifier in every format, the quantised LiteRT files included.

    Args:
        model: the trained classifier of raw pixels.
        folder: where the files go (the model's run folder).
        representative: training images that calibrate int8 quantisation.
        x_test: the test images each file is run on.
        y_test: their integer labels.
        batch_size: the examples per call when scoring.
    """
    return export_model(model, folder, x_test, y_test, representative=representative, batch_size=batch_size)


@contextlib.contextmanager
def _statistics_as_variables(model):
    """A `Normalization` layer keeps its mean and variance as plain tensors, which tf2onnx turns into extra
    graph inputs (ONNX Runtime then asks for them) instead of constants; as variables they are frozen in."""
    saved = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            saved.append((layer, layer.mean, layer.variance))
            layer.mean, layer.variance = tf.Variable(layer.mean), tf.Variable(layer.variance)
    try:
        yield
    finally:
        for layer, mean, variance in saved:
            layer.mean, layer.variance = mean, variance


_ERFC_REGISTERED = []


def _teach_tf2onnx_erfc():
    """tf2onnx 1.17 has no converter for TensorFlow's Erfc, which exact GELU (`tf.nn.gelu`, the lessons'
    default activation) uses; ONNX has Erf, and erfc(x) = 1 - erf(x)."""
    if _ERFC_REGISTERED:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = ctx.get_dtype(node.output[0])
            shape = ctx.get_shape(node.output[0])
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            one = ctx.make_const(utils.make_name(f"{node.name}_one"),
                                 np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)))
            outputs = list(node.output)
            ctx.remove_node(node.name)
            ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=outputs, shapes=[shape],
                          dtypes=[dtype])

    _ERFC_REGISTERED.append(Erfc)


def export_quantised(model, path, kind, representative=None):
    """A LiteRT file with `float16` weights, or full-integer `int8` calibrated on `representative` (a float32
    array of example inputs), through `model.export(format="litert")` with converter settings."""
    settings = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if kind == "float16":
        settings["target_spec"] = {"supported_types": [tf.float16]}
    elif kind == "int8":
        if representative is None or len(representative) == 0:
            raise UserError("int8 quantisation needs a representative sample of inputs.")

        def samples():
            for example in progress(representative, "calibrating int8 quantisation", unit="example"):
                yield [np.asarray(example, dtype="float32")[None]]

        settings.update(representative_dataset=samples, inference_input_type=tf.uint8,  # raw pixels 0..255
                        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]})
    else:
        raise ValueError(f"unknown LiteRT kind {kind!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="litert", verbose=False, **settings)


def litert_predict(path):
    """A function (float32 batch) -> outputs that runs the LiteRT file at `path` with LiteRT's interpreter."""
    from ai_edge_litert.interpreter import Interpreter  # the interpreter tf.lite.Interpreter now points to

    interpreter = Interpreter(model_path=str(path))
    input_detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]

    def predict(batch):
        batch = np.asarray(batch)
        if input_detail["shape_signature"][0] == 1 and len(batch) > 1:  # exported for one example at a time
            return np.concatenate([predict(batch[i:i + 1]) for i in range(len(batch))])
        interpreter.resize_tensor_input(input_detail["index"], batch.shape)
        interpreter.allocate_tensors()
        dtype = input_detail["dtype"]
        scale, zero_point = input_detail["quantization"]
        if scale:  # quantised input: q = x / scale + zero_point
            batch = batch.astype("float32")
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
        interpreter.set_tensor(input_detail["index"], batch.astype(dtype))
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return predict


tflite_predict = litert_predict  # the name earlier lessons used


def onnx_predict(path):
    """A function (float32 batch) -> outputs that runs the ONNX file at `path` with ONNX Runtime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    dtype = {"tensor(int64)": "int64", "tensor(int32)": "int32"}.get(first.type, "float32")
    return lambda batch: session.run(None, {first.name: np.asarray(batch).astype(dtype)})[0]


def saved_model_predict(path):
    """A function (float32 batch) -> outputs that runs the SavedModel at `path` with TensorFlow."""
    loaded = tf.saved_model.load(str(path))  # keep the object alive: `serve` refers to its variables
    dtype = loaded.serve.input_signature[0].dtype if loaded.serve.input_signature else tf.float32
    return lambda batch: loaded.serve(tf.constant(batch, dtype=dtype)).numpy()


def _keras_predict(path):
    loaded = keras.saving.load_model(path, compile=False)
    return lambda batch: keras.ops.convert_to_numpy(loaded(batch, training=False))


_saved_model_predict = saved_model_predict
LOADERS = {"saved_model": saved_model_predict, "onnx": onnx_predict, "litert": litert_predict}
MULTI_LOADERS = {"saved_model": _saved_model_multi, "onnx": _onnx_multi, "litert": _litert_multi}


def _score(kind, path, loader, x, y, batch_size):
    started = time.perf_counter()
    predict = loader(path)
    load_s = time.perf_counter() - started
    correct, elapsed = 0, 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        started = time.perf_counter()
        outputs = np.asarray(predict(batch))
        elapsed += time.perf_counter() - started
        labels = (outputs[:, 0] > 0.5).astype(int) if outputs.shape[-1] == 1 else outputs.argmax(axis=-1)
        correct += int(np.sum(labels == np.asarray(y[start:start + batch_size]).reshape(-1)))
    runtime = {"keras": "keras", "saved_model": "tensorflow",
               "onnx": "onnxruntime"}.get(kind, "ai-edge-litert")
    return {"format": kind, "file": Path(path).name, "runtime": runtime,
            "size_mb": round(_size(path) / 2**20, 3), "load_s": round(load_s, 3),
            "ms_per_example": round(1000 * elapsed / max(1, len(x)), 4),
            "test_accuracy": round(correct / max(1, len(x)), 4)}


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def write_table(rows, folder, columns=COLUMNS):
    """`folder/exports.md`: the rows as a Markdown table; returns the table."""
    table = format_table(rows, columns)
    (Path(folder) / "exports.md").write_text(table + "\n")
    return table
