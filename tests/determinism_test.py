"""Same seed, same machine, two processes: the same numbers (README: "--seed ... gives the same metrics").

Within one process a second run could reuse state the first left behind (a seeded generator, a cached
dataset); two fresh processes share nothing but the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tasks import imdb  # noqa: F401  (registers the layers and functions its saved models hold)

ROOT = Path(__file__).resolve().parents[1]
# What may differ between two runs of one recipe: how long things took, and where the run lives.
VARYING = ("train_time_s", "time_per_epoch_s", "folder", "run_dir")


def _run(task, root, output, run_id, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", f"tasks.{task}", "--profile", "smoke",
                             "--data-dir", str(root), "--output-dir", str(output),
                             "--run-id", run_id, *flags],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return output / task / run_id


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


@pytest.mark.slow
@pytest.mark.parametrize("task,flags", [("phone_price", ["--epochs", "10", "--max-rows", "400"]),
                                        ("imdb", ["--epochs", "1", "--ngram-epochs", "1"])])
def test_two_processes_with_one_seed_write_the_same_metrics(task, flags, tmp_path, request):
    root = request.getfixturevalue("phone_root" if task == "phone_price" else "imdb_root")
    first, second = (_run(task, root, tmp_path / "runs", run_id, *flags) for run_id in ("first", "second"))
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (first, second)]
    assert _without_times(metrics[0]) == _without_times(metrics[1])
    assert metrics[0]["results"]  # something was compared
    models = sorted(p.relative_to(first) for p in first.rglob("model.keras"))
    assert models == sorted(p.relative_to(second) for p in second.rglob("model.keras")) and models
    for relative in models:
        history = [(folder / relative).with_name("history.csv").read_text() for folder in (first, second)]
        assert history[0] == history[1], relative  # every epoch's loss and metrics, to the last digit
        weights = [keras.saving.load_model(folder / relative, compile=False).get_weights()
                   for folder in (first, second)]
        for a, b in zip(*weights, strict=True):
            np.testing.assert_array_equal(a, b)
