"""Search folders under interruption and misuse: kill and resume, changed recipes, the lock, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import keras
import keras_tuner
import pytest

from tuning import report, search
from tuning.grid import grid_search

ROOT = Path(__file__).resolve().parents[1]
KILL_TIMEOUT = 600  # seconds to wait for the first finished trial: generous, the test machine may be busy


def search_args(tmp_path, phone_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(phone_root),
            "--directory", str(tmp_path / "tuning"), "--epochs", "2", "--verbose", "0", *extra]


def trials(folder):
    """{trial id: trial.json contents} of the trials KerasTuner wrote so far."""
    found = {}
    for path in folder.glob("trial_*/trial.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being written
        found[data["trial_id"]] = data
    return found


def completed(folder):
    return {tid: t for tid, t in trials(folder).items() if t["status"] == "COMPLETED"}


def snapshot(folder):
    """Every file under `folder` with its bytes: what a refused command must leave as it was."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def kill_after_first_trial(args, folder):
    """Start `python -m tuning.search args`, SIGKILL it once a trial has finished; return the finished."""
    process = subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + KILL_TIMEOUT
    try:
        while not completed(folder):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    return completed(folder)


def rerun(args):
    result = subprocess.run([sys.executable, "-m", "tuning.search", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=KILL_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# ---------------------------------------------------------------------------------------------- grid oracle
class ToyHyperModel(keras_tuner.HyperModel):
    """Six grid points; `fit` scores them without training and raises KeyboardInterrupt on call `stop_at`."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.calls, self.stop_at = 0, stop_at

    def build(self, hp):
        hp.Choice("letter", ["a", "b"])
        hp.Choice("number", [1, 2, 3])
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

    def fit(self, hp, model, *args, **kwargs):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt  # not an Exception: KerasTuner lets it through, like a kill mid-trial
        return {"score": float(hp.values["number"])}


GRID = [(letter, number, "COMPLETED") for letter in "ab" for number in (1, 2, 3)]


def toy_search(folder, max_trials=None, stop_at=None):
    tuner = grid_search(ToyHyperModel(stop_at), keras_tuner.Objective("score", "max"), max_trials=max_trials,
                        directory=str(folder), project_name="grid")
    try:
        tuner.search(verbose=0)
    except KeyboardInterrupt:
        pass
    return {tid: (t["hyperparameters"]["values"]["letter"], t["hyperparameters"]["values"]["number"],
                  t["status"]) for tid, t in trials(folder / "grid").items()}


@pytest.mark.slow
def test_grid_search_interrupted_mid_trial_completes_the_grid_without_repeats(tmp_path):
    """KerasTuner's own GridSearch dies with KeyError here (keras-team/keras-tuner#1055)."""
    before = toy_search(tmp_path, stop_at=3)
    assert sorted(before.values())[:2] == [("a", 1, "COMPLETED"), ("a", 2, "COMPLETED")]
    assert len(before) == 3  # the third was running when interrupted
    after = toy_search(tmp_path)
    assert sorted(after.values()) == GRID
    assert all(after[tid] == before[tid][:2] + ("COMPLETED",) for tid in before)  # same ids, same points


@pytest.mark.slow
def test_finished_grid_rerun_with_more_trials_adds_the_missing_ones(tmp_path):
    assert len(toy_search(tmp_path, max_trials=2)) == 2
    assert len(toy_search(tmp_path, max_trials=4)) == 4
    assert sorted(toy_search(tmp_path, max_trials=10).values()) == GRID


# -------------------------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
@pytest.mark.parametrize("extra,expected", [
    (["--compare", "dropout", "--seeds", "1"], 4),  # a grid: every value once
    (["--tuner", "random", "--max-trials", "3"], 3),
])
def test_search_killed_mid_search_resumes_without_repeating_trials(tmp_path, phone_root, extra, expected):
    args = search_args(tmp_path, phone_root, *extra)
    name = "compare-dropout-smoke" if "--compare" in extra else "random-smoke"
    folder = tmp_path / "tuning" / "phone_price" / name
    finished = kill_after_first_trial(args, folder)
    assert 1 <= len(finished) < expected  # killed mid-search, not after it
    kept = {tid: (folder / f"trial_{tid}" / "trial.json").read_bytes() for tid in finished}

    rerun(args)
    final = trials(folder)
    assert len(final) == expected and all(t["status"] == "COMPLETED" for t in final.values())
    points = [json.dumps(t["hyperparameters"]["values"], sort_keys=True) for t in final.values()]
    assert len(set(points)) == expected  # no configuration trained twice
    assert all((folder / f"trial_{tid}" / "trial.json").read_bytes() == data for tid, data in kept.items())
    assert len((folder / "trials.csv").read_text().strip().splitlines()) == expected + 1
    if "--compare" in extra:
        assert {t["hyperparameters"]["values"]["dropout"] for t in final.values()} == {0.0, 0.2, 0.4, 0.6}
        assert all(len(list(d.glob("execution-*.json"))) == 1 for d in (folder / "curves").iterdir())


def test_a_kill_between_keras_tuners_two_saves_neither_loses_nor_repeats_a_trial():
    """trial.json is written before oracle.json: a trial RUNNING on disk but not listed as ongoing is retried,
    one COMPLETED on disk but still listed is not trained again."""
    from keras_tuner.engine.trial import Trial, TrialStatus

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=4)
    oracle.trials = {tid: Trial(oracle.hyperparameters.copy(), trial_id=tid, status=status)
                     for tid, status in (("0", TrialStatus.COMPLETED), ("1", TrialStatus.COMPLETED),
                                         ("2", TrialStatus.RUNNING), ("3", TrialStatus.RUNNING))}
    oracle._retry_queue = ["1", "3"]  # what reload() makes of oracle.json's ongoing trials
    search.recover_interrupted_trials(oracle)
    assert sorted(oracle._retry_queue) == ["2", "3"]


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.slow
def test_a_changed_recipe_is_refused_and_overwrite_starts_afresh(tmp_path, phone_root, cli):
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1"))
    assert code == 0
    before = snapshot(folder)
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "2", "--epochs", "3",
                                                "--objective", "val_loss"))
    assert code == 2 and "other settings" in err and "Traceback" not in err
    assert "epochs: 2 then, 3 now" in err and "objective" in err and "--overwrite" in err
    assert snapshot(folder) == before
    # Verbosity, a larger --max-trials and the data folder's path do not change results: resumed.
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "2", "--verbose", "1"))
    assert code == 0 and len(completed(folder)) == 2
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1", "--epochs", "3",
                                              "--overwrite"))
    assert code == 0 and len(trials(folder)) == 1
    assert json.loads((folder / "search.json").read_text())["base_config"]["epochs"] == 3


def test_a_second_process_on_a_search_folder_is_refused(tmp_path, phone_root, cli):
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    folder.mkdir(parents=True)
    lock_path = folder / ".lock"
    holder = filelock.FileLock(str(lock_path), timeout=0)
    with holder:
        lock_path.write_text(f"{os.getpid()}\n")  # a holder records its process id, as the search does
        before = snapshot(folder)
        code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1"))
        assert snapshot(folder) == before
    assert code == 2 and "in use by another process" in err and f"process {os.getpid()}" in err
    assert "Traceback" not in err and not list(folder.glob("trial_*"))


@pytest.mark.parametrize("case", ["directory is a file", "objective", "name is a path", "foreign folder"])
def test_misuse_is_refused_before_anything_is_written(tmp_path, phone_root, cli, case):
    target = tmp_path / "tuning"
    extra, fragment = [], ""
    if case == "directory is a file":
        target.write_text("not a folder\n")
        fragment = "is a file where the search needs a folder"
    elif case == "objective":
        extra, fragment = ["--objective", "val_bogus"], "--objective val_bogus is not a metric the phone"
    elif case == "name is a path":
        extra, fragment = ["--name", "../escaped"], "--name must be a plain name"
    else:
        (target / "phone_price" / "random-smoke").mkdir(parents=True)
        (target / "phone_price" / "random-smoke" / "notes.txt").write_text("someone's file\n")
        fragment = "was not written by python -m tuning.search"
    before = snapshot(tmp_path)
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1", *extra))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_a_search_where_every_trial_fails_does_not_exit_0(tmp_path, phone_root, cli):
    config = tmp_path / "diverge.json"
    config.write_text(json.dumps({"learning_rate": 1e8}))  # the first compared optimizer, sgd, diverges
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--compare", "optimizer", "--seeds",
                                                "1", "--config", str(config), "--max-failures", "1"))
    assert code == 2 and "failed trials in a row" in err and "NaN" in err


def test_a_read_only_search_folder_is_refused(tmp_path, phone_root, cli, monkeypatch):
    root = tmp_path / "tuning"
    root.mkdir()
    root.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: let the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != root and real_access(path, mode))
    try:
        code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1"))
    finally:
        root.chmod(0o755)
    assert code == 2 and f"{root} is not writable" in err and "Traceback" not in err
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("damaged", ["trial_0/trial.json", "search.json"])
def test_report_names_a_damaged_file(tmp_path, cli, damaged):
    folder = tmp_path / "search"
    (folder / "trial_0").mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps(
        {"task": "phone_price", "tuner": "random", "profile": "smoke", "objective": "val_accuracy"}))
    trial = {"trial_id": "0", "status": "COMPLETED", "score": 0.5,
             "hyperparameters": {"space": [], "values": {}}}
    (folder / "trial_0" / "trial.json").write_text(json.dumps(trial))
    (folder / damaged).write_text('{"trial_id": "0", "hyperpa')  # cut off mid-write
    code, _, err = cli(report.main, [str(folder)])
    assert code == 2 and f"{folder / damaged} is not a readable" in err and "Traceback" not in err
