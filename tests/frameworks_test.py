"""benchmarks/frameworks.py (issue 36, item 3): every model compared is the one its lesson's default run
trains (CIFAR-10: airbench94, beside twins/airbench94.py), a model that cannot be built or run gets one line
instead of stopping the run, and a tiny run writes the section with each Keras model's parameter count equal
to the lesson's own build."""

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is optional: pip install -r requirements-compare.txt")

from benchmarks import common, frameworks  # noqa: E402
from common.config import build_config  # noqa: E402
from tasks.captioning import CaptioningConfig  # noqa: E402
from tasks.cifar10 import AIRBENCH94_METHODS, Cifar10Config  # noqa: E402
from tasks.imdb import ImdbConfig  # noqa: E402
from tasks.phone_price import PhonePriceConfig  # noqa: E402
from tests.keras_speed_test import fake_stamp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"phone_price": PhonePriceConfig, "cifar10": Cifar10Config, "imdb": ImdbConfig,
           "captioning": CaptioningConfig}
# Small widths and batches over each lesson's quick config: seconds, not minutes.
TINY = {"phone_price": {"batch_size": 8},
        "cifar10": {"widths": [8, 16, 16], "batch_size": 8},
        "imdb": {"batch_size": 4, "sequence_length": 16, "vocabulary_size": 100, "embedding_dim": 8,
                 "units": 8},
        "captioning": {"batch_size": 4, "embedding_dim": 8, "units": 8, "attention_units": 8,
                       "feature_units": 8, "max_words": 4}}


def settings(config):
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


def lesson_counts(overrides):
    """Each lesson's Keras model built here the way its lesson builds it, from its quick config with
    `overrides`: {lesson: parameter count}."""
    from models import captioning, cnn, fnn, text

    rng = np.random.default_rng(0)
    config = {lesson: build_config(cls, profile="quick", overrides=overrides.get(lesson))
              for lesson, cls in CONFIGS.items()}
    phone = SimpleNamespace(num_features=20, num_classes=4, x_train=rng.normal(size=(64, 20)))
    images = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.full(3, 120.0),
                             variance=np.full(3, 3600.0), x_train=rng.uniform(0, 255, (64, 32, 32, 3)))
    imdb = config["imdb"]
    models = {"phone_price": fnn.build_fnn(config["phone_price"], phone),
              "cifar10": cnn.build_cnn(config["cifar10"], images),
              "imdb": text.build_token_classifier(imdb, imdb.vocabulary_size, imdb.sequence_length),
              "captioning": captioning.build_captioner(config["captioning"], frameworks.CAPTION_VOCABULARY,
                                                       (frameworks.CAPTION_POSITIONS,
                                                        frameworks.CAPTION_FEATURES))}
    return {lesson: model.count_params() for lesson, model in models.items()}


def test_each_model_is_its_lessons_quick_one_and_cifar10s_is_airbench94():
    specs = {spec["lesson"]: spec for spec in frameworks.models_to_compare()}
    assert list(specs) == ["phone_price", "cifar10", "imdb", "captioning"]
    for lesson, cls in CONFIGS.items():
        assert settings(specs[lesson]["config"]) == settings(build_config(cls, profile="quick")), lesson
        assert specs[lesson]["batch"] == specs[lesson]["config"].batch_size
    cifar = specs["cifar10"]
    assert cifar["name"] == "cifar10 airbench94" and cifar["native"] == "twins/airbench94.py: AirbenchNet"
    recipe = json.loads((ROOT / "recipes" / "cifar10_airbench94.json").read_text())
    assert tuple(cifar["config"].widths) == tuple(recipe["widths"]) == AIRBENCH94_METHODS["widths"]
    assert cifar["batch"] == recipe["batch_size"] == 1024
    assert frameworks.is_airbench94(cifar["config"]) and cifar["inputs"].shape == (1024, 32, 32, 3)


def test_a_model_without_a_twin_gets_a_row_that_says_why_in_one_line():
    rows = frameworks.torch_worker(1, 0, ["cifar10"], {"cifar10": {"model": "course_cnn", "batch_size": 4}})
    (row,) = rows
    assert (row["model"], row["implementation"]) == ("cifar10 course_cnn", frameworks.NATIVE)
    note = row["note"]
    assert note.startswith("not run: UserError: twins/airbench94.py is airbench94's net") and "\n" not in note


def test_a_model_that_fails_on_a_backend_does_not_stop_the_others():
    def rows_of(spec):
        if spec["lesson"] == "phone_price":
            raise RuntimeError("first line\nsecond line")
        return [{"model": spec["name"], "implementation": "x"}]

    rows = frameworks._each_model(["phone_price", "imdb"], TINY, "Keras jax", rows_of)
    assert rows[0]["model"] == "phone_price fnn" and rows[0]["note"] == "not run: RuntimeError: first line"
    assert rows[1] == {"model": "imdb gru", "implementation": "x"}


def test_the_native_row_says_how_its_weights_differ_from_keras():
    rows = [{"model": "m", "implementation": "Keras tensorflow", "train examples/s": 50.0, "params": 1645,
             "trainable": 1604},
            {"model": "m", "implementation": "PyTorch native", "train examples/s": 100.0, "params": 1604,
             "trainable": 1604},
            {"model": "m", "implementation": "Keras jax", "note": "not run: ValueError: no"}]
    found = {row["implementation"]: row for row in frameworks.table(rows)}
    assert found["Keras tensorflow"]["vs PyTorch"] == "0.50x" and "vs PyTorch" not in found["Keras jax"]
    assert found["PyTorch native"]["note"].startswith("-41 weights against Keras (trainable: the same)")


@pytest.mark.parametrize("arguments, expected", [
    (["--models", "cifar10,mnist"], "error: unknown model 'mnist'; valid: phone_price, cifar10, imdb, "),
    (["--backends", "tf"], "error: unknown backend 'tf'; valid: tensorflow, jax, torch."),
    (["--overrides", "[1]"], "error: --overrides takes a JSON object of lessons"),
    (["--overrides", '{"mnist": {}}'], "error: --overrides: unknown lesson 'mnist'"),
    (["--overrides", '{"cifar10": {"no_such_setting": 1}}'], "error: "),
    (["--steps", "0"], "error: --steps must be at least 1"),
])
def test_bad_input_is_refused_with_one_sentence_and_exit_code_2(arguments, expected, cli, monkeypatch):
    monkeypatch.setattr(common, "stamp", lambda command: pytest.fail("stamped before the check"))
    code, _, error = cli(frameworks.main, arguments)
    assert code == 2 and error.strip().startswith(expected) and "\n" not in error.strip(), error


def test_the_lessons_full_models_and_their_twins_have_the_parameters_the_lessons_say():
    found = {spec["lesson"]: (spec, model, twin, rows)
             for spec, model, twin, rows in frameworks.parameter_counts()}
    recipe = json.loads((ROOT / "recipes" / "cifar10_airbench94.json").read_text())
    stated = int(re.search(r"\(([\d,]+) parameters\)", recipe["_why"]["widths"]).group(1).replace(",", ""))
    assert found["cifar10"][1].count_params() == stated == 1_973_969
    assert type(found["cifar10"][2]).__name__ == "AirbenchNet"
    phone = found["phone_price"][0]["config"]
    from models.fnn import fnn_parameter_count
    from models.text import recurrent_parameter_count

    normalization = 2 * 20 + 1  # mean, variance and count of 20 features
    assert found["phone_price"][1].count_params() == normalization + fnn_parameter_count(
        20, phone.hidden_units, 4, phone.batch_norm)
    imdb = found["imdb"][0]["config"]
    assert imdb.model == "gru" and imdb.num_layers == 1
    embedding, dense = imdb.vocabulary_size * imdb.embedding_dim, imdb.units + 1
    assert found["imdb"][1].count_params() == (
        embedding + recurrent_parameter_count("gru", imdb.units, imdb.embedding_dim) + dense)
    for lesson, (_, model, twin, rows) in found.items():
        # the twins train what Keras trains; every other difference is explained row by row
        assert frameworks.trainable_count(model) == frameworks.trainable_count(twin), lesson
        assert sum(row["torch params"] for row in rows) == sum(p.numel() for p in twin.parameters()), lesson
        assert all(row["why they differ"] for row in rows if row["keras params"] != row["torch params"])


@pytest.mark.slow
def test_a_tiny_run_measures_each_lessons_model_on_tensorflow_and_its_twin(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(common, "stamp", lambda command: fake_stamp(command))
    measured = {}
    measure = frameworks.measure
    monkeypatch.setattr(frameworks, "measure",
                        lambda *a, **k: measured.setdefault("result", measure(*a, **k)))
    arguments = ["--steps", "1", "--warmup", "1", "--backends", "tensorflow", "--overrides", json.dumps(TINY)]
    monkeypatch.setattr("sys.argv", ["benchmarks/frameworks.py", *arguments])
    assert frameworks.main(arguments) == 0
    rows, failures = measured["result"]
    assert failures == []
    expected = lesson_counts(TINY)
    for spec in frameworks.models_to_compare(overrides=TINY):
        found = {row["implementation"]: row for row in rows if row["model"] == spec["name"]}
        assert set(found) == {"Keras tensorflow", "Keras tensorflow fit, 1 step(s) per execution",
                              "PyTorch native"}, spec["name"]
        assert all(row["train examples/s"] > 0 and row["batch"] == spec["batch"] for row in found.values())
        assert found["Keras tensorflow"]["params"] == expected[spec["lesson"]], spec["name"]
        assert found["Keras tensorflow"]["trainable"] == found["PyTorch native"]["trainable"], spec["name"]
    body = common.read_section("frameworks")
    assert common.stamp_problem(common.section_stamp(body)) is None
    assert "| cifar10 airbench94 | PyTorch native |" in body and "twins/airbench94.py: AirbenchNet" in body
    assert "**cifar10 airbench94** (Keras " in body and "| stem_whiten | 337 | whiten | 312 |" in body
