"""The phone-price lesson end to end: learning, resume, determinism, predict, errors, real data."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from common import training
from common.config import build_config
from datasets import mobile_price
from tasks import phone_price
from tasks.phone_price import PhonePriceConfig
from tests.conftest import REAL_DATA_ROOT

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(tmp_path, data_root, **overrides):
    values = dict(data_dir=str(data_root), output_dir=str(tmp_path / "runs"), **overrides)
    return build_config(PhonePriceConfig, profile="smoke", overrides=values)


def metrics_of(config):
    return json.loads((Path(config.output_dir) / "phone_price" / config.run_id / "metrics.json").read_text())


@pytest.mark.slow
def test_smoke_run_learns_and_writes_every_output(tmp_path, phone_root):
    config = smoke_config(tmp_path, phone_root, epochs=30, max_rows=None, run_id="learn")
    assert phone_price.train(config) == 0
    run = Path(config.output_dir) / "phone_price" / "learn"
    for name in ["config.json", "history.csv", "metrics.json", "model.keras", "checkpoint.keras",
                 "learning_curves.png", "confusion_matrix.png", "predictions.csv",
                 "baseline/model.keras", "baseline/history.csv"]:
        assert (run / name).is_file(), name
    assert not (run / "backup").exists()  # BackupAndRestore cleans up after a finished fit
    results = metrics_of(config)["results"]
    # Measured here: 0.8125 with this seed (0.85-0.8875 with seeds 0-2). Excludes a linear model (the softmax
    # regression baseline of the same run: 0.65; 0.6 with seeds 0-2) and chance (0.25).
    assert results["fnn"]["test_accuracy"] >= 0.775
    assert len(json.loads((run / "config.json").read_text())["hidden_units"]) == 1
    history = training.read_history(run / "history.csv")
    assert len(history["loss"]) == 30 and history["loss"][-1] < history["loss"][0]
    predictions = (run / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "id,price_range" and len(predictions) == 51


def test_saved_model_takes_raw_rows(tmp_path, phone_root):
    config = smoke_config(tmp_path, phone_root, run_id="raw", linear_baseline=False)
    phone_price.train(config)
    model = keras.saving.load_model(Path(config.output_dir) / "phone_price" / "raw" / "model.keras")
    from datasets.mobile_price import FEATURES, read_csv

    _, x, _ = read_csv(phone_root / "mobile_price" / "train.csv", FEATURES)
    probabilities = model.predict(x[:8], verbose=0)
    assert probabilities.shape == (8, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path, phone_root):
    results = []
    for run_id in ("a", "b"):
        config = smoke_config(tmp_path, phone_root, run_id=run_id, linear_baseline=False)
        phone_price.train(config)
        results.append(metrics_of(config)["results"]["fnn"])
    assert results[0]["test_loss"] == results[1]["test_loss"]
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_run_resumes_after_the_last_epoch_to_the_same_numbers(tmp_path, phone_root, monkeypatch):
    config_args = dict(run_id="resume", linear_baseline=False, epochs=6)
    original = training.callbacks
    begun = []

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # epochs 0-2 finished and saved: the state is epoch 3's
            if epoch == 3:
                raise Interrupt()

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            begun.append(epoch)

    def with_callback(extra):
        return lambda *a, **k: (lambda own, stateful: (own + [extra], stateful))(*original(*a, **k))

    monkeypatch.setattr(training, "callbacks", with_callback(StopAt()))
    with pytest.raises(Interrupt):
        phone_price.train(smoke_config(tmp_path, phone_root, **config_args))
    run = tmp_path / "runs" / "phone_price" / "resume"
    assert not (run / "metrics.json").exists() and (run / "backup" / "state.json").is_file()

    monkeypatch.setattr(training, "callbacks", with_callback(Record()))
    phone_price.train(smoke_config(tmp_path, phone_root, **config_args))
    assert begun == [3, 4, 5]  # epochs 0-2 were not trained again
    assert len(training.read_history(run / "history.csv")["loss"]) == 6
    assert (run / "metrics.json").is_file() and not (run / "backup").exists()
    monkeypatch.setattr(training, "callbacks", original)
    whole = smoke_config(tmp_path, phone_root, **{**config_args, "run_id": "whole"})
    phone_price.train(whole)
    resumed = metrics_of(smoke_config(tmp_path, phone_root, **config_args))["results"]["fnn"]
    assert resumed["test_loss"] == metrics_of(whole)["results"]["fnn"]["test_loss"]


def test_resume_refuses_a_different_recipe_and_a_finished_run(tmp_path, phone_root, cli):
    base = ["--profile", "smoke", "--data-dir", str(phone_root), "--output-dir", str(tmp_path / "runs"),
            "--run-id", "r", "--no-linear-baseline"]
    code, _, _ = cli(phone_price.main, base)
    assert code == 0
    code, _, err = cli(phone_price.main, base)
    assert code == 2 and "already finished" in err
    (tmp_path / "runs" / "phone_price" / "r" / "metrics.json").unlink()
    code, _, err = cli(phone_price.main, base + ["--activation", "sigmoid", "--hidden-units", "4"])
    assert code == 2 and "other settings (activation, hidden_units)" in err


def test_predict_command_labels_a_csv(tmp_path, phone_root, cli):
    runs = tmp_path / "runs"
    code, _, _ = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root),
                                        "--output-dir", str(runs), "--run-id", "p", "--no-linear-baseline"])
    assert code == 0
    out = tmp_path / "labels.csv"
    code, _, err = cli(phone_price.main, ["predict", "--run", str(runs / "phone_price" / "p"),
                                          "--input", str(phone_root / "mobile_price" / "test.csv"),
                                          "--output", str(out)])
    assert code == 0 and "50 phones" in err
    rows = out.read_text().splitlines()
    assert rows[0] == "id,price_range" and rows[1].startswith("1,") and len(rows) == 51
    assert {int(r.split(",")[1]) for r in rows[1:]} <= {0, 1, 2, 3}
    code, _, err = cli(phone_price.main, ["predict", "--run", str(tmp_path / "nope")])
    assert code == 2 and "must be a finished phone_price run folder" in err


@pytest.mark.parametrize("argv,fragment", [
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--optimizer", "adamax"], "unknown optimizer 'adamax'; valid names: sgd, momentum"),
    (["--hidden-units", "16,-3"], "--hidden-units must be at least 1"),
    (["--cv", "1"], "--cv must be between 2"),
])
def test_bad_flags_exit_2_with_one_sentence(tmp_path, phone_root, cli, argv, fragment):
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root),
                                          "--output-dir", str(tmp_path / "runs"), *argv])
    assert code == 2
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_data_exits_2_naming_the_file(tmp_path, phone_root, cli):
    train_csv = phone_root / "mobile_price" / "train.csv"
    train_csv.write_text(train_csv.read_text().replace("ram,", "RAM,", 1))
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root)])
    assert code == 2 and "lacks the column(s) ram" in err and str(train_csv) in err
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(tmp_path / "missing")])
    assert code == 2 and "is not a folder" in err


@pytest.mark.slow
def test_cross_validation_reports_mean_and_std(tmp_path, phone_root):
    config = smoke_config(tmp_path, phone_root, run_id="cv", cv=3, linear_baseline=False, epochs=4)
    phone_price.train(config)
    cv = metrics_of(config)["results"]["fnn"]["cv"]
    assert len(cv["accuracies"]) == 3 and cv["mean"] == pytest.approx(np.mean(cv["accuracies"]))
    assert (tmp_path / "runs" / "phone_price" / "cv" / "cv" / "fnn" / "fold-3" / "model.keras").is_file()


def test_embedded_copy_is_used_without_a_data_root(tmp_path):
    config = build_config(PhonePriceConfig, profile="smoke", overrides={"output_dir": str(tmp_path)})
    data = mobile_price.load(config)
    assert data.source == mobile_price.EMBEDDED_DATA / "mobile_price"
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 400


@pytest.mark.slow
def test_script_runs_as_a_file_too(tmp_path):
    """`python tasks/phone_price.py` works as well as `python -m tasks.phone_price`."""
    result = subprocess.run([sys.executable, str(ROOT / "tasks" / "phone_price.py"), "--help"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "--hidden-units" in result.stdout and "predict" in result.stdout


@pytest.mark.slow
def test_real_data_reaches_high_accuracy(tmp_path):
    """The lesson's headline guard: on the Kaggle CSV (the shared data root's, else the copy that ships with
    the repo: the same bytes), 40 epochs of the quick recipe reach 0.9825 (seeds 0, 1, 2, measured here)."""
    root = REAL_DATA_ROOT or str(mobile_price.EMBEDDED_DATA)
    config = build_config(PhonePriceConfig, profile="quick", overrides=dict(
        data_dir=root, output_dir=str(tmp_path), run_id="real", epochs=40, linear_baseline=False,
        tensorboard=False, verbose=0, export=False))
    phone_price.train(config)
    data = mobile_price.load(config)
    assert data.source == Path(root) / "mobile_price"
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 2000
    # Excludes the FNN without its input L1 penalty (0.925-0.9275 at 40 epochs; 0.92 at the quick 150) and a
    # linear model (softmax regression: 0.855-0.8725 at 40 epochs, 0.954 at 150; scikit-learn's logistic
    # regression 0.9705 in 5-fold CV): three test rows of 400 below what the recipe reaches.
    assert metrics_of(config)["results"]["fnn"]["test_accuracy"] >= 0.975
    assert len((tmp_path / "phone_price" / "real" / "predictions.csv").read_text().splitlines()) == 1001
