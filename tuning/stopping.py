"""Median stopping (Golovin et al. 2017, "Google Vizier", section 3.2.2): a trial is stopped after epoch s
when its best objective so far is strictly worse than the median of the completed trials' running averages
of the objective up to epoch s.

    rule = MedianRule("val_accuracy", "max", min_trials=5, grace_epochs=10)
    model.fit(..., callbacks=[MedianStopping(rule, completed_curves(curves_dir, "val_accuracy", trial_id))])

KerasTuner has no per-epoch early stopping of its own for random and Bayesian searches (Hyperband stops
trials by its brackets instead). The completed trials' curves are those `tuning/hypermodel.py` saves per
trial; a trial that was stopped counts too, for the epochs it ran.
"""

import dataclasses
import json
import statistics
from pathlib import Path

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class MedianRule:
    """Args:
        objective: the logged metric the search ranks by (e.g. "val_accuracy").
        direction: "max" or "min".
        min_trials: completed trials that must have reached an epoch before a trial can be stopped there.
        grace_epochs: no trial is stopped during its first `grace_epochs` epochs.
    """

    objective: str
    direction: str
    min_trials: int = 5
    grace_epochs: int = 1

    def should_stop(self, curve, completed):
        """True if the trial whose objective per epoch so far is `curve` should stop now.

        Args:
            curve: this trial's objective after each epoch so far (epoch s = len(curve)).
            completed: the completed trials' objective curves (one list per trial, any length).
        """
        epoch = len(curve)
        reached = [c[:epoch] for c in completed if len(c) >= epoch]
        if epoch <= self.grace_epochs or len(reached) < max(self.min_trials, 1):
            return False
        median = statistics.median(float(np.mean(c)) for c in reached)
        if self.direction == "max":
            return max(curve) < median
        return min(curve) > median


class MedianStopping(keras.callbacks.Callback):
    """Stops `fit` after the first epoch at which `rule.should_stop`; `stopped_epoch` is that epoch (1-based),
    None while the trial runs on."""

    def __init__(self, rule, completed):
        super().__init__()
        self.rule = rule
        self.completed = [list(c) for c in completed]
        self.curve = []
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.rule.objective)
        if value is None:
            return
        self.curve.append(float(value))
        if self.rule.should_stop(self.curve, self.completed):
            self.stopped_epoch = len(self.curve)
            self.model.stop_training = True


def completed_curves(curves_dir, objective, exclude=None):
    """The objective curves of the trials saved in `curves_dir` (`<trial id>/execution-*.json`, written by
    tuning/hypermodel.py), one per trial: the mean over its executions, as long as its shortest one.
    `exclude` is the trial now running (an earlier execution of it is not a completed trial)."""
    curves = []
    for folder in sorted(Path(curves_dir).glob("*")) if curves_dir else []:
        if not folder.is_dir() or folder.name == exclude:
            continue
        runs = []
        for path in sorted(folder.glob("execution-*.json")):
            try:
                runs.append(json.loads(path.read_text())["history"][objective])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged or foreign file: that execution is not counted
        runs = [r for r in runs if isinstance(r, list) and r]
        if runs:
            length = min(len(r) for r in runs)
            curves.append(np.mean([r[:length] for r in runs], axis=0).tolist())
    return curves
