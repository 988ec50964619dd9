"""`--mixed-precision` and `--jit-compile` on a CPU: the setting reaches the model, outputs stay float32, and
the numbers match a float32 run without XLA within the stated tolerances (phone price, smoke, 30 epochs)."""

import json
import types

import keras
import numpy as np
import pytest

from common import console, hardware
from common.config import build_config
from datasets.mobile_price import FEATURES, read_csv
from tasks import phone_price
from tasks.phone_price import PhonePriceConfig


@pytest.fixture
def run(tmp_path, phone_root):
    """Train the smoke recipe with `overrides`; returns (metrics of the FNN, its saved model, rows to
    predict)."""
    _, rows, _ = read_csv(phone_root / "mobile_price" / "train.csv", FEATURES)

    def train(run_id, **overrides):
        config = build_config(PhonePriceConfig, profile="smoke", overrides=dict(
            data_dir=str(phone_root), output_dir=str(tmp_path / "runs"), run_id=run_id, epochs=30,
            max_rows=None, linear_baseline=False, **overrides))
        try:
            phone_price.train(config)
            folder = tmp_path / "runs" / "phone_price" / run_id
            model = keras.saving.load_model(folder / "model.keras")
        finally:
            keras.mixed_precision.set_dtype_policy("float32")  # the policy is global: never leak it
        return json.loads((folder / "metrics.json").read_text())["results"]["fnn"], model, rows

    return train


@pytest.mark.slow
def test_mixed_precision_computes_in_float16_keeps_float32_outputs_and_matches_float32(run):
    reference, reference_model, rows = run("float32")
    mixed, model, _ = run("mixed", mixed_precision=True, mixed_dtype="float16")
    hidden = model.get_layer("hidden_1")
    assert hidden.dtype_policy.name == "mixed_float16"
    assert hidden.compute_dtype == "float16" and hidden.kernel.dtype == "float32"  # float32 weights
    assert model.get_layer("normalize").compute_dtype == "float32"  # raw features overflow float16
    probabilities = keras.ops.convert_to_numpy(model(rows))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-3)
    # Measured here: the same accuracy, test losses 2e-4 apart, probabilities at most 0.003 apart (seeds 42,
    # 0, 1). With the inputs normalised in float16 the run stayed at chance (0.29, loss 1.386): excluded.
    assert abs(mixed["test_accuracy"] - reference["test_accuracy"]) <= 1 / 80  # one test row of 80
    assert mixed["test_loss"] == pytest.approx(reference["test_loss"], abs=1e-3)
    expected = keras.ops.convert_to_numpy(reference_model(rows))
    assert np.abs(probabilities - expected).max() <= 0.01


@pytest.mark.slow
def test_jit_compile_reaches_the_model_and_matches_the_run_without_xla(run, monkeypatch):
    """XLA needs --no-deterministic on TensorFlow: under op determinism (the default) Keras turns it off."""
    compiled = []
    original = keras.Model.compile

    def compile(self, *args, **kwargs):
        original(self, *args, **kwargs)
        compiled.append(self.jit_compile)  # what Keras made of the request

    monkeypatch.setattr(keras.Model, "compile", compile)
    run("deterministic", jit_compile="true")
    assert compiled and set(compiled) == {False}
    asked = types.SimpleNamespace(jit_compile="true", deterministic=True)
    assert console.jit_summary("tensorflow", asked).startswith("XLA off (deterministic ops")  # the start line
    compiled.clear()
    from tensorflow.python.framework import config as tf_config

    was_deterministic = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()  # one process, several runs: a fresh process starts without it
    try:
        without, model, rows = run("plain", jit_compile="false", deterministic=False)
        assert compiled and set(compiled) == {False}
        compiled.clear()
        with_xla, xla_model, _ = run("xla", jit_compile="true", deterministic=False)
        assert compiled and set(compiled) == {True}
    finally:
        if was_deterministic:
            tf_config.enable_op_determinism()
    # Measured here: the same accuracy, test losses 5e-6 apart, probabilities at most 1e-4 apart (XLA fuses
    # and reorders float32 sums); the tolerances leave ten times that.
    assert abs(with_xla["test_accuracy"] - without["test_accuracy"]) <= 1 / 80
    assert with_xla["test_loss"] == pytest.approx(without["test_loss"], abs=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(xla_model(rows)),
                               keras.ops.convert_to_numpy(model(rows)), atol=1e-3)


@pytest.mark.slow
def test_mixed_precision_in_bfloat16_keeps_float32_outputs_and_close_numbers(run):
    """`--mixed-dtype bfloat16`: what the airbench recipe and CIFAR-10's quick profile compute in on a CPU
    with AVX-512 BF16 (Keras computes bfloat16 on any CPU; without those units it is only slower)."""
    reference, _, rows = run("float32")
    mixed, model, _ = run("bfloat16", mixed_precision=True, mixed_dtype="bfloat16")
    hidden = model.get_layer("hidden_1")
    assert hidden.compute_dtype == "bfloat16" and hidden.kernel.dtype == "float32"
    probabilities = keras.ops.convert_to_numpy(model(rows))
    assert probabilities.dtype == np.float32
    # bfloat16 rounds to 8 bits of mantissa (float16: 11): a few test rows may change class, not more.
    assert abs(mixed["test_accuracy"] - reference["test_accuracy"]) <= 4 / 80
    # float32 reaches 0.81 on this smoke recipe (30 epochs), bfloat16 the same; chance is 0.25.
    assert mixed["test_accuracy"] >= 0.7


def test_auto_mixed_dtype_is_the_fast_16_bit_type_of_the_hardware(monkeypatch):
    config = types.SimpleNamespace(mixed_precision=True, mixed_dtype="auto")
    monkeypatch.setattr(hardware, "accelerators", lambda backend: ["NVIDIA H200"])
    assert hardware.compute_dtype(config) == "float16"
    monkeypatch.setattr(hardware, "accelerators", lambda backend: [])
    monkeypatch.setattr(hardware, "cpu_computes_bfloat16", lambda: True)
    assert hardware.compute_dtype(config) == "bfloat16"
    assert console.precision_summary(config) == "mixed precision bfloat16"
    monkeypatch.setattr(hardware, "cpu_computes_bfloat16", lambda: False)  # float16/bfloat16 emulated: slower
    assert hardware.compute_dtype(config) == "float32"
    assert "float32" in console.precision_summary(config)
    chosen = types.SimpleNamespace(mixed_precision=True, mixed_dtype="float16")
    assert hardware.compute_dtype(chosen) == "float16"
    chosen.mixed_precision = False
    assert hardware.compute_dtype(chosen) == "float32"
    assert console.precision_summary(types.SimpleNamespace(mixed_precision=False)) == "mixed precision off"

