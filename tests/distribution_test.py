"""--distribution (common/distribution.py) and the tasks.distributed launcher, on CPU, in subprocesses.

Every mode trains the same tiny model (tests/distribution_probe.py) from the same initial weights on the same
global batches, and must end with the one-device weights within 1e-5: mirrored over 2 logical CPU devices,
multi_worker with 2 loopback workers through the launcher, data_parallel over 2 JAX host devices (XLA_FLAGS).
Measured here: 6e-8 without batch norm; 6e-8 with synchronised batch norm, 0.13 with per-replica statistics
(the contrast); 1.5e-5 under mixed precision (float16 rounding). A lesson (phone price, smoke profile) runs
with 2 workers through the launcher, matches a one-process run, and, with one worker SIGKILLed after epoch 2
and the cluster restarted, ends with the same metrics and history.

Ports are chosen free by the launcher (bind to port 0); every launcher runs in its own process group, which
the test kills whatever happens.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_worker_after_epoch, write_phone_csv

from common import distribution
from common.config import TrainConfig, build_config
from common.errors import UserError
from tasks import distributed

ROOT = Path(__file__).resolve().parents[1]
PROBE = ["python", "tests/distribution_probe.py"]
TIMEOUT_S = 420
EXACT = 1e-5


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run(command, env=None, timeout=TIMEOUT_S, on_line=None):
    """Run a command in its own process group, stdout and stderr merged; returns (exit code, output). The
    whole group (a launcher and its workers) is killed when the command ends or times out. `on_line(line,
    output)` sees each line as it comes."""
    command = [sys.executable if part == "python" else part for part in command]
    process = subprocess.Popen(command, cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []

    def read():
        for line in process.stdout:
            lines.append(line)
            if on_line:
                on_line(line, lines)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout=timeout)
        reader.join(timeout=10)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    return process.returncode, "".join(lines)


def launcher(*args):
    return ["python", "-m", "tasks.distributed", "--timeout", str(TIMEOUT_S - 60), *args]


def difference(a, b):
    a, b = np.load(a), np.load(b)
    assert list(a) == list(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ------------------------------------------------------------------------------------------ same weights
@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """One process, 2 logical CPU devices: every case without distribution, then under MirroredStrategy."""
    out = tmp_path_factory.mktemp("mirrored")
    code, output = run([*PROBE, "--out", str(out), "--distribution", "mirrored", "--cpus", "2", "--baseline",
                        "--cases", "plain,bn,bn-unsync,mp"])
    assert code == 0, output[-3000:]
    return out, output


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_ends_with_the_one_device_weights(mirrored):
    out, output = mirrored
    assert "mirrored plain: replicas 2" in output
    assert difference(out / "none-plain.npz", out / "mirrored-plain.npz") < EXACT
    # Mixed precision keeps working under the strategy (the policy survives build_seeded's clear_session);
    # float16 compute rounds differently on half batches: measured 1.5e-5.
    assert "mirrored mp: replicas 2, policy mixed_float16" in output
    assert difference(out / "none-mp.npz", out / "mirrored-mp.npz") < 1e-4


def test_batch_norm_statistics_are_synchronised_across_replicas(mirrored):
    out, _ = mirrored
    synchronised = difference(out / "none-bn.npz", out / "mirrored-bn.npz")
    per_replica = difference(out / "none-bn-unsync.npz", out / "mirrored-bn-unsync.npz")
    assert synchronised < EXACT  # measured 6e-8
    assert per_replica > 100 * EXACT  # measured 0.13: each replica normalised its half batch alone


@pytest.mark.slow
def test_two_loopback_workers_end_with_the_one_device_weights(mirrored, tmp_path):
    out, _ = mirrored
    code, output = run(launcher("--workers", "2", "--", *PROBE, "--out", str(tmp_path),
                                "--cases", "plain,bn"))
    assert code == 0, output[-3000:]
    assert ("[chief] multi_worker plain: replicas 2" in output
            and "[worker1] multi_worker plain: replicas 2" in output)
    for case in ("plain", "bn"):
        for worker in ("", "-worker1"):
            assert difference(out / f"none-{case}.npz", tmp_path / f"multi_worker-{case}{worker}.npz") < EXACT


@pytest.mark.slow
@pytest.mark.skipif(not __import__("importlib").util.find_spec("jax"), reason="jax is not installed")
def test_jax_data_parallel_on_two_host_devices_ends_with_the_one_device_weights(tmp_path):
    """97 rows: the last batch of each pass (1 row) cannot split over 2 devices and is replicated instead."""
    env = _env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    code, output = run([*PROBE, "--out", str(tmp_path), "--distribution", "data_parallel", "--baseline",
                        "--cases", "plain,bn", "--rows", "97"], env=env)
    assert code == 0, output[-3000:]
    assert "data_parallel plain: replicas 2" in output
    for case in ("plain", "bn"):
        assert difference(tmp_path / f"none-{case}.npz", tmp_path / f"data_parallel-{case}.npz") < EXACT


@pytest.mark.slow
@pytest.mark.skipif(not __import__("importlib").util.find_spec("jax"), reason="jax is not installed")
def test_jax_data_parallel_across_two_processes_ends_with_the_one_device_weights(tmp_path):
    """keras.distribution.initialize on loopback through the launcher (training; lessons refuse it)."""
    env = _env(KERAS_BACKEND="jax")
    code, output = run([*PROBE, "--out", str(tmp_path), "--cases", "plain"], env=env)
    assert code == 0, output[-3000:]
    code, output = run(launcher("--workers", "2", "--mode", "data_parallel", "--", *PROBE, "--out",
                                str(tmp_path), "--cases", "plain"), env=env)
    assert code == 0, output[-3000:]
    assert "[worker1] data_parallel plain: replicas 2" in output
    for worker in ("", "-worker1"):
        assert difference(tmp_path / "none-plain.npz", tmp_path / f"data_parallel-plain{worker}.npz") < EXACT


# ----------------------------------------------------------------------------------- a lesson, 2 workers
LESSON_FLAGS = ("--profile", "smoke", "--no-baseline", "--epochs", "10", "--verbose", "2")


def lesson(data, runs, run_id):
    return ["python", "-m", "tasks.phone_price", *LESSON_FLAGS, "--data-dir", str(data), "--output-dir",
            str(runs), "--run-id", run_id]


def numbers(metrics):
    """A metrics.json's results without wall times and folder names."""
    if isinstance(metrics, dict):
        return {k: numbers(v) for k, v in metrics.items() if "time" not in k and k != "folder"}
    return [numbers(v) for v in metrics] if isinstance(metrics, list) else metrics


def assert_close_runs(a, b):
    first, second = (numbers(json.loads((run / "metrics.json").read_text())["results"])["fnn"]
                     for run in (a, b))
    assert first["confusion_matrix"] == second["confusion_matrix"] and first["epochs"] == second["epochs"]
    for key in ("test_loss", "test_accuracy", "best_val_accuracy"):
        assert first[key] == pytest.approx(second[key], abs=EXACT)
    rows = [np.loadtxt(run / "history.csv", delimiter=",", skiprows=1) for run in (a, b)]
    np.testing.assert_allclose(rows[0], rows[1], atol=EXACT)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """A phone-price lesson trained by 2 loopback workers through the launcher, uninterrupted."""
    root = tmp_path_factory.mktemp("lesson")
    write_phone_csv(root / "data" / "mobile_price" / "train.csv", rows=400, seed=0)
    code, output = run(launcher("--workers", "2", "--", *lesson(root / "data", root / "runs", "whole")))
    return root, code, output


@pytest.mark.slow
def test_launcher_runs_a_lesson_and_only_the_chief_writes_the_run_folder(two_workers):
    root, code, output = two_workers
    assert code == 0, output[-3000:]
    assert [p.name for p in (root / "runs").iterdir()] == ["phone_price"]
    assert [p.name for p in (root / "runs" / "phone_price").iterdir()] == ["whole"]
    assert (root / "runs" / "phone_price" / "whole" / "metrics.json").is_file()
    scratch = re.search(r"scratch folder (\S+)", output).group(1)
    assert not Path(scratch).exists()  # the worker's folder is gone
    lines = [line for line in output.splitlines() if line]
    own = [line for line in lines if line.startswith(("started ", "chief ", "worker1 "))]
    assert all(line.startswith(("[chief] ", "[worker1] ")) for line in lines if line not in own)
    assert any(line.startswith("[worker1] Epoch 10/10") for line in lines)
    assert "[chief] run folder: " in output and "[worker1] worker 1: done" in output


@pytest.mark.slow
def test_two_workers_end_like_one_process(two_workers):
    root, code, output = two_workers
    assert code == 0, output[-3000:]
    code, output = run(lesson(root / "data", root / "runs-single", "single"))
    assert code == 0, output[-3000:]
    assert_close_runs(root / "runs" / "phone_price" / "whole",
                      root / "runs-single" / "phone_price" / "single")


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_like_an_uninterrupted_one(two_workers):
    """SIGKILL worker 1 once the chief has saved epoch 2; the launcher restarts the cluster (--max-restarts),
    the chief resumes from its run folder and worker 1 takes the chief's state."""
    root, code, _ = two_workers
    assert code == 0
    state = root / "runs" / "phone_price" / "killed" / "backup" / "state.json"
    kill_after_epoch_2, killed = kill_worker_after_epoch(state, 2, TIMEOUT_S)

    code, output = run(launcher("--workers", "2", "--max-restarts", "1", "--",
                                *lesson(root / "data", root / "runs", "killed")), on_line=kill_after_epoch_2)
    assert code == 0, output[-3000:]
    assert killed and "ended with exit code" in output  # worker 1's -9, or the chief's error it caused
    assert "restarting all 2 processes (1 of 1)" in output
    resumed = re.search(r"\[worker1\] \S+: resuming after epoch (\d+)", output)
    assert resumed and 2 <= int(resumed.group(1)) < 10  # the worker, too, went on from the chief's epoch
    assert_close_runs(root / "runs" / "phone_price" / "whole", root / "runs" / "phone_price" / "killed")


# ------------------------------------------------------------------------------------ launcher exit codes
FAKE_LESSON = ("import sys, time; i = int(sys.argv[sys.argv.index('--worker-index') + 1]); "
               "print('worker', i, 'of', sys.argv[sys.argv.index('--workers') + 1], flush=True); "
               "codes = [int(c) for c in sys.argv[1].split(',')]; time.sleep(60 if codes[i] < 0 else 0.5); "
               "print('finished', i, flush=True); sys.exit(codes[i])")


def test_launcher_returns_the_chiefs_exit_code_with_prefixed_output():
    code, output = run(launcher("--workers", "3", "--", "python", "-c", FAKE_LESSON, "5,0,0"))
    assert code == 5
    assert re.search(r"^\[chief\] worker 0 of 127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$", output,
                     re.M)
    assert "[worker1] worker 1 of" in output and "[worker2] worker 2 of" in output


def test_a_failing_worker_stops_the_cluster_and_its_code_is_returned():
    started = time.monotonic()
    code, output = run(launcher("--workers", "2", "--", "python", "-c", FAKE_LESSON, "-1,3"))
    assert code == 3
    assert "worker1 ended with exit code 3; every other process was stopped" in output
    assert "[worker1] finished 1" in output and "[chief] finished 0" not in output  # the chief was stopped
    assert time.monotonic() - started < 45  # not the chief's 60 s
    chief = int(re.search(r"started chief \(pid (\d+)\)", output).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(chief, 0)


@pytest.mark.parametrize("args, message", [
    ([], "give the lesson's command after --"),
    (["--", "python", "-m", "tasks.phone_price", "--distribution", "mirrored"],
     "the launcher runs multi_worker"),
    (["--", "python", "-m", "tasks.phone_price", "--workers", "a:1"], "the launcher sets --workers itself"),
    (["--max-restarts", "1", "--", "python", "-m", "tasks.phone_price"], "--max-restarts needs a --run-id"),
    (["--workers", "0", "--", "python", "-m", "tasks.phone_price"], "--workers must be at least 1"),
])
def test_launcher_refusals(cli, args, message):
    code, _, err = cli(distributed.main, args)
    assert code == 2 and message in err


# -------------------------------------------------------------------------------------------- refusals
def config(**values):
    return build_config(TrainConfig, overrides=values)


@pytest.mark.parametrize("backend, mode", [("tensorflow", "data_parallel"), ("jax", "mirrored"),
                                           ("jax", "multi_worker"), ("torch", "mirrored"),
                                           ("torch", "data_parallel")])
def test_a_backend_that_cannot_run_the_mode_is_refused(monkeypatch, backend, mode):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(UserError, match=f"--distribution {mode} uses .* which runs only on the "
                                        f"(tensorflow|jax) backend, not on {backend}"):
        distribution.check(config(distribution=mode))


@pytest.mark.parametrize("values, message", [
    (dict(distribution="multi_worker"), "needs the cluster: --workers host:port"),
    (dict(distribution="multi_worker", workers="a:1,b:2"), "--worker-index must be this process's place"),
    (dict(distribution="multi_worker", workers="a:1,b:2", worker_index=2), "0 to 1"),
    (dict(distribution="multi_worker", workers="a:1,a:1", worker_index=0), "lists an address twice"),
    (dict(distribution="multi_worker", workers="a,b:2", worker_index=0), "expects host:port"),
    (dict(distribution="mirrored", workers="a:1,b:2", worker_index=0), "need --distribution multi_worker"),
    (dict(distribution="none", worker_index=0), "need --distribution multi_worker or data_parallel"),
])
def test_a_cluster_that_does_not_add_up_is_refused(monkeypatch, values, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match=re.escape(message)):
        distribution.check(config(**values))


def test_tf_config_names_the_chief(monkeypatch):
    cluster = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert distribution.tf_config_cluster() == (2, 3)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["w:1"]}, "task": {"type": "worker",
                                                                                           "index": 0}}))
    assert distribution.tf_config_cluster() == (0, 1)
    distribution.check(config(distribution="multi_worker"))  # the cluster comes from TF_CONFIG
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG must be JSON"):
        distribution.tf_config_cluster()


@pytest.mark.slow
def test_a_lesson_refuses_a_mode_its_backend_cannot_run():
    """The whole CLI path: one sentence, exit code 2, no run folder."""
    code, output = run(["python", "-m", "tasks.phone_price", "--profile", "smoke", "--distribution",
                        "data_parallel", "--output-dir", "/nonexistent-never-created"])
    assert code == 2
    assert "error: --distribution data_parallel uses keras.distribution.DataParallel, which runs only on " \
           "the jax backend, not on tensorflow" in output
    assert "Traceback" not in output and not Path("/nonexistent-never-created").exists()


def test_the_tuner_refuses_multi_worker_trials(cli, tmp_path):
    from tuning import search

    code, _, err = cli(search.main, ["--task", "phone_price", "--distribution", "multi_worker",
                                     "--directory", str(tmp_path)])
    assert code == 2 and "KerasTuner runs one trial per process" in err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ set up once
@pytest.fixture
def fresh_setup(monkeypatch):
    """This process as it starts, and back as it was after the test: no distribution set up yet."""
    monkeypatch.setattr(distribution, "_ACTIVE", distribution.Setup())
    monkeypatch.setattr(distribution, "_STARTED_FOR", None)
    started, real_start = [], distribution._start
    monkeypatch.setattr(distribution, "_start", lambda config: started.append(config.distribution)
                        or real_start(config))
    return started


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["none", "mirrored"])
def test_a_lesson_sets_its_distribution_up_once_per_run(fresh_setup, monkeypatch, cli, tmp_path, phone_root,
                                                        mode):
    """The command line, `start_run` and every `build_seeded` ask for the distribution (a lesson or a tool
    may start at any of them); only the first call of the run starts it (measured: 4 calls, a model and its
    baseline)."""
    from tasks import phone_price

    calls, real_setup = [], distribution.setup
    monkeypatch.setattr(distribution, "setup", lambda config: calls.append(config) or real_setup(config))
    code, out, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root),
                                            "--output-dir", str(tmp_path / "runs"), "--run-id", "once",
                                            "--distribution", mode])
    assert code == 0, err
    assert fresh_setup == [mode]
    assert len(calls) >= 3  # task_main, start_run, build_seeded (per model)
    assert out.count("distribution: mirrored") == (mode == "mirrored")
    assert (tmp_path / "runs" / "phone_price" / "once" / "metrics.json").is_file()


def test_setup_starts_again_only_for_other_settings(fresh_setup):
    none, mirrored = config(), config(distribution="mirrored")
    assert distribution.setup(none) is distribution.setup(none)
    assert distribution.setup(mirrored).mode == "mirrored" and distribution.setup(mirrored).replicas >= 1
    assert distribution.setup(none).mode == "none"  # back to one device
    assert fresh_setup == ["none", "mirrored", "none"]


def test_the_first_setup_checks_even_the_default_mode(fresh_setup):
    """`--worker-index` without a multi-process mode is refused at the first setup of the process."""
    with pytest.raises(UserError, match="need --distribution multi_worker or data_parallel"):
        distribution.setup(config(worker_index=0))
    assert fresh_setup == []
