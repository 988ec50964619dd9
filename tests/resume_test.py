"""Fault injection: lessons killed with SIGKILL at an epoch and rerun end exactly where an uninterrupted run
ends.

Each case runs the lesson's smoke profile three times in subprocesses with one seed: once whole, once killed
(SIGKILL, no chance to clean up) as soon as its training state shows the chosen epoch, and once more with the
same command to resume. The resumed run's metrics.json must equal the whole run's (every number but times),
its best checkpoint must hold the same weights, and every epoch must appear once in its history.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import datasets.imdb  # noqa: F401 (registers the custom objects that saved models of the lessons name)
import models.captioning  # noqa: F401
from common import training

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def lesson_command(module, data_root, runs, run_id, *flags):
    return [sys.executable, "-m", module, "--profile", "smoke", "--data-dir", str(data_root),
            "--output-dir", str(runs), "--run-id", run_id, "--no-tensorboard", *flags]


def run_whole(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def run_killed(command, state_file, epoch):
    """Start `command`, SIGKILL it once `state_file` records `epoch` finished epochs; True if it was
    killed."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=_env())
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if _epochs_done(state_file) >= epoch:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return True
            time.sleep(0.02)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _epochs_done(state_file):
    try:
        return json.loads(Path(state_file).read_text()).get("epoch", 0)
    except (OSError, ValueError):  # not written yet, or being replaced this instant
        return 0


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def numbers(metrics):
    """Every number of a metrics.json except wall times and folder names, which differ between runs."""
    if isinstance(metrics, dict):
        return {k: numbers(v) for k, v in metrics.items()
                if "time" not in k and not k.endswith(("per_s", "_dir")) and k != "folder"}
    if isinstance(metrics, list):
        return [numbers(v) for v in metrics]
    return metrics


def assert_same_run(whole, resumed, models=("",)):
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (whole, resumed))
    assert numbers(a["results"]) == numbers(b["results"])
    for model in models:
        history = training.read_history(resumed / model / "history.csv")
        assert history == training.read_history(whole / model / "history.csv")
        rows = (resumed / model / "history.csv").read_text().splitlines()[1:]
        assert len(rows) == len({row.split(",")[0] for row in rows})  # each epoch logged once
        best, same = (keras.saving.load_model(run / model / "checkpoint.keras", compile=False).get_weights()
                      for run in (whole, resumed))
        for x, y in zip(best, same, strict=True):
            np.testing.assert_array_equal(x, y)
    assert not list(resumed.rglob("backup")) and not (resumed / ".lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 4])
def test_phone_price_killed_and_resumed_ends_like_an_uninterrupted_run(tmp_path, phone_root, kill_at):
    runs = tmp_path / "runs"
    flags = ("--epochs", "12", "--no-linear-baseline", "--seed", str(kill_at))
    run_whole(lesson_command("tasks.phone_price", phone_root, runs, "whole", *flags))
    command = lesson_command("tasks.phone_price", phone_root, runs, "killed", *flags)
    assert run_killed(command, runs / "phone_price" / "killed" / "backup" / "state.json", kill_at)
    run_whole(command)
    assert_same_run(runs / "phone_price" / "whole", runs / "phone_price" / "killed")


@pytest.mark.slow
def test_two_model_run_killed_in_its_second_model_resumes_there(tmp_path, phone_root):
    runs = tmp_path / "runs"
    flags = ("--epochs", "10")
    run_whole(lesson_command("tasks.phone_price", phone_root, runs, "whole", *flags))
    command = lesson_command("tasks.phone_price", phone_root, runs, "killed", *flags)
    assert run_killed(command, runs / "phone_price" / "killed" / "baseline" / "backup" / "state.json", 3)
    resumed = run_whole(command)
    assert "already trained, skipped" in resumed.stdout  # the first model was not trained again
    assert_same_run(runs / "phone_price" / "whole", runs / "phone_price" / "killed", models=("", "baseline"))


@pytest.mark.slow
def test_cifar10_killed_and_resumed_ends_like_an_uninterrupted_run(tmp_path, cifar_root):
    runs = tmp_path / "runs"
    flags = ("--epochs", "4", "--max-images", "200")
    run_whole(lesson_command("tasks.cifar10", cifar_root, runs, "whole", *flags))
    command = lesson_command("tasks.cifar10", cifar_root, runs, "killed", *flags)
    assert run_killed(command, runs / "cifar10" / "killed" / "backup" / "state.json", 2)
    run_whole(command)
    assert_same_run(runs / "cifar10" / "whole", runs / "cifar10" / "killed")


@pytest.mark.slow
def test_imdb_killed_and_resumed_ends_like_an_uninterrupted_run(tmp_path, imdb_root):
    runs = tmp_path / "runs"
    # dropout: its random state must resume too
    flags = ("--epochs", "3", "--no-ngram-reference", "--dropout", "0.3")
    run_whole(lesson_command("tasks.imdb", imdb_root, runs, "whole", *flags))
    command = lesson_command("tasks.imdb", imdb_root, runs, "killed", *flags)
    assert run_killed(command, runs / "imdb" / "killed" / "backup" / "state.json", 1)
    run_whole(command)
    assert_same_run(runs / "imdb" / "whole", runs / "imdb" / "killed")


@pytest.mark.slow
def test_captioning_killed_and_resumed_ends_like_an_uninterrupted_run(tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "data").mkdir()  # the shapes data set is drawn, not read: an empty data root
    flags = ("--epochs", "4", "--shapes-count", "200")
    run_whole(lesson_command("tasks.captioning", tmp_path / "data", runs, "whole", *flags))
    command = lesson_command("tasks.captioning", tmp_path / "data", runs, "killed", *flags)
    assert run_killed(command, runs / "captioning" / "killed" / "backup" / "state.json", 2)
    run_whole(command)
    assert_same_run(runs / "captioning" / "whole", runs / "captioning" / "killed")
