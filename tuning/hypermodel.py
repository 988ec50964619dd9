"""One `keras_tuner.HyperModel` for every task: sample a config, build with the task's factory, train.

    hp --space--> {field: value} --replace--> task config --factory--> keras.Model --fit--> history

Nothing about a model is written here: the config goes to the same factory and the same tf.data splits the
lesson uses. The HyperModel carries its own data, so any stock tuner works with it and `search()` needs
no arguments:

    hypermodel = TaskHyperModel("phone_price", base_config)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=10)
    tuner.search()

With a `median_rule` (tuning/stopping.py), a trial whose objective falls behind the completed trials' median
stops early; its curve is saved like any other, with the epoch it stopped at.
"""

import dataclasses
import json
import math
from pathlib import Path

import keras
import keras_tuner

from common import distribution, runs, training
from tuning import tasks
from tuning.stopping import MedianStopping, completed_curves


class TaskHyperModel(keras_tuner.HyperModel):
    def __init__(self, task, base_config, space=None, curves_dir=None, data=None, median_rule=None):
        super().__init__(name=f"{task}_hypermodel", tunable=True)
        self.spec = tasks.get(task)
        self.base_config = base_config
        self.space = space or self.spec.space
        self.curves_dir = Path(curves_dir) if curves_dir else None
        self.median_rule = median_rule  # needs curves_dir: the completed trials' curves are read from it
        self.data = data if data is not None else self.spec.load_data(base_config)
        self._builds = {}
        self._execution = 0

    def config_for(self, hp):
        """The task config for these hyperparameter values (the base config elsewhere)."""
        return dataclasses.replace(self.base_config, **self.space(hp))

    def build(self, hp):
        config = self.config_for(hp)
        # Each execution of a trial (executions_per_trial > 1) gets the next seed, so repeats measure the
        # spread over initialisations instead of training the same network twice.
        key = json.dumps(hp.values, sort_keys=True, default=str)
        self._execution = self._builds.get(key, 0)
        self._builds[key] = self._execution + 1
        training.seed_everything(config.seed + self._execution, config.deterministic)
        return self._compiled_model(config)

    def _compiled_model(self, config):
        # KerasTuner clears the session before each build, which forgets the dtype policy and the Keras
        # distribution; KerasTuner's own `distribution_strategy` scope is around this call.
        training.setup_precision(config)
        distribution.activate()
        model = distribution.adapt_model(self.spec.build_model(config, self.data))
        training.compile_model(model, config, self.spec.make_datasets(config, self.data).steps_per_epoch)
        return model

    def logged_metrics(self):
        """The names `fit` logs for this task's models ('loss', 'accuracy', ... and their 'val_' twins).

        Read from one evaluated validation batch of the default model: a Keras model names its compiled
        metrics only once it has run, and a search whose objective is none of them would fail every trial.
        """
        config = self.config_for(keras_tuner.HyperParameters())
        val = self.spec.make_datasets(config, self.data).val
        names = list(self._compiled_model(config).evaluate(val.take(1), return_dict=True, verbose=0))
        return names + [f"val_{name}" for name in names]

    def fit(self, hp, model, *args, **kwargs):
        """Train on the task's own splits; a NaN loss fails the trial (the search goes on)."""
        config = self.config_for(hp)
        pipelines = self.spec.make_datasets(config, self.data)
        train, val = pipelines.train, pipelines.val
        callbacks = list(kwargs.pop("callbacks", [])) + [keras.callbacks.TerminateOnNaN()]
        trial = next((cb.trial for cb in callbacks if hasattr(cb, "trial")), None)
        stopper = None
        if self.median_rule is not None and trial is not None:
            completed = completed_curves(self.curves_dir, self.median_rule.objective, exclude=trial.trial_id)
            stopper = MedianStopping(self.median_rule, completed)
            callbacks.append(stopper)
        history = model.fit(
            train, validation_data=val, shuffle=False, callbacks=callbacks,
            epochs=kwargs.get("epochs", config.epochs), initial_epoch=kwargs.get("initial_epoch", 0),
            verbose=kwargs.get("verbose", 0))
        losses = history.history.get("loss", [])
        if not losses or not all(math.isfinite(v) for v in losses):
            raise keras_tuner.errors.FailedTrialError(
                f"the loss became NaN or infinite with {hp.values}; trial failed.")
        stopped = stopper.stopped_epoch if stopper else None
        if stopped and kwargs.get("verbose", 0):
            print(f"trial {trial.trial_id} stopped after epoch {stopped}: its best "
                  f"{self.median_rule.objective} is behind the median of the completed trials "
                  "(median stopping)")
        self._save_curves(trial, history.history, stopped)
        return history

    def _save_curves(self, trial, history, stopped=None):
        """Keep each execution's learning curves, for the side-by-side plots of `--compare` and for median
        stopping (the completed trials' curves)."""
        if self.curves_dir is None or trial is None:
            return
        folder = self.curves_dir / trial.trial_id
        folder.mkdir(parents=True, exist_ok=True)
        # Named by the execution, not by counting files: a trial rerun after a kill rewrites its curves
        # instead of adding to them; written whole or not at all.
        runs.write_json(folder / f"execution-{self._execution}.json",
                        {"values": trial.hyperparameters.values, "history": history,
                         "stopped_epoch": stopped})
