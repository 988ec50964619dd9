"""airbench94's methods (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU") as Keras layers, an
initializer and two callbacks. `models/cnn.py` wires the layers into the `fast` net behind the lesson's flags;
the CIFAR-10 lesson adds the callbacks to its fit (`tasks/cifar10.py: method_callbacks`).

- `PatchWhitening` (`--whiten`): the first layer is a 2x2 convolution whose filters are not learned but
  computed from the training images before training (`adapt`, as Keras' preprocessing layers do): the
  eigenvectors of the covariance of all 2x2 patches, each divided by the square root of its eigenvalue, so
  the 12 outputs of a patch are uncorrelated with unit variance; each filter comes with its negative (24
  outputs), so the GELU after it loses nothing. The network starts on decorrelated inputs and spends no steps
  learning an edge detector. Only the bias trains, and only for the first epochs (`freeze_bias`).
- `ScaledBias` (`--bn-bias-lr`): batch norm's shift written as `scale * b`. Keras has no learning rate per
  variable; for SGD, this reparametrisation gives one: the gradient reaching `b` is `scale` times larger
  and a step of `b` moves the shift `scale` times further, so the shift learns `scale**2` times faster,
  while decoupled weight decay (which shrinks `b` by the same fraction as every other weight) is unchanged:
  exactly airbench's "64x learning rate for the biases, not the decay". It needs no change to the shared
  training loop, works on every backend and survives saving; under Adam it has no effect (Adam's steps do
  not depend on the gradient's scale).
- `Dirac` (`--dirac`): identity initialisation of a convolution: its first min(in, out) filters pass input
  channel i to output channel i unchanged (a 1 at the kernel's centre), the others keep the base
  initializer. A conv with as many outputs as inputs is the identity map at the start, so the deep net
  begins as a shallow one.
- `Lookahead` (`--lookahead`): every few steps the weights are reset to a moving average of themselves, the
  average weighing heavier as training ends; the run ends on the averaged weights.
- `FreezeBiasAt` (`--whiten-bias-epochs`): the whitening layer's bias stops training after its first epochs.

Both callbacks keep exact resume (common/resume.py) without saving anything of their own: the lookahead
synchronises at the end of every epoch, so the saved weights are its slow weights; a frozen bias is a weight
of its layer.
"""

import math

import keras
import numpy as np
from keras import layers, ops

# airbench94's whitening: 2x2 patches, the eigenvalue floor added before the square root, and the number of
# training images whose patches estimate the covariance (more changes nothing measurable).
PATCH_SIZE = 2
WHITEN_EPS = 5e-4
WHITEN_IMAGES = 5000


def patch_covariance(images, patch_size=PATCH_SIZE, chunk=500):
    """The (uncentred) second moment of every `patch_size` x `patch_size` patch of float images (n, h, w, c),
    a (p*p*c)^2 matrix. Patches are flattened in (row, column, channel) order, the layout of a Keras conv
    kernel. The images are normalised first, so the mean patch is near zero, as in airbench."""
    channels = images.shape[-1]
    dim = patch_size * patch_size * channels
    total, count = np.zeros((dim, dim)), 0
    for start in range(0, len(images), chunk):  # in chunks: all patches of 5,000 images would need 0.5 GB
        x = np.asarray(images[start:start + chunk], dtype="float64")
        windows = np.lib.stride_tricks.sliding_window_view(x, (patch_size, patch_size), axis=(1, 2))
        # (n, rows, cols, c, p, p) -> (.., p, p, c)
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, dim)
        total += patches.T @ patches
        count += len(patches)
    return total / count


def whitening_kernel(images, patch_size=PATCH_SIZE, eps=WHITEN_EPS):
    """A conv kernel (p, p, c, 2*p*p*c): the eigenvectors of the patch covariance scaled by 1/sqrt(eigenvalue
    + eps), largest eigenvalue first, followed by their negatives."""
    channels = images.shape[-1]
    eigenvalues, eigenvectors = np.linalg.eigh(patch_covariance(images, patch_size))
    order = np.argsort(eigenvalues)[::-1]
    filters = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
    filters = np.concatenate([filters, -filters], axis=1)
    return filters.reshape(patch_size, patch_size, channels, -1).astype("float32")


@keras.saving.register_keras_serializable(package="keras_tutorials")
class PatchWhitening(layers.Layer):
    """A frozen patch-whitening convolution (no padding) with a bias that trains until `freeze_bias`.

    Keras fixes the list of trainable variables when it traces the training step (and JAX's stateless step
    needs it fixed for the whole fit), so a variable cannot leave training mid-fit. Instead, `freeze_bias`
    copies the bias into a non-trainable `frozen_bias` and switches the layer to it: from then on the
    trainable bias no longer reaches the output and gets no gradient, and the frozen value is saved with the
    model (a resumed run stays frozen).
    """

    def __init__(self, patch_size=PATCH_SIZE, eps=WHITEN_EPS, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.eps = eps

    def build(self, input_shape):
        channels = input_shape[-1]
        filters = 2 * self.patch_size**2 * channels
        self.kernel = self.add_weight(name="kernel",
                                      shape=(self.patch_size, self.patch_size, channels, filters),
                                      initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(filters,), initializer="zeros")
        self.frozen_bias = self.add_weight(name="frozen_bias", shape=(filters,), initializer="zeros",
                                           trainable=False)
        self.bias_frozen = self.add_weight(name="bias_frozen", shape=(), initializer="zeros", trainable=False)

    def adapt(self, images):
        """Compute the filters from normalised training images, a float array (n, h, w, channels)."""
        if not self.built:
            self.build(images.shape)
        self.kernel.assign(whitening_kernel(np.asarray(images), self.patch_size, self.eps))

    def freeze_bias(self):
        """Stop training the bias, keeping its current value (idempotent)."""
        if float(keras.ops.convert_to_numpy(self.bias_frozen)) < 0.5:
            # A copy: on JAX, two variables assigned one array share its buffer, which a jitted step refuses.
            self.frozen_bias.assign(np.array(keras.ops.convert_to_numpy(self.bias)))
            self.bias_frozen.assign(1.0)

    def call(self, x):
        frozen, frozen_bias, bias = (ops.convert_to_tensor(v)
                                     for v in (self.bias_frozen, self.frozen_bias, self.bias))
        bias = ops.where(frozen > 0.5, frozen_bias, bias)
        return ops.conv(x, self.kernel, strides=1, padding="valid") + bias

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        smaller = self.patch_size - 1
        return (n, None if h is None else h - smaller, None if w is None else w - smaller,
                2 * self.patch_size**2 * c)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "eps": self.eps}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class ScaledBias(layers.Layer):
    """Adds `scale * b` per channel (b starts at zero): a shift that SGD trains `scale**2` times faster."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    @classmethod
    def for_learning_rate(cls, multiplier, **kwargs):
        """The layer whose shift learns `multiplier` times faster under SGD."""
        return cls(math.sqrt(multiplier), **kwargs)

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        return x + ops.cast(self.scale, x.dtype) * self.bias

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class Dirac(keras.initializers.Initializer):
    """Identity ("dirac") initialisation of a conv kernel (kh, kw, in, out): the first min(in, out) filters
    copy their own input channel through the kernel's centre; the other filters come from `base`."""

    def __init__(self, base="he_normal"):
        self.base = keras.initializers.get(base)

    def __call__(self, shape, dtype=None):
        *window, inputs, outputs = shape
        kernel = self.base(shape, dtype=dtype)
        n = min(inputs, outputs)
        identity = np.zeros((*window, inputs, n), dtype="float32")
        identity[tuple(k // 2 for k in window) + (np.arange(n), np.arange(n))] = 1.0
        identity = ops.convert_to_tensor(identity, dtype=kernel.dtype)
        return ops.concatenate([identity, kernel[..., n:]], axis=-1)

    def get_config(self):
        return {"base": keras.initializers.serialize(self.base)}


# --------------------------------------------------------------------------- training-time methods: callbacks
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
