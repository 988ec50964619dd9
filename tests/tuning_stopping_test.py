"""Median stopping (tuning/stopping.py): the rule on made-up curves, the curves it reads, and a search
using it."""

import json
import types

import pytest

from tuning import hypermodel, report, search
from tuning.stopping import MedianRule, MedianStopping, completed_curves

# Running averages after 2 epochs: 0.55, 0.45, 0.65 -> median 0.55.
COMPLETED = [[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.6, 0.7, 0.8]]


def rule(**kwargs):
    return MedianRule("val_accuracy", "max", **dict(dict(min_trials=3, grace_epochs=1), **kwargs))


def test_a_trial_behind_the_median_stops():
    assert rule().should_stop([0.1, 0.2], COMPLETED)
    assert not rule().should_stop([0.1, 0.6], COMPLETED)  # its best so far counts, not its last epoch
    assert not rule().should_stop([0.1, 0.55], COMPLETED)  # strictly worse only


def test_not_during_the_grace_epochs():
    assert not rule().should_stop([0.1], COMPLETED)
    assert rule(grace_epochs=0).should_stop([0.1], COMPLETED)  # epoch 1: median of 0.5, 0.4, 0.6
    assert not rule(grace_epochs=2).should_stop([0.1, 0.2], COMPLETED)


def test_not_with_too_few_completed_trials_at_that_epoch():
    assert not rule(min_trials=4).should_stop([0.1, 0.2], COMPLETED)
    short = [COMPLETED[0], COMPLETED[1], [0.9]]  # the third stopped after one epoch: not there at epoch 2
    assert not rule().should_stop([0.1, 0.2], short)
    assert rule(min_trials=2).should_stop([0.1, 0.2], short)  # median of 0.55 and 0.45


def test_a_loss_objective_stops_the_higher_curves():
    losses = [[1.0, 0.8], [1.2, 1.0], [0.9, 0.7]]  # running averages 0.9, 1.1, 0.8 -> median 0.9
    loss_rule = MedianRule("val_loss", "min", min_trials=3, grace_epochs=1)
    assert loss_rule.should_stop([1.5, 1.0], losses)
    assert not loss_rule.should_stop([1.5, 0.85], losses)


def test_the_callback_stops_fit_at_the_first_epoch_behind():
    callback = MedianStopping(rule(), COMPLETED)
    callback.set_model(types.SimpleNamespace(stop_training=False))
    callback.on_epoch_end(0, {"val_accuracy": 0.1})
    assert not callback.model.stop_training and callback.stopped_epoch is None  # grace epoch
    callback.on_epoch_end(1, {"val_accuracy": 0.2})
    assert callback.model.stop_training and callback.stopped_epoch == 2


def test_completed_curves_average_a_trials_executions(tmp_path):
    def write(trial, execution, history):
        path = tmp_path / trial / f"execution-{execution}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"values": {}, "history": history}))

    write("0", 0, {"val_accuracy": [0.2, 0.4, 0.6]})
    write("0", 1, {"val_accuracy": [0.4, 0.6]})  # stopped early: the trial's curve is as long as this one
    write("1", 0, {"val_accuracy": [0.9]})
    write("2", 0, {"loss": [1.0]})  # no objective: not counted
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "execution-0.json").write_text("{half a fi")  # damaged: not counted
    assert completed_curves(tmp_path, "val_accuracy") == [pytest.approx([0.3, 0.5]), [0.9]]
    assert completed_curves(tmp_path, "val_accuracy", exclude="0") == [[0.9]]
    assert completed_curves(None, "val_accuracy") == []


def search_args(tmp_path, phone_root, *extra):
    return ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(phone_root),
            "--directory", str(tmp_path / "tuning"), "--epochs", "3", "--verbose", "0", "--no-tensorboard",
            *extra]


@pytest.mark.slow
def test_a_search_with_median_stopping_stops_trials_behind(tmp_path, phone_root, cli, monkeypatch):
    # Five completed trials that scored 2.0 (out of reach) at every epoch: every trial is behind after its
    # grace epoch. Only the reading of the completed curves is replaced; the rule and the callback are real.
    monkeypatch.setattr(hypermodel, "completed_curves", lambda *args, **kwargs: [[2.0] * 3] * 5)
    flags = ["--max-trials", "2", "--median-stopping", "--median-grace-epochs", "1"]
    code, out, _ = cli(search.main, search_args(tmp_path, phone_root, *flags))
    folder = tmp_path / "tuning" / "phone_price" / "random-smoke"
    assert code == 0 and "median stopping ended 2 of 2 trials early" in out
    assert report.stopped_early(folder) == {"0": 2, "1": 2}
    trials = [json.loads(p.read_text()) for p in folder.glob("trial_*/trial.json")]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 2 and all(t["score"] is not None for t in trials)
    # What the search saved reads back as two completed curves of the two epochs each trial ran.
    assert [len(c) for c in completed_curves(folder / "curves", "val_accuracy")] == [2, 2]
    settings = json.loads((folder / "search.json").read_text())
    assert settings["median_stopping"] == {"min_trials": search.MEDIAN_MIN_TRIALS, "grace_epochs": 1}
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, "--max-trials", "2"))
    assert code == 2 and "median_stopping" in err  # resuming it without the rule is refused


@pytest.mark.parametrize("extra,fragment", [
    (["--median-stopping", "--tuner", "hyperband"],
     "--median-stopping works with --tuner random or bayesian"),
    (["--median-stopping", "--compare", "dropout"],
     "--median-stopping works with --tuner random or bayesian"),
    (["--median-min-trials", "3"], "need --median-stopping"),
    (["--median-stopping", "--median-min-trials", "0"], "--median-min-trials must be at least 1"),
])
def test_bad_median_arguments_exit_2(tmp_path, phone_root, cli, extra, fragment):
    code, _, err = cli(search.main, search_args(tmp_path, phone_root, *extra))
    assert code == 2 and fragment in err and "Traceback" not in err
