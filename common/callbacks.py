"""Training callbacks beyond Keras' own: airbench94's Lookahead and the freeze of a layer's bias mid-run.

Both keep exact resume (common/resume.py) without saving anything of their own: the lookahead synchronises
at the end of every epoch, so the saved weights are its slow weights; a frozen bias is a weight of its layer.
"""

import keras
import numpy as np

# airbench94's lookahead: every 5 steps the slow weights take (1 - decay) of the way to the fast ones, with
# decay = 0.95 per step since the last sync, times (step / total)^3: almost no averaging early, heavy at the
# end.
LOOKAHEAD_EVERY = 5
LOOKAHEAD_RATE = 0.95
LOOKAHEAD_POWER = 3


def averaged_variables(model):
    """What the lookahead averages: every trainable weight and the batch-norm moving statistics (airbench
    averages every float tensor of the network's state; a frozen weight needs no averaging)."""
    statistics = [w for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
                  for w in layer.non_trainable_weights]
    return list(model.trainable_weights) + statistics


class Lookahead(keras.callbacks.Callback):
    """Lookahead (Zhang et al. 2019) as airbench94 schedules it: an exponential moving average of the weights
    that the network is reset to at every sync.

    At a sync after step t: slow += (1 - decay) * (fast - slow), then fast = slow, with
    decay = rate ** (steps since the last sync) * (t / total_steps) ** power. Syncs happen every `every`
    steps, at the end of every epoch (so the model saved after an epoch holds the slow weights, and a resumed
    run starts from them; with `steps_per_epoch` a multiple of `every`, as in the airbench recipe, these are
    the same syncs), and at the last step, where decay is 1: the run ends on the slow weights.
    With `steps_per_execution` > 1, syncs can only happen between executions: at the first one after each
    multiple of `every`.
    """

    def __init__(self, total_steps, steps_per_epoch, every=LOOKAHEAD_EVERY, rate=LOOKAHEAD_RATE,
                 power=LOOKAHEAD_POWER):
        super().__init__()
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.every, self.rate, self.power = int(every), float(rate), float(power)
        self.slow = None
        self.last_sync = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.slow is None:  # first batch: after ExactResume has put back the weights of the last sync
            self.variables = averaged_variables(self.model)
            self.slow = [np.array(keras.ops.convert_to_numpy(v)) for v in self.variables]
            self.last_sync = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        final = step >= self.total_steps
        if not (final or step // self.every > self.last_sync // self.every
                or step % self.steps_per_epoch == 0):
            return
        decay = (1.0 if final
                 else self.rate ** (step - self.last_sync) * (step / self.total_steps) ** self.power)
        for variable, slow in zip(self.variables, self.slow, strict=True):
            slow += (1.0 - decay) * (keras.ops.convert_to_numpy(variable) - slow)
            variable.assign(slow)
        self.last_sync = step

    def on_train_end(self, logs=None):
        self.slow = None

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


class FreezeBiasAt(keras.callbacks.Callback):
    """From epoch `epoch` (0-based) on, call `freeze_bias()` on every layer that has one (the whitening stem,
    models/airbench.py); a layer keeps its frozen bias as a weight, so a resumed run stays frozen."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = int(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.epoch:
            for layer in self.model.layers:
                if hasattr(layer, "freeze_bias"):
                    layer.freeze_bias()
