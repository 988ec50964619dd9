"""The tasks.distributed launcher and the workers' scratch folders (issue 39): planted links, a command that
does not exist, a dying worker's cluster, and relative paths from another folder.

Every launcher runs in its own process group, which the test kills whatever happens.
"""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from conftest import kill_worker_after_epoch, write_phone_csv

from common import distribution

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 420


def launch(args, cwd=ROOT, on_line=None):
    """`python -m tasks.distributed ARGS` in its own process group; returns (exit code, stdout, stderr).
    `on_line(line)` sees each stdout line as it comes."""
    command = [sys.executable, "-m", "tasks.distributed", "--timeout", str(TIMEOUT_S - 60), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    out, err = [], []

    def read(pipe, lines, callback):
        for line in pipe:
            lines.append(line)
            if callback:
                callback(line)

    readers = [threading.Thread(target=read, args=(process.stdout, out, on_line), daemon=True),
               threading.Thread(target=read, args=(process.stderr, err, None), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=TIMEOUT_S)
        for reader in readers:
            reader.join(timeout=10)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    return process.returncode, "".join(out), "".join(err)


def victim(tmp_path):
    """A folder of files that no cleaning may touch, and its bytes."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_bytes(b"keep me\n")
    (folder / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return folder, snapshot(folder)


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------------- scratch folders
def test_a_workers_scratch_folder_never_follows_planted_links(tmp_path, monkeypatch):
    """A link planted at the old predictable name, and links planted inside the folder while it runs: the
    scratch folder is a new private one, and removing it removes the links, never their targets' files."""
    folder, before = victim(tmp_path)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    worker = distribution.Setup("multi_worker", worker_index=1, workers=2)
    monkeypatch.setattr(distribution, "_ACTIVE", worker)
    planted = temp / "keras-tutorials-phone_price-myid-worker1"
    planted.symlink_to(folder, target_is_directory=True)

    run = distribution.scratch_run(types.SimpleNamespace(TASK="phone_price", run_id="myid"))
    assert run.path.parent == temp and run.path != planted and not run.path.is_symlink()
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700  # private: nobody else can plant anything in it
    assert snapshot(folder) == before
    (run.path / "linked-folder").symlink_to(folder, target_is_directory=True)
    (run.path / "linked-file").symlink_to(folder / "precious.txt")
    (run.path / "own.txt").write_text("scratch\n")
    run.close()
    assert not run.path.exists() and planted.is_symlink()
    assert snapshot(folder) == before


def test_removing_a_link_in_place_of_a_folder_removes_only_the_link(tmp_path):
    folder, before = victim(tmp_path)
    link = tmp_path / "scratch"
    link.symlink_to(folder, target_is_directory=True)
    distribution.remove_folder(link)
    assert not link.exists() and not link.is_symlink() and snapshot(folder) == before


# ---------------------------------------------------------------------------------------------- launcher
def test_a_command_that_does_not_exist_is_one_sentence(tmp_path):
    code, out, err = launch(["--workers", "2", "--", "nosuchcommand-keras-tutorials", "--epochs", "1"],
                            cwd=tmp_path)
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: cannot start the lesson's command 'nosuchcommand-keras-tutorials' (No such file or "
        "directory); expected a program such as python, e.g. -- python -m tasks.phone_price --profile smoke."]
    assert "started" not in out and list(tmp_path.iterdir()) == []


# A stand-in lesson: every process says it is ready on stderr; the chief, stopped by the launcher, raises
# from its SIGTERM handler (a traceback, as a collective that lost its peer would print); worker 1 waits
# until the chief can raise (its ready file), then is SIGKILLed or raises an error of its own.
FAKE_LESSON = """
import os, signal, sys, time
from pathlib import Path
i = int(sys.argv[sys.argv.index('--worker-index') + 1])
folder, how = Path(sys.argv[1]), sys.argv[2]
def stopped(*_):
    raise RuntimeError('collective lost its peer')
signal.signal(signal.SIGTERM, stopped)
print('ready', i, file=sys.stderr, flush=True)
if i == 0:
    (folder / 'chief-ready').write_text('')
    time.sleep(120)
while not (folder / 'chief-ready').exists():
    time.sleep(0.01)
if how == 'kill':
    os.kill(os.getpid(), signal.SIGKILL)
raise ValueError('the worker broke')
"""


def test_a_killed_workers_cluster_prints_one_line_and_no_traceback(tmp_path):
    code, out, err = launch(["--workers", "2", "--", "python", "-c", FAKE_LESSON, str(tmp_path), "kill"])
    assert code == 1, err
    assert "[worker1] ready 1" in err  # the failed process's own error output is kept
    assert err.strip().splitlines()[-1] == ("worker1 ended with exit code -9; every other process was "
                                            "stopped; their error output after that is left out")
    assert "Traceback" not in err and "collective lost its peer" not in err
    chief = int(re.search(r"started chief \(pid (\d+)\)", out).group(1))
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(chief, 0)


def test_the_first_failed_workers_own_traceback_is_shown_and_the_others_left_out(tmp_path):
    code, _, err = launch(["--workers", "2", "--", "python", "-c", FAKE_LESSON, str(tmp_path), "raise"])
    assert code == 1, err
    assert "[worker1] Traceback (most recent call last):" in err
    assert "[worker1] ValueError: the worker broke" in err
    assert "[chief] Traceback" not in err and "collective lost its peer" not in err
    assert err.strip().splitlines()[-1].startswith("worker1 ended with exit code 1; every other process was "
                                                   "stopped")


# -------------------------------------------------------------------------------------- a real lesson
LESSON = ("python", "-m", "tasks.phone_price", "--profile", "smoke", "--no-baseline", "--verbose", "2")


@pytest.mark.slow
def test_relative_paths_are_taken_from_the_callers_folder(tmp_path):
    """Launched from another folder: a relative --config, --data-dir and --output-dir are the caller's."""
    write_phone_csv(tmp_path / "data" / "mobile_price" / "train.csv", rows=400, seed=0)
    (tmp_path / "settings.json").write_text(json.dumps({"epochs": 2}))
    code, out, err = launch(["--workers", "2", "--", *LESSON, "--config", "settings.json", "--data-dir",
                             "data", "--output-dir", "runs", "--run-id", "relative"], cwd=tmp_path)
    assert code == 0, err[-3000:]
    run = tmp_path / "runs" / "phone_price" / "relative"
    assert (run / "metrics.json").is_file()
    assert json.loads((run / "config.json").read_text())["epochs"] == 2  # the caller's settings.json
    assert not (ROOT / "runs" / "phone_price" / "relative").exists()
    scratch = re.search(r"scratch folder (\S+)", out).group(1)
    assert not Path(scratch).exists() and not Path(scratch).parent.exists()


@pytest.mark.slow
def test_a_killed_lesson_worker_leaves_the_launchers_one_line_and_no_traceback(tmp_path):
    """SIGKILL worker 1 of a real lesson once the chief has saved epoch 2: the chief's collectives fail with
    TensorFlow's traceback, which the launcher leaves out; its scratch folder goes too."""
    write_phone_csv(tmp_path / "data" / "mobile_price" / "train.csv", rows=400, seed=0)
    state = tmp_path / "runs" / "phone_price" / "killed" / "backup" / "state.json"
    kill_after_epoch_2, killed = kill_worker_after_epoch(state, 2, TIMEOUT_S)

    code, out, err = launch(["--workers", "2", "--", *LESSON, "--epochs", "50", "--data-dir", "data",
                             "--output-dir", "runs", "--run-id", "killed"], cwd=tmp_path,
                            on_line=kill_after_epoch_2)
    assert killed, err[-3000:]
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("worker1 ended with exit code -9; every other process was "
                                                   "stopped")
    assert "Traceback" not in err
    scratch = re.search(r"scratch folder (\S+)", out).group(1)
    assert not Path(scratch).exists()
