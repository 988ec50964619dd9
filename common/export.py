"""Export a trained image classifier for serving and for devices, and check every exported file.

- `model.keras`: the Keras format (written by the training loop), for Python and further training.
- `saved_model/`: a TensorFlow SavedModel from `model.export` (TF Serving, TFLite conversion, TF.js).
- `model_float16.tflite`: TFLite with float16 weights (half the size, float compute).
- `model_int8.tflite`: full-integer post-training quantisation: weights and activations int8, calibrated on
  a representative sample of training images; its input is uint8 raw pixels (scale 1, zero point 0).

Each file is loaded back from disk and run on the test images (`model.keras` with
`keras.saving.load_model`, the SavedModel with `tf.saved_model.load`, TFLite files with the interpreter), so
the reported accuracy is the accuracy of the file, not of the model in memory it came from.
"""

import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UserError


def export_classifier(model, folder, representative, x_test, y_test, batch_size=250):
    """Export `model` in every format and evaluate each file; returns one row per format.

    `folder/model.keras` must exist already (the training loop writes it): it is scored as loaded from disk.
    """
    folder = Path(folder)
    keras_file = folder / "model.keras"
    rows = [_row("keras", keras_file, _accuracy(_keras_predict(keras_file), x_test, y_test, batch_size))]
    saved = folder / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    rows.append(_row("saved_model", saved, _accuracy(_saved_model_predict(saved), x_test, y_test, batch_size)))
    for kind in ("float16", "int8"):
        path = folder / f"model_{kind}.tflite"
        path.write_bytes(convert_tflite(saved, kind, representative))
        rows.append(_row(f"tflite_{kind}", path, _accuracy(tflite_predict(path), x_test, y_test, batch_size)))
    return rows


def convert_tflite(saved_model_dir, kind, representative=None):
    """TFLite bytes from a SavedModel: `float16` weights, or full-integer `int8` calibrated on `representative`
    (a float32 array of example inputs)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "int8":
        if representative is None or len(representative) == 0:
            raise UserError("int8 quantisation needs a representative sample of inputs.")

        def samples():
            for example in representative:
                yield [np.asarray(example, dtype="float32")[None]]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8  # raw pixels 0..255 need no scaling at all
    else:
        raise ValueError(f"unknown TFLite kind {kind!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def tflite_predict(path):
    """A function (float32 batch) -> probabilities that runs the TFLite file at `path`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its move to ai-edge-litert
        interpreter = tf.lite.Interpreter(model_path=str(path))
    input_detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]

    def predict(batch):
        batch = np.asarray(batch, dtype="float32")
        interpreter.resize_tensor_input(input_detail["index"], batch.shape)
        interpreter.allocate_tensors()
        dtype = input_detail["dtype"]
        if dtype != np.float32:  # quantised input: q = x / scale + zero_point
            scale, zero_point = input_detail["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return predict


def _keras_predict(path):
    loaded = keras.saving.load_model(path, compile=False)
    return lambda batch: keras.ops.convert_to_numpy(loaded(batch, training=False))


def _saved_model_predict(path):
    loaded = tf.saved_model.load(str(path))  # keep the object alive: `serve` refers to its variables
    return lambda batch: loaded.serve(tf.constant(batch, dtype=tf.float32)).numpy()


def _accuracy(predict, x, y, batch_size):
    correct = 0
    for start in range(0, len(x), batch_size):
        probabilities = np.asarray(predict(x[start:start + batch_size].astype("float32")))
        correct += int(np.sum(probabilities.argmax(axis=-1) == y[start:start + batch_size]))
    return correct / max(1, len(x))


def _row(kind, path, accuracy):
    return {"format": kind, "file": Path(path).name, "size_mb": round(_size(path) / 2**20, 3),
            "test_accuracy": round(accuracy, 4)}


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
