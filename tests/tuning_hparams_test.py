"""Every search writes TensorBoard logs per trial with KerasTuner's HParams summaries (tuning/search.py)."""

import json

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from tuning import search


def search_args(tmp_path, phone_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(phone_root),
            "--directory", str(tmp_path / "tuning"), "--epochs", "3", "--verbose", "0", *extra]


def hparams_sessions(logs):
    """{trial id: {hyperparameter: value}} from the HParams session-start summaries under `logs`."""
    sessions = {}
    for path in sorted(logs.rglob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    trial = path.relative_to(logs).parts[0]
                    sessions[trial] = {name: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                       for name, v in data.session_start_info.hparams.items()}
    return sessions


def scalar_tags(logs):
    return {value.tag for path in logs.rglob("events.out.tfevents*")
            for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value}


@pytest.mark.slow
def test_each_trial_logs_its_hyperparameters_for_tensorboard(tmp_path, phone_root, cli):
    code, out, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "2"))
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    logs = folder / "tensorboard"
    assert code == 0 and f"tensorboard --logdir {logs.as_posix()}" in out
    trials = {p.parent.name.removeprefix("trial_"): json.loads(p.read_text())["hyperparameters"]["values"]
              for p in folder.glob("trial_*/trial.json")}
    sessions = hparams_sessions(logs)
    assert sorted(sessions) == sorted(trials) and len(trials) == 2
    for trial, values in trials.items():
        assert {"num_layers", "learning_rate"} <= set(sessions[trial])
        assert sessions[trial]["learning_rate"] == pytest.approx(values["learning_rate"])
    assert {"epoch_loss", "epoch_accuracy"} <= scalar_tags(logs)
    assert "tensorboard --logdir" in (folder / "report.html").read_text()


def test_no_tensorboard_writes_no_logs(tmp_path, phone_root, cli):
    code, out, _ = cli(search.main,
                       search_args(tmp_path, phone_root, "--max-trials", "1", "--no-tensorboard"))
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    assert code == 0 and not (folder / "tensorboard").exists() and "tensorboard --logdir" not in out
