"""KerasTuner integration: spaces, HyperModel, search CLI (resume, failures, compare), report, workers."""

import json
import subprocess
import sys
from pathlib import Path

import keras_tuner
import pytest

from common.config import build_config
from tasks.imdb import ImdbConfig
from tasks.phone_price import PhonePriceConfig
from tuning import report, search, spaces
from tuning.hypermodel import TaskHyperModel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def base_config(tmp_path, phone_root):
    return build_config(PhonePriceConfig, profile="smoke", overrides=dict(
        data_dir=str(phone_root), epochs=3, tensorboard=False, verbose=0))


def search_args(tmp_path, phone_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(phone_root),
            "--directory", str(tmp_path / "tuning"), "--epochs", "3", "--verbose", "0", *extra]


def test_hypermodel_builds_for_the_default_and_for_sampled_values(base_config):
    hypermodel = TaskHyperModel("phone_price", base_config)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)  # every hyperparameter at its default
    assert model.output_shape == (None, 4)
    for seed in range(6):
        for name, parameter in hp.space_dict().items() if hasattr(hp, "space_dict") else \
                ((p.name, p) for p in hp.space):
            if hp.is_active(name):
                hp.values[name] = parameter.random_sample(seed)
        model = hypermodel.build(hp)
        config = hypermodel.config_for(hp)
        assert len(config.hidden_units) == hp.values["num_layers"]
        assert model.get_layer("hidden_1").units == config.hidden_units[0]


def test_momentum_is_conditional_on_the_momentum_optimizer(base_config):
    hypermodel = TaskHyperModel("phone_price", base_config)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("optimizer", "adam")
    hypermodel.build(hp)
    assert not hp.is_active("momentum") and "momentum" not in spaces.phone_price(hp)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("optimizer", "momentum")
    hp.Fixed("momentum", 0.8)
    assert hypermodel.config_for(hp).momentum == 0.8
    assert hypermodel.build(hp).optimizer.momentum == pytest.approx(0.8)


@pytest.mark.slow
def test_a_stock_tuner_can_drive_the_hypermodel(tmp_path, base_config):
    tuner = keras_tuner.RandomSearch(TaskHyperModel("phone_price", base_config), objective="val_accuracy",
                                     max_trials=2, directory=str(tmp_path), project_name="stock", seed=1)
    tuner.search(verbose=0)
    assert len(tuner.oracle.trials) == 2
    assert tuner.get_best_models(1)[0].output_shape == (None, 4)


def test_a_nan_trial_fails_and_the_search_goes_on(tmp_path, base_config):
    def space(hp):
        return {"learning_rate": hp.Choice("learning_rate", [1e8, 0.01]), "optimizer": "sgd", "input_l1": 0.0}

    tuner = keras_tuner.GridSearch(TaskHyperModel("phone_price", base_config, space=space),
                                   objective="val_accuracy", max_trials=5, directory=str(tmp_path),
                                   project_name="nan", max_consecutive_failed_trials=3)
    tuner.search(verbose=0)
    statuses = {t.hyperparameters.values["learning_rate"]: t.status for t in tuner.oracle.trials.values()}
    assert statuses == {1e8: "FAILED", 0.01: "COMPLETED"}


@pytest.mark.slow
def test_search_resumes_without_rerunning_trials_and_writes_a_report(tmp_path, phone_root, cli):
    code, out, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "2"))
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    assert code == 0 and "best configuration" in out
    first = {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("trial_*/trial.json")}
    assert len(first) == 2
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "3"))
    second = {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("trial_*/trial.json")}
    assert len(second) == 3 and all(second[name] == first[name] for name in first)
    for name in ["trials.csv", "trials.md", "best.json", "objective_vs_hyperparameters.png", "report.html"]:
        assert (folder / name).is_file(), name
    assert len((folder / "trials.csv").read_text().strip().splitlines()) == 4
    page = (folder / "report.html").read_text()
    assert "objective_vs_hyperparameters.png" in page and page.count("<td>COMPLETED</td>") == 3

    best = json.loads((folder / "best.json").read_text())
    config = build_config(PhonePriceConfig, profile="smoke", config_file=folder / "best.json")
    assert config.activation == best["activation"] and list(config.hidden_units) == best["hidden_units"]
    assert config.learning_rate == best["learning_rate"] and config.epochs == 8  # profile's, not tuned
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1", "--overwrite"))
    assert len(list(folder.glob("trial_*"))) == 1


@pytest.mark.slow
def test_compare_runs_every_value_over_seeds(tmp_path, phone_root, cli):
    code, out, _ = cli(search.main, search_args(tmp_path, phone_root, "--compare", "dropout", "--seeds", "2"))
    folder = tmp_path / "tuning" / "phone_price" / "compare-dropout-smoke"
    assert code == 0 and (folder / "compare_curves.png").is_file()
    table = (folder / "compare.md").read_text()
    assert all(f"| {value} | 2 |" in table for value in ["0.0000", "0.2000", "0.4000", "0.6000"])
    assert all(len(list(d.glob("execution-*.json"))) == 2 for d in (folder / "curves").iterdir())


@pytest.mark.parametrize("extra,fragment", [
    (["--task", "mnist"], "unknown task 'mnist'"),
    (["--tuner", "evolution"], "unknown tuner 'evolution'; valid tuners: random, hyperband"),
    (["--max-trials", "0"], "--max-trials must be at least 1"),
])
def test_bad_arguments_exit_2(tmp_path, phone_root, cli, extra, fragment):
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, *extra))
    assert code == 2 and fragment in err and "Traceback" not in err


def test_report_of_a_folder_that_is_not_a_search(tmp_path, cli):
    code, _, err = cli(report.main, [str(tmp_path)])
    assert code == 2 and "not a search folder" in err


@pytest.mark.slow
def test_loopback_chief_and_two_workers(tmp_path, phone_root):
    """KerasTuner's own chief/worker mode: every trial runs once, all reach the chief, all exit."""
    result = subprocess.run(
        [sys.executable, "-m", "tuning.distributed", "--workers", "2", "--timeout", "400", "--",
         *search_args(tmp_path, phone_root, "--max-trials", "4")],
        cwd=ROOT, capture_output=True, text=True, timeout=450)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    trials = [json.loads(p.read_text()) for p in folder.glob("trial_*/trial.json")]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2", "3"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert all(len(list((folder / "curves" / t["trial_id"]).glob("execution-*.json"))) == 1 for t in trials)
    assert (folder / "tuner0.json").is_file() and (folder / "tuner1.json").is_file()
    assert len((folder / "trials.csv").read_text().strip().splitlines()) == 5  # the chief wrote the report


@pytest.mark.slow
def test_mirrored_strategy_runs_trials(tmp_path, phone_root, cli):
    """--distribution mirrored builds each trial under tf.distribute.MirroredStrategy (one CPU here)."""
    code, _, _ = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "1", "--distribution",
                                              "mirrored"))
    trial = json.loads(next((tmp_path / "tuning" / "phone_price" / "random-smoke").glob("trial_*/trial.json"))
                       .read_text())
    assert code == 0 and trial["status"] == "COMPLETED"


@pytest.mark.slow
def test_imdb_hypermodel_and_search(tmp_path, imdb_root, cli):
    """The same search code drives the IMDB lesson: its own space (architecture, width) and comparisons."""
    base = build_config(ImdbConfig, profile="smoke", overrides=dict(data_dir=str(imdb_root), epochs=1))
    hypermodel = TaskHyperModel("imdb", base)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("model", "bilstm_attention")
    assert hypermodel.build(hp).get_layer("attention") is not None
    assert "activation" not in hp.values and "batch_size" not in hp.values

    args = ["--task", "imdb", "--profile", "smoke", "--data-dir", str(imdb_root), "--directory",
            str(tmp_path / "tuning"), "--epochs", "1", "--verbose", "0"]
    code, _, err = cli(search.main, args + ["--compare", "activation"])
    assert code == 2 and "not offered for imdb" in err
    code, _, _ = cli(search.main, args + ["--max-trials", "2"])
    best = json.loads((tmp_path / "tuning" / "imdb" / "random-smoke" / "best.json").read_text())
    assert code == 0 and best["task"] == "imdb"
    assert build_config(ImdbConfig, config_file=tmp_path / "tuning" / "imdb" / "random-smoke" / "best.json"
                        ).model == best["model"]


@pytest.mark.slow
def test_cifar10_hypermodel_and_compare(tmp_path, cifar_root, cli):
    """CIFAR-10 joins through the same code: its space builds every sampled architecture; --compare runs."""
    from tasks.cifar10 import Cifar10Config

    base = build_config(Cifar10Config, profile="smoke", overrides=dict(data_dir=str(cifar_root), epochs=1))
    hypermodel = TaskHyperModel("cifar10", base)
    for model in ("vgg", "resnet20", "fast"):
        hp = keras_tuner.HyperParameters()
        hp.Fixed("model", model)
        assert hypermodel.build(hp).name == model
        assert hp.values["batch_size"] in (128, 256, 512)
    args = ["--task", "cifar10", "--profile", "smoke", "--data-dir", str(cifar_root), "--directory",
            str(tmp_path / "tuning"), "--epochs", "1", "--verbose", "0"]
    code, _, _ = cli(search.main, args + ["--compare", "initializer", "--seeds", "1"])
    assert code == 0
    folder = tmp_path / "tuning" / "cifar10" / "compare-initializer-smoke"
    assert (folder / "compare_curves.png").is_file()
    assert all(name in (folder / "compare.md").read_text() for name in ("he_normal", "glorot_uniform"))


def _crashing_space(monkeypatch, activations):
    """phone_price's search space replaced by a grid over `activations`; "crash..." values raise in build."""
    import dataclasses

    from tuning import tasks

    real = tasks.TASKS["phone_price"]

    def space(hp):
        return {"activation": hp.Choice("activation", activations), "input_l1": 0.0}

    monkeypatch.setitem(tasks.TASKS, "phone_price", lambda: dataclasses.replace(real(), space=space))


def _statuses(folder):
    trials = [report.read_trial(path) for path in folder.glob("trial_*/trial.json")]
    return {trial["values"]["activation"]: trial["status"] for trial in trials}


@pytest.mark.slow
def test_a_crashing_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path, phone_root, cli,
                                                                        monkeypatch):
    _crashing_space(monkeypatch, ["relu", "crash", "tanh"])
    code, out, err = cli(search.main, search_args(tmp_path, phone_root, "--tuner", "grid",
                                                  "--max-trials", "3", "--max-failures", "2"))
    folder = tmp_path / "tuning" / "phone_price" / "grid-smoke"
    assert code == 0, err
    assert _statuses(folder) == {"relu": "COMPLETED", "crash": "FAILED", "tanh": "COMPLETED"}
    assert "| FAILED |" in (folder / "trials.md").read_text()


@pytest.mark.slow
def test_max_failures_in_a_row_stop_the_search(tmp_path, phone_root, cli, monkeypatch):
    # The first value is the one the objective check builds before any trial: it must work.
    _crashing_space(monkeypatch, ["relu", "crash_1", "crash_2", "tanh"])
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--tuner", "grid", "--max-trials", "4",
                                                "--max-failures", "2"))
    folder = tmp_path / "tuning" / "phone_price" / "grid-smoke"
    # KerasTuner prints each failed trial's traceback as it goes; the search ends with one sentence.
    last = err.strip().splitlines()[-1]
    assert code == 2 and "stopped after 2 failed trials in a row (--max-failures)" in last
    assert "unknown activation 'crash_2'" in last
    # tanh never ran
    assert _statuses(folder) == {"relu": "COMPLETED", "crash_1": "FAILED", "crash_2": "FAILED"}
    assert "| FAILED |" in (folder / "trials.md").read_text()
