import json

import keras
import numpy as np
import pytest

from common import export


def _colour_data():
    rng = np.random.default_rng(0)
    palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    y = np.arange(160) % 4  # each class a colour, with pixel noise
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 25, (160, 16, 16, 3)), 0, 255).astype("uint8")
    return x, y


def _model():
    return keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax")])


@pytest.mark.slow
def test_exported_files_agree_with_the_keras_model(tmp_path):
    x, y = _colour_data()
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x.astype("float32"), y, epochs=15, verbose=0)
    assert history.history["accuracy"][-1] > 0.8  # a confident model: no near-ties for quantisation to flip
    model.save(tmp_path / "model.keras")
    rows = export.export_classifier(model, tmp_path, x[:40].astype("float32"), x, y)
    assert [r["format"] for r in rows] == ["keras", "saved_model", "onnx", "litert", "tflite_float16",
                                           "tflite_int8"]
    assert all(r["size_mb"] > 0 for r in rows)
    expected = model.predict(x.astype("float32"), verbose=0)
    float16 = export.tflite_predict(tmp_path / "model_float16.tflite")(x.astype("float32"))
    int8 = export.tflite_predict(tmp_path / "model_int8.tflite")(x.astype("float32"))
    np.testing.assert_allclose(float16, expected, atol=2e-3)
    # 8-bit weights and activations: small errors everywhere, the same decisions almost always.
    assert np.abs(int8 - expected).mean() < 0.03
    assert np.mean(int8.argmax(axis=1) == expected.argmax(axis=1)) >= 0.95
    accuracy = {r["format"]: r["test_accuracy"] for r in rows}
    assert accuracy["saved_model"] == accuracy["keras"]
    # int8 may change the class of one image of 160 at most (measured: none, with seeds 0, 1, 2; the published
    # CIFAR-10 gap is 0.0001). Excludes a quantiser calibrated on the wrong inputs: images scaled to 0..1, or
    # black images, give 0.25 here (chance), measured.
    assert abs(accuracy["tflite_int8"] - accuracy["keras"]) <= 1 / 160


@pytest.mark.slow
def test_the_keras_row_scores_the_saved_file_not_the_model_in_memory(tmp_path):
    """model.keras on disk is an untrained model; the one passed in is trained: the "keras" row must give the
    file's accuracy. (Scoring the in-memory model, as the exports table once did, fails this.)"""
    x, y = _colour_data()
    keras.utils.set_random_seed(1)
    untrained = _model()
    untrained.save(tmp_path / "model.keras")
    file_accuracy = float(np.mean(untrained.predict(x.astype("float32"), verbose=0).argmax(-1) == y))
    keras.utils.set_random_seed(0)
    trained = _model()
    trained.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    trained.fit(x.astype("float32"), y, epochs=15, verbose=0)
    memory_accuracy = float(np.mean(trained.predict(x.astype("float32"), verbose=0).argmax(-1) == y))
    assert memory_accuracy - file_accuracy > 0.3  # the two models are told apart by their accuracy
    rows = export.export_classifier(trained, tmp_path, x[:40].astype("float32"), x, y)
    accuracy = {r["format"]: r["test_accuracy"] for r in rows}
    assert accuracy["keras"] == round(file_accuracy, 4)
    assert accuracy["saved_model"] == round(memory_accuracy, 4)  # exported from the model it was given


def test_each_exported_format_gives_the_keras_model_outputs(tmp_path):
    """SavedModel, ONNX and LiteRT float32 compute what Keras computes: within 1e-5 on a few inputs (float32
    round-off of a reordered sum; measured about 1e-7). float16 weights: 2e-3; int8: mean error under 0.03."""
    x, y = _colour_data()
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=5, verbose=0)
    inputs = x[:8].astype("float32")
    expected = model.predict(inputs, verbose=0)
    rows = export.export_model(model, tmp_path, x[:8], y[:8], representative=x[:20].astype("float32"))
    assert [r["format"] for r in rows] == ["saved_model", "onnx", "litert", "tflite_float16", "tflite_int8"]
    outputs = {kind: export.LOADERS[kind](tmp_path / export.FILES[kind])(inputs)
               for kind in ("saved_model", "onnx", "litert")}
    for kind, output in outputs.items():
        np.testing.assert_allclose(output, expected, atol=1e-5, err_msg=kind)
    float16 = export.litert_predict(tmp_path / "model_float16.tflite")(inputs)
    np.testing.assert_allclose(float16, expected, atol=2e-3)
    int8 = export.litert_predict(tmp_path / "model_int8.tflite")(inputs)
    assert np.abs(int8 - expected).mean() < 0.03
    # it is quantised: not the float file under another name
    assert not np.allclose(int8, expected, atol=1e-5)


def test_a_sigmoid_output_is_scored_by_its_threshold(tmp_path):
    """One output column (IMDB's sentiment) means p > 0.5 is class 1, not argmax (always 0)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.layers[0].set_weights([np.array([[5.0], [0.0], [0.0]]), np.array([0.0])])
    x = np.array([[1, 0, 0], [-1, 0, 0], [2, 1, 1], [-2, 0, 1]], dtype="float32")
    rows = export.export_model(model, tmp_path, x, np.array([1, 0, 1, 0]))
    assert {r["format"]: r["test_accuracy"] for r in rows} == {"saved_model": 1.0, "onnx": 1.0, "litert": 1.0}


def test_phone_price_run_with_export_writes_every_format(tmp_path, phone_root):
    from common.config import build_config
    from tasks import phone_price

    config = build_config(phone_price.PhonePriceConfig, profile="smoke", overrides=dict(
        data_dir=str(phone_root), output_dir=str(tmp_path / "runs"), run_id="export", linear_baseline=False,
        epochs=2, export=True))
    assert phone_price.train(config) == 0
    folder = tmp_path / "runs" / "phone_price" / "export"
    table = (folder / "exports.md").read_text()
    for kind in ("keras", "saved_model", "onnx", "litert"):
        assert f"| {kind} " in table, kind
    for name in ("saved_model/saved_model.pb", "model.onnx", "model.tflite"):
        assert (folder / name).stat().st_size > 0
    metrics = json.loads((folder / "metrics.json").read_text())
    accuracy = {row["format"]: row["test_accuracy"] for row in metrics["results"]["fnn"]["exports"]}
    assert len(set(accuracy.values())) == 1, accuracy  # every file makes the same decisions as model.keras


def test_gelu_exports_to_onnx(tmp_path):
    """Exact GELU (the lessons' default) becomes TensorFlow's Erfc, which tf2onnx cannot convert alone."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="gelu"),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    export.export_model(model, tmp_path, x, np.zeros(6, dtype=int))
    np.testing.assert_allclose(export.onnx_predict(tmp_path / "model.onnx")(x), model.predict(x, verbose=0),
                               atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision", [False, True], ids=["float32", "bfloat16"])
def test_imdb_run_exports_strings_and_token_ids(tmp_path, imdb_root, mixed_precision):
    """With --mixed-precision the token-id files come from a float32 copy of the model after its vectoriser
    (ONNX takes no bfloat16 graph; a copy of the whole model would lose the adapted vocabulary)."""
    from common.config import build_config
    from tasks import imdb

    config = build_config(imdb.ImdbConfig, profile="smoke", overrides=dict(
        data_dir=str(imdb_root), output_dir=str(tmp_path / "runs"), run_id="export", ngram_reference=False,
        epochs=1, export=True, mixed_precision=mixed_precision, mixed_dtype="bfloat16"))
    try:
        assert imdb.train(config) == 0
    finally:
        keras.mixed_precision.set_dtype_policy("float32")  # global: never leak it into other tests
    folder = tmp_path / "runs" / "imdb" / "export"
    rows = json.loads((folder / "metrics.json").read_text())["results"][config.model]["exports"]
    assert [r["format"] for r in rows] == ["keras", "saved_model", "onnx (token ids)", "litert (token ids)"]
    assert "| litert (token ids) |" in (folder / "exports.md").read_text()
    accuracy = {row["format"]: row["test_accuracy"] for row in rows}
    if mixed_precision:
        # The token-id files hold the same float32 copy; the strings files compute in bfloat16, whose
        # rounding flips a few of a barely trained model's decisions near 0.5 (4 of 80 test reviews allowed).
        assert accuracy["onnx (token ids)"] == accuracy["litert (token ids)"], accuracy
        assert all(abs(value - accuracy["keras"]) <= 0.05 for value in accuracy.values()), accuracy
    else:
        assert len(set(accuracy.values())) == 1, accuracy  # the same decisions from every file


@pytest.mark.slow
def test_a_two_input_captioner_exports_with_the_keras_outputs(tmp_path):
    """The captioner (image and caption tokens -> next-word logits): every file within 1e-5 of Keras."""
    from types import SimpleNamespace

    from models.captioning import build_captioner

    keras.utils.set_random_seed(0)
    config = SimpleNamespace(embedding_dim=8, units=12, attention_units=8, feature_units=8,
                             cnn_widths=(4, 4, 4), dropout=0.0, feature_dropout=0.0, decoder="rnn",
                             cell="lstm", attention_penalty=0.0, max_words=6)
    model = build_captioner(config, 20, (16, 16, 3))
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32"),
              rng.integers(0, 20, (4, 7)).astype("int32")]
    rows = export.export_compared(model, tmp_path, inputs)
    assert [r["format"] for r in rows] == ["saved_model", "onnx", "litert"]
    for row in rows:
        assert row["max_abs_diff"] <= 1e-5 and row["argmax_agreement"] == 1.0, row
    # the comparison can fail: a file that swapped the two inputs or ignored the tokens would not agree
    swapped = export.MULTI_LOADERS["onnx"](tmp_path / "model.onnx")([inputs[0], inputs[1][::-1]])
    assert np.abs(swapped - model.predict(inputs, verbose=0)).max() > 1e-3


@pytest.mark.slow
def test_captioning_run_with_export_compares_every_format(tmp_path):
    from common.config import build_config
    from tasks import captioning

    config = build_config(captioning.CaptioningConfig, "smoke", overrides=dict(
        output_dir=str(tmp_path / "runs"), run_id="export", shapes_count=60, epochs=1, export=True))
    assert captioning.train(config) == 0
    folder = tmp_path / "runs" / "captioning" / "export"
    rows = json.loads((folder / "metrics.json").read_text())["results"]["captioner_lstm"]["exports"]
    assert [r["format"] for r in rows] == ["saved_model", "onnx", "litert"]
    assert all(r["max_abs_diff"] <= 1e-4 and r["argmax_agreement"] >= 0.99 for r in rows), rows
    assert "| litert |" in (folder / "exports.md").read_text()


def test_a_mixed_precision_model_exports_as_its_float32_copy(tmp_path):
    """`--mixed-precision` (bfloat16 on a CPU that has it): ONNX refused the graph that mixed bfloat16 with
    float32 inputs; the export rebuilds the model in float32 with the same weights first."""
    x, y = _colour_data()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = _model()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")  # global: never leak it into other tests
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=15, verbose=0)
    assert model.layers[1].compute_dtype == "bfloat16"
    copy = export.float32_copy(model)
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    assert model.layers[1].compute_dtype == "bfloat16"  # the trained model itself is left as it was
    for mixed, plain in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mixed), keras.ops.convert_to_numpy(plain))
    # bfloat16 keeps 8 bits of mantissa: the float32 copy's probabilities differ by its rounding only.
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05)
    assert export.float32_copy(copy) is copy
    rows = export.export_model(model, tmp_path, x, y)
    accuracy = {r["format"]: r["test_accuracy"] for r in rows}
    assert set(accuracy) == {"saved_model", "onnx", "litert"}
    float32_accuracy = float(np.mean(copy.predict(x, verbose=0).argmax(axis=1) == y))
    assert accuracy["onnx"] == accuracy["litert"] == float32_accuracy
