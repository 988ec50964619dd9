"""KerasTuner's grid search, made resumable.

KerasTuner 1.4.8's `GridSearchOracle` keeps the order of its trials (a linked list of trial ids sorted by
their values) and the queue of trials whose successor is still to be found in memory only; they are not
part of `oracle.json` (upstream keras-team/keras-tuner#1055). A grid search interrupted and rerun in the
same folder then dies with `KeyError: '00002'`, and a finished grid rerun with a larger `max_trials` adds
nothing. The subclass below rebuilds both from the trials saved on disk when the oracle is reloaded, so a
rerun completes the missing combinations and never repeats a finished one. Everything else is KerasTuner's.
"""

import functools

import keras_tuner


class GridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """`keras_tuner.oracles.GridSearchOracle` whose trial order survives a reload."""

    def reload(self):
        super().reload()
        self._rebuild_order()

    def _rebuild_order(self):
        ordered = sorted(self.trials.values(), key=functools.cmp_to_key(
            lambda a, b: self._compare(a.hyperparameters.values, b.hyperparameters.values)))
        self._ordered_ids = type(self._ordered_ids)()  # KerasTuner's own (private) linked list, emptied
        for trial in ordered:
            self._ordered_ids.insert(trial.trial_id)
        # Look for every trial's successor again: `populate_space` skips those already tried (the next id in
        # the order holds them), so only the missing combinations are created.
        self._populate_next = [trial.trial_id for trial in ordered]


def grid_search(hypermodel, objective, max_trials=None, seed=None, max_consecutive_failed_trials=3, **kwargs):
    """A tuner like `keras_tuner.GridSearch(...)` (same arguments) that resumes; see the module docstring."""
    oracle = GridSearchOracle(objective=objective, max_trials=max_trials, seed=seed,
                              max_consecutive_failed_trials=max_consecutive_failed_trials)
    return keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, **kwargs)
