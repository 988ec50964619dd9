"""A fifth lesson takes exactly the pieces docs/layout.md's "Add a lesson" lists: `tasks/<name>.py`,
`datasets/<name>.py`, `models/<name>.py`, a test file and its name in `tuning/tasks.py`'s LESSONS.

The throwaway lesson `blobs` (two classes of 2-D points, generated) is written into a copy of the repo's
source in tmp_path, never into the repo, and run there as a user would: its own test file, `run_all.py`, a
2-trial `tuning.search` and `python -m pages`. Every output folder and cache points into tmp_path.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "blobs"
SKIPPED = ("tests", "benchmarks")  # not needed by a lesson, the tuner or the pages

DATASET = '''
"""Two blobs: 2-D points around two centres, one class each. Generated, so there is no file to find."""

import dataclasses

import numpy as np

CLASS_NAMES = ["left", "right"]


@dataclasses.dataclass
class Splits:
    train: tuple  # (features, labels)
    val: tuple
    test: tuple
    class_names: list
    source: str = "generated"
    note: str = ""


def load(config):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, config.rows)
    x = (rng.normal(0, 1, (config.rows, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)).astype("float32")
    a, b = int(0.7 * config.rows), int(0.85 * config.rows)
    return Splits((x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), CLASS_NAMES)
'''

MODEL = '''
"""A one-hidden-layer network for the blobs."""

import keras

from common import registry


def build_blobs(config, data):
    inputs = keras.Input(shape=(data.train[0].shape[1],))
    x = registry.activation(config.activation)(keras.layers.Dense(config.units)(inputs))
    x = keras.layers.Dropout(config.dropout)(x)
    outputs = keras.layers.Dense(len(data.class_names), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="mlp")
'''

LESSON = '''
"""Two blobs: the smallest lesson, built from the pieces docs/layout.md's "Add a lesson" lists."""

# %% Setup
import dataclasses
import math
import typing

from common.cli import quiet_tensorflow, run, task_main

quiet_tensorflow()

from common import training  # noqa: E402
from common.config import TrainConfig, setting  # noqa: E402
from datasets import blobs  # noqa: E402
from models.blobs import build_blobs  # noqa: E402


# %% Settings
@dataclasses.dataclass
class BlobsConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "blobs"
    PROFILES: typing.ClassVar[dict] = {
        "smoke": dict(epochs=2, tensorboard=False, verbose=0), "quick": {}, "full": dict(epochs=50)}

    epochs: int = 10
    learning_rate: float = 0.02
    rows: int = setting(400, "data", "rows of generated blobs")
    units: int = setting(16, "model", "width of the hidden layer")
    activation: str = setting("relu", "model", "activation of the hidden layer", registry="activation")
    dropout: float = 0.0
    RANGES: typing.ClassVar[dict] = {"rows": ">= 20", "units": ">= 1", "dropout": "[0, 1)"}


# %% Data
def make_datasets(config, data):
    """tf.data batches of the three parts (train shuffled with the seed), as
    `common/training.py: TrainingData`."""
    import tensorflow as tf

    def batches(part, shuffle=False):
        dataset = tf.data.Dataset.from_tensor_slices(part)
        return (dataset.shuffle(len(part[1]), seed=config.seed) if shuffle
                else dataset).batch(config.batch_size)

    steps = math.ceil(len(data.train[1]) / config.batch_size)
    return training.TrainingData(batches(data.train, shuffle=True), batches(data.val), steps,
                                 test=batches(data.test), test_labels=data.test[1],
                                 class_names=data.class_names)


# %% Model and training
# The network is `models/blobs.py: build_blobs`; the loop is `common/training.py: train_classifier`.
def train(config):
    data = blobs.load(config)
    run_ = training.start_run(config, data.source)
    model = training.build_seeded(build_blobs, config, data)
    result = training.train_classifier(model, config, run_.folder(), make_datasets(config, data))
    summary = [{"model": "mlp", "metric": "test_accuracy", "value": result["test_accuracy"],
                "params": result["params"], "train_time_s": result["train_time_s"]}]
    training.finish_run(run_, config, {"mlp": result}, summary)
    return 0


# %% Tuning
TUNING = dict(config_cls=BlobsConfig, load_data=blobs.load, build_model=build_blobs,
              make_datasets=make_datasets)

main = task_main(BlobsConfig, train, __doc__)

if __name__ == "__main__":
    run(main)
'''

LESSON_TEST = '''
import json
from types import SimpleNamespace

import numpy as np

from datasets import blobs
from tasks.blobs import main


def test_load_keeps_every_row_once_in_both_classes():
    data = blobs.load(SimpleNamespace(rows=100))
    labels = np.concatenate([data.train[1], data.val[1], data.test[1]])
    assert len(labels) == 100 and set(labels.tolist()) == {0, 1}


def test_a_smoke_run_beats_chance(tmp_path):
    assert main(["--profile", "smoke", "--output-dir", str(tmp_path), "--run-id", "t"]) == 0
    summary = json.loads((tmp_path / "blobs" / "t" / "metrics.json").read_text())["summary"]
    assert summary[0]["value"] > 0.8
'''


def copy_source(target):
    """The repo's top-level scripts, pyproject.toml and every package (with its templates and data) less
    tests/ and benchmarks/: all a lesson, run_all.py, the tuner and the pages need."""
    target.mkdir()
    for path in [ROOT / "pyproject.toml", *ROOT.glob("*.py")]:
        shutil.copy2(path, target / path.name)
    for package in (p.parent for p in ROOT.glob("*/__init__.py") if p.parent.name not in SKIPPED):
        shutil.copytree(package, target / package.name, ignore=shutil.ignore_patterns("__pycache__"))


def add_lesson(repo):
    """The pieces docs/layout.md's "Add a lesson" lists, and nothing else."""
    for relative, text in ((f"tasks/{NAME}.py", LESSON), (f"datasets/{NAME}.py", DATASET),
                           (f"models/{NAME}.py", MODEL), (f"tests/{NAME}_test.py", LESSON_TEST)):
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(textwrap.dedent(text).lstrip())
    registry = repo / "tuning" / "tasks.py"
    source = registry.read_text()
    assert source.count("\nLESSONS = (") == 1
    registry.write_text(source.replace("\nLESSONS = (", f'\nLESSONS = ("{NAME}", ', 1))


def run(command, repo, env):
    result = subprocess.run([sys.executable, *command], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_a_new_lesson_from_the_listed_pieces_runs_everywhere(tmp_path):
    repo = tmp_path / "repo"
    copy_source(repo)
    add_lesson(repo)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "KERAS_TUTORIALS_DATA")}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(tmp_path / "keras_home"),
               KERAS_TUTORIALS_CACHE=str(tmp_path / "cache"), MPLCONFIGDIR=str(tmp_path / "matplotlib"))

    run(["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'pytest'}",
         f"tests/{NAME}_test.py"], repo, env)

    result = run(["run_all.py", "--profile", "smoke", "--tasks", NAME, "--output-dir",
                  str(tmp_path / "runs")], repo, env)
    rows = json.loads((tmp_path / "runs" / "summary.json").read_text())["rows"]
    assert [(r["task"], r["model"], r["metric"]) for r in rows] == [(NAME, "mlp", "test_accuracy")]
    assert rows[0]["value"] > 0.8  # two classes: chance is 0.5
    assert f"| {NAME} | tensorflow | mlp | test_accuracy |" in result.stdout
    assert (Path(rows[0]["run_dir"]) / "report.html").is_file()

    run(["-m", "tuning.search", "--task", NAME, "--profile", "smoke", "--max-trials", "2", "--verbose", "0",
         "--directory", str(tmp_path / "tuning_runs")], repo, env)
    search = tmp_path / "tuning_runs" / NAME / "random-smoke"
    best = json.loads((search / "best.json").read_text())
    assert best["task"] == NAME and {"learning_rate", "activation", "dropout"} <= set(best)
    assert "initializer" not in best  # a shared hyperparameter the lesson's config lacks is left out
    assert len(list(search.glob("trial_*/trial.json"))) == 2

    (tmp_path / "RESULTS.md").write_text("# Results\n")
    run(["-m", "pages", "--runs", str(tmp_path / "runs"), "--tuning-runs", str(tmp_path / "tuning_runs"),
         "--results", str(tmp_path / "RESULTS.md"), "--output", str(tmp_path / "site")], repo, env)
    page = (tmp_path / "site" / f"{NAME}.html").read_text()
    assert '<p class="label">models/blobs.py: build_blobs</p>' in page  # the named factory's source shown
    assert Path(rows[0]["run_dir"]).name in page  # the newest run
    assert f'href="{NAME}.html"' in (tmp_path / "site" / "index.html").read_text()
