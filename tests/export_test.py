import keras
import numpy as np

from common import export


def test_exported_files_agree_with_the_keras_model(tmp_path):
    rng = np.random.default_rng(0)
    palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    y = np.arange(160) % 4  # each class a colour, with pixel noise
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 25, (160, 16, 16, 3)), 0, 255).astype("uint8")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")])
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
    assert abs(accuracy["tflite_int8"] - accuracy["keras"]) <= 0.05
