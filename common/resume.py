"""Exact resume: a run killed at any epoch and rerun ends with the same numbers as one that never stopped.

Keras' `BackupAndRestore` restores the weights, the optimizer and the epoch. That is not enough for the
same result: the next epoch's shuffle order and augmentation, dropout's random state and the best value
a checkpoint or early stopping compares against would all start afresh. Here every source of randomness is
either part of the saved state or a pure function of the position in training:

- the training data is one endless stream (`dataset.repeat()`; each pass reshuffles and re-augments from
  the seed), and a resumed run skips the batches of the finished epochs (`stream_from`), so epoch k sees
  exactly the batches it would have seen;
- the model's variables beyond its weights (the `SeedGenerator` states of dropout and other random layers,
  and Keras' global seed generator when one exists) are saved with the weights and the optimizer;
- the state of `ModelCheckpoint`, `EarlyStopping` (including its best weights) and `ReduceLROnPlateau`
  is saved and put back after their own `on_train_begin` has reset it.

The state of one trained model lives in `<folder>/backup/`: `state.json` (written last, atomically) names the
weights file of the last finished epoch, so a kill at any instant leaves a complete earlier state.
"""

import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from common import distribution
from common.errors import UserError
from common.runs import atomic_save, read_json, write_json

STATE = "state.json"
# Callback attributes that carry state from one epoch to the next.
CALLBACK_STATE = ("best", "wait", "best_epoch", "stopped_epoch", "cooldown_counter")


def load_state(backup):
    """The saved state of a model's training, None when there is none; one sentence when it is unreadable."""
    path = Path(backup) / STATE
    if not path.exists():
        return None
    try:
        state = read_json(path)
        if state.get("weights") and not (Path(backup) / state["weights"]).is_file():
            raise ValueError(f"{state['weights']} is missing")
        return state
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"the saved training state in {backup} cannot be read ({error}); delete that folder "
                        "to retrain this model from its first epoch, or choose another --run-id.") from None


def stream_from(dataset, start_epoch, steps_per_epoch):
    """The training stream from the first batch of `start_epoch`: one pass per epoch, each reshuffled."""
    stream = dataset.repeat()
    return stream.skip(start_epoch * steps_per_epoch) if start_epoch else stream


def random_state_variables(model):
    """The model's variables that are not weights: the states of its seed generators."""
    weights = {id(v) for v in model.weights}
    extra = [v for v in model.variables if id(v) not in weights]
    from keras.src.backend.common import global_state

    generator = global_state.get_global_attribute("global_seed_generator")
    return extra + ([generator.state] if generator is not None else [])


class ExactResume(keras.callbacks.Callback):
    """Save the whole training state after every epoch, and put it back at the start of a resumed fit.

    Place it last in the callback list: it restores after the other callbacks reset themselves, and saves
    after they have updated themselves for the epoch.
    """

    def __init__(self, backup, state, stateful_callbacks, time_before=0.0):
        super().__init__()
        self.backup = Path(backup)
        self.state = state
        self.stateful = stateful_callbacks
        self.time_before = time_before
        self.started = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        if not self.state:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # its slots must exist to take the saved values
            optimizer.build(self.model.trainable_variables)
        chief = distribution.is_chief()  # in a multi-worker run only the chief has the files
        try:
            if chief:
                self.model.load_weights(self.backup / self.state["weights"])
                extras = np.load(self.backup / self.state["random_state"])
                for variable, value in zip(random_state_variables(self.model), extras.values(), strict=True):
                    variable.assign(value)
            for callback, saved in zip(self.stateful, self.state["callbacks"], strict=True):
                for name, value in saved.items():
                    setattr(callback, name, value)
                if getattr(callback, "restore_best_weights", False) and self.state.get("best_weights"):
                    if chief:
                        best = np.load(self.backup / self.state["best_weights"])
                        callback.best_weights = [best[k] for k in sorted(best, key=lambda k: int(k[1:]))]
                    callback.best_weights = distribution.from_chief(
                        callback.best_weights if chief else self.model.get_weights())
        except (OSError, ValueError, KeyError) as error:
            raise UserError(f"the saved training state in {self.backup} cannot be restored ({error}); delete "
                            "that folder to retrain this model from its first epoch.") from None
        variables = [*self.model.weights, *(optimizer.variables if optimizer is not None else [])]
        distribution.assign_from_chief(variables + random_state_variables(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.backup.mkdir(parents=True, exist_ok=True)
        done = epoch + 1
        weights = f"epoch-{done}.weights.h5"
        atomic_save(self.model.save_weights, self.backup / weights)
        random_state = f"epoch-{done}.random.npz"
        values = {f"v{i}": keras.ops.convert_to_numpy(v)
                  for i, v in enumerate(random_state_variables(self.model))}
        atomic_save(lambda p: np.savez(p, **values), self.backup / random_state)
        state = {"epoch": done, "weights": weights, "random_state": random_state,
                 "stopped": bool(self.model.stop_training), "finished": False,
                 "train_time_s": self.time_before + time.perf_counter() - self.started,
                 "callbacks": [self._callback_state(c) for c in self.stateful],
                 "best_weights": self._save_best_weights(done)}
        write_json(self.backup / STATE, state)
        self.state = state
        for old in self.backup.glob("epoch-*"):  # the previous epoch's files, now superseded
            if not old.name.startswith(f"epoch-{done}."):
                old.unlink(missing_ok=True)

    def _save_best_weights(self, done):
        """Early stopping keeps its best weights in memory; keep them on disk too (only when they change)."""
        stopper = next((c for c in self.stateful if getattr(c, "restore_best_weights", False)), None)
        if stopper is None or stopper.best_weights is None:
            return None
        previous = (self.state or {}).get("best_weights")
        if previous and stopper.best_epoch + 1 < done and (self.backup / previous).exists():
            name = f"epoch-{done}.best.npz"  # unchanged since an earlier epoch: carry the file forward
            (self.backup / name).unlink(missing_ok=True)
            os.link(self.backup / previous, self.backup / name)  # a second name; the old one goes later
            return name
        name = f"epoch-{done}.best.npz"
        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(stopper.best_weights)}
        atomic_save(lambda p: np.savez(p, **arrays), self.backup / name)
        return name

    @staticmethod
    def _callback_state(callback):
        state = {}
        for name in CALLBACK_STATE:
            value = getattr(callback, name, None)
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                value = float(value) if isinstance(value, (float, np.floating)) else int(value)
                state[name] = value if not (isinstance(value, float) and math.isnan(value)) else None
        return state


def mark_finished(backup, state):
    """The model is trained and saved: drop its weight files (model.keras holds the weights now)."""
    backup = Path(backup)
    backup.mkdir(parents=True, exist_ok=True)
    write_json(backup / STATE, {**(state or {}), "finished": True, "weights": None, "random_state": None,
                                "best_weights": None})
    for old in backup.glob("epoch-*"):
        old.unlink(missing_ok=True)
