import keras
import numpy as np

from common import export


def _colour_data():
    rng = np.random.default_rng(0)
    palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    y = np.arange(160) % 4  # each class a colour, with pixel noise
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 25, (160, 16, 16, 3)), 0, 255).astype("uint8")
    return x, y


def _model():
    return keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")])


def test_exported_files_agree_with_the_keras_model(tmp_path):
    x, y = _colour_data()
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x.astype("float32"), y, epochs=15, verbose=0)
    assert history.history["accuracy"][-1] > 0.8  # a confident model: no near-ties for quantisation to flip
    model.save(tmp_path / "model.keras")
    rows = export.export_classifier(model, tmp_path, x[:40].astype("float32"), x, y)
    assert [r["format"] for r in rows] == ["keras", "saved_model", "tflite_float16", "tflite_int8"]
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
