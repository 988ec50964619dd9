"""A search resumed in the other mode (issue 39): a plain search (`python -m tuning.search`) resumed with
`python -m tuning.distributed`, and a distributed one resumed as a plain search, keeps its finished trials
and counts them towards --max-trials; only new trials train.

KerasTuner 1.4.8 reloads a search only if the process's own `<tuner id>.json` is in the folder (tuner0.json
for a plain search, chief.json for a distributed chief); without the project's reload of oracle.json
(tuning/search.py, make_tuner) the finished trials were trained again and their files overwritten."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuning import search

ROOT = Path(__file__).resolve().parents[1]


def search_args(directory, data_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(data_root),
            "--directory", str(directory), "--epochs", "2", "--verbose", "0", *extra]


def trials(folder):
    """{trial id: trial.json contents}."""
    return {path.parent.name.removeprefix("trial_"): json.loads(path.read_text())
            for path in folder.glob("trial_*/trial.json")}


def trained_files(folder):
    """{path: (bytes, inode, mtime)} of every trial's trial.json and learning curves. A trial trained again
    rewrites them (whole, under a new inode) even where training is deterministic and the bytes come out
    the same."""
    paths = [*folder.glob("trial_*/trial.json"), *folder.glob("curves/*/execution-*.json")]
    return {path: (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns) for path in sorted(paths)}


def check_resumed(folder, before, expected):
    """Every file of the finished trials as it was, and `expected` trials in all, each a new point."""
    after = trained_files(folder)
    assert {path: after.get(path) for path in before} == before  # nothing finished was trained again
    final = trials(folder)
    assert len(final) == expected and all(t["status"] == "COMPLETED" for t in final.values())
    points = {json.dumps(t["hyperparameters"]["values"], sort_keys=True) for t in final.values()}
    assert len(points) == expected  # no configuration trained twice
    assert len((folder / "trials.csv").read_text().strip().splitlines()) == expected + 1


@pytest.mark.slow
def test_a_plain_search_resumed_with_tuning_distributed_keeps_its_finished_trials(tmp_path, phone_root, cli):
    directory = tmp_path / "tuning"
    folder = directory / "phone_price" / "random-smoke"
    code, _, err = cli(search.main, search_args(directory, phone_root, "--max-trials", "2"))
    assert code == 0, err
    assert (folder / "tuner0.json").exists() and not (folder / "chief.json").exists()
    before = trained_files(folder)
    assert len(before) == 4  # two trials, each with its trial.json and one execution's curves

    result = subprocess.run(
        [sys.executable, "-m", "tuning.distributed", "--workers", "1", "--timeout", "600", "--",
         *search_args(directory, phone_root, "--max-trials", "3")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "chief.json").exists()  # it ran as a distributed search
    check_resumed(folder, before, expected=3)


@pytest.mark.slow
@pytest.mark.parametrize("extra,expected", [
    (["--tuner", "random"], 3),
    (["--tuner", "bayesian"], 3),
    (["--tuner", "grid"], 3),  # the project's resumable grid (tuning/grid.py)
    (["--tuner", "hyperband"], None),  # its brackets decide: a finished one adds nothing
], ids=["random", "bayesian", "grid", "hyperband"])
def test_a_distributed_search_resumed_as_a_plain_search_keeps_its_finished_trials(tmp_path, phone_root, cli,
                                                                                  extra, expected):
    """A distributed search's folder holds the chief's chief.json, and tuner0.json only if a worker of that
    name finished a trial (not so for workers named otherwise on other machines, or stopped before): the
    folder below is that one, made cheaply (the tuner files are `{}` whatever the mode)."""
    directory = tmp_path / "tuning"
    code, _, err = cli(search.main, search_args(directory, phone_root, "--max-trials", "2", *extra))
    assert code == 0, err
    folder = next(directory.glob("phone_price/*"))
    (folder / "tuner0.json").rename(folder / "chief.json")
    before = trained_files(folder)
    finished = len(trials(folder))

    code, _, err = cli(search.main, search_args(directory, phone_root, "--max-trials", "3", *extra))
    assert code == 0, err
    check_resumed(folder, before, expected=expected or finished)
