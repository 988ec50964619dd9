"""Every name a config may use, resolved to a Keras object: activations, initializers, losses, optimizers,
learning-rate schedules and regularisers.

The registries are plain dictionaries, so `names("activation")` is the list a CLI offers and the tuner
samples from. Unknown names raise `UserError` with the valid choices. Aliases use the course's PyTorch
vocabulary: `xavier_uniform` is Keras' `glorot_uniform`, `kaiming_normal` is `he_normal`, `smooth_l1` is
Huber with delta 1 (identical to PyTorch's SmoothL1Loss with beta 1), `silu` is `swish`.
"""

import keras
from keras import ops

from common.errors import UserError

# ---------------------------------------------------------------------------------------------- activations
@keras.saving.register_keras_serializable(package="keras_tutorials")
class GELU(keras.layers.Layer):
    """The exact GELU, x * Phi(x) (PyTorch's nn.GELU()), as a layer. Training on TensorFlow, it computes
    x * Phi(x) itself and writes out the derivative, Phi(x) + x * phi(x): `tf.nn.gelu` and its autodiff
    take longer chains of ops, each a pass over the activations: with Keras' own GELU layer the CIFAR-10
    airbench step takes 1.06x as long on a 2-core CPU (RESULTS.md: keras_speed/keras_gelu@715c3e7).
    Anywhere else (inference, exports: the TFLite converter maps `tf.nn.gelu` to its own GELU and has no
    Erf; other backends) it is Keras' gelu."""

    def call(self, x, training=None):
        if training and keras.backend.backend() == "tensorflow":
            return _tensorflow_gelu(x)
        return keras.activations.gelu(x, approximate=False)

    def compute_output_shape(self, input_shape):
        return input_shape


def _tensorflow_gelu(x):
    import tensorflow as tf

    @tf.custom_gradient
    def forward(x):
        cdf = 0.5 * (1.0 + tf.math.erf(x * 0.7071067811865476))  # Phi(x) = (1 + erf(x / sqrt 2)) / 2

        def backward(upstream):
            pdf = tf.exp(-0.5 * tf.square(x)) * 0.3989422804014327  # phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
            return upstream * (cdf + x * pdf)

        return x * cdf, backward

    return forward(x)


@keras.saving.register_keras_serializable(package="keras_tutorials")
def gelu_tanh(x):
    """GELU's tanh approximation (fewer ops than the exact erf form; PyTorch's GELU(approximate="tanh"))."""
    return keras.activations.gelu(x, approximate=True)


# Layers rather than strings, so that batch norm can sit between the affine map and the non-linearity.
# LeakyReLU uses PyTorch's slope 0.01 (Keras' own default is 0.3) so the PyTorch twins match.
ACTIVATIONS = {
    "relu": lambda: keras.layers.ReLU(),
    "leaky_relu": lambda: keras.layers.LeakyReLU(negative_slope=0.01),
    "sigmoid": lambda: keras.layers.Activation("sigmoid"),
    "tanh": lambda: keras.layers.Activation("tanh"),
    "swish": lambda: keras.layers.Activation("silu"),
    "gelu": lambda: GELU(),
    "gelu_tanh": lambda: keras.layers.Activation(gelu_tanh),
    "elu": lambda: keras.layers.Activation("elu"),
    "selu": lambda: keras.layers.Activation("selu"),
    "linear": lambda: keras.layers.Activation("linear"),
}

# --------------------------------------------------------------------------------------------- initializers
INITIALIZERS = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "glorot_normal": keras.initializers.GlorotNormal,
    "he_uniform": keras.initializers.HeUniform,
    "he_normal": keras.initializers.HeNormal,
    "lecun_uniform": keras.initializers.LecunUniform,
    "lecun_normal": keras.initializers.LecunNormal,
    "orthogonal": keras.initializers.Orthogonal,
    # PyTorch's default for Conv2d and Linear (kaiming_uniform with a = sqrt(5)): U(+-1/sqrt(fan_in)). Recipes
    # ported from PyTorch need it: behind batch norm the weights' scale sets the effective learning rate.
    "torch_default": lambda seed=None: keras.initializers.VarianceScaling(
        1 / 3, mode="fan_in", distribution="uniform", seed=seed),
}

# ------------------------------------------------------------------------------------------------- optimizers
# Each takes (learning_rate, momentum, weight_decay); weight decay is decoupled (as in AdamW) in Keras 3.
OPTIMIZERS = {
    "sgd": lambda lr, m, wd, **kw: keras.optimizers.SGD(lr, weight_decay=wd, **kw),
    "momentum": lambda lr, m, wd, **kw: keras.optimizers.SGD(lr, momentum=m, weight_decay=wd, **kw),
    "nesterov": lambda lr, m, wd, **kw: keras.optimizers.SGD(
        lr, momentum=m, nesterov=True, weight_decay=wd, **kw),
    "adagrad": lambda lr, m, wd, **kw: keras.optimizers.Adagrad(lr, weight_decay=wd, **kw),
    "rmsprop": lambda lr, m, wd, **kw: keras.optimizers.RMSprop(lr, weight_decay=wd, **kw),
    "adam": lambda lr, m, wd, **kw: keras.optimizers.Adam(lr, weight_decay=wd, **kw),
    # AdamW without a decay would be Adam: keep Keras' default 0.004 unless one is given.
    "adamw": lambda lr, m, wd, **kw: keras.optimizers.AdamW(lr, weight_decay=wd or 0.004, **kw),
}

SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "onecycle", "triangular", "warmup")
# airbench94's triangle: from 0.2 x the rate up to it at 23 % of the steps, then down to 0.07 x at the end.
TRIANGULAR_START, TRIANGULAR_PEAK_AT, TRIANGULAR_END = 0.2, 0.23, 0.07


@keras.saving.register_keras_serializable(package="keras_tutorials")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels that also supports label smoothing.

    Keras' own sparse loss has no `label_smoothing`; this one one-hot encodes the labels and uses the
    categorical loss, so integer-label pipelines can still smooth (PyTorch's CrossEntropyLoss does both).
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, ignore_class=None,
                 name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        y_true = ops.cast(y_true, "int32")
        if not self.label_smoothing:
            return keras.losses.sparse_categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits, ignore_class=self.ignore_class)
        one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        loss = keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing)
        if self.ignore_class is not None:
            loss = loss * ops.cast(ops.not_equal(y_true, self.ignore_class), loss.dtype)
        return loss

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits, "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise linear: `start` x `peak_rate` -> `peak_rate` at `peak_step`, then down to `end` x `peak_rate`
    at `total_steps` (start = end = 0: Smith's one cycle; airbench's triangle starts at 0.2, ends at 0.07)."""

    def __init__(self, peak_rate, peak_step, total_steps, start=0.0, end=0.0):
        self.peak_rate = peak_rate
        self.peak_step = peak_step
        self.total_steps = total_steps
        self.start = start
        self.end = end

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rising = self.start + (1 - self.start) * step / self.peak_step
        falling = (self.end
                   + (1 - self.end) * (self.total_steps - step) / max(1, self.total_steps - self.peak_step))
        return self.peak_rate * ops.clip(ops.minimum(rising, falling), 0.0, 1.0)

    def get_config(self):
        return {"peak_rate": self.peak_rate, "peak_step": self.peak_step, "total_steps": self.total_steps,
                "start": self.start, "end": self.end}


# ----------------------------------------------------------------------------------------------------- losses
# (builder, target format): "index" losses take integer class labels, "one_hot" losses take vectors
# shaped like the model output (so MSE/MAE/Huber on a classifier compare probabilities with one-hot labels).
LOSSES = {
    "sparse_categorical_crossentropy": (
        lambda ls: SparseCategoricalCrossentropy(label_smoothing=ls), "index"),
    "categorical_crossentropy": (
        lambda ls: keras.losses.CategoricalCrossentropy(label_smoothing=ls), "one_hot"),
    "binary_crossentropy": (
        lambda ls: keras.losses.BinaryCrossentropy(label_smoothing=ls), "one_hot"),
    "mse": (lambda ls: keras.losses.MeanSquaredError(), "one_hot"),
    "mae": (lambda ls: keras.losses.MeanAbsoluteError(), "one_hot"),
    "huber": (lambda ls: keras.losses.Huber(delta=1.0), "one_hot"),
}

ALIASES = {
    "activation": {"silu": "swish", "leakyrelu": "leaky_relu"},
    "initializer": {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
                    "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal"},
    "loss": {"cross_entropy": "sparse_categorical_crossentropy", "ce": "sparse_categorical_crossentropy",
             "bce": "binary_crossentropy", "smooth_l1": "huber", "l1": "mae", "l2": "mse"},
    "optimizer": {"sgd_momentum": "momentum"},
    "schedule": {"none": "constant", "multi_step": "multistep", "steplr": "step"},
}

_KINDS = {
    "activation": ACTIVATIONS,
    "initializer": INITIALIZERS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


def names(kind):
    """The canonical names of one registry, in a stable order (aliases are accepted but not listed)."""
    return list(_KINDS[kind])


def check_name(kind, name):
    """Return the canonical name for `name` (aliases resolved), or raise UserError listing valid names."""
    key = str(name).lower()
    key = ALIASES.get(kind, {}).get(key, key)
    if key not in _KINDS[kind]:
        raise UserError(f"unknown {kind.replace('_', ' ')} '{name}'; valid names: {', '.join(names(kind))}.")
    return key


def activation(name):
    """A fresh activation layer."""
    return ACTIVATIONS[check_name("activation", name)]()


def initializer(name, seed=None):
    """A Keras initializer; without a seed it draws from the global seed of `keras.utils.set_random_seed`."""
    return INITIALIZERS[check_name("initializer", name)](seed=seed)


def regularizer(l1=0.0, l2=0.0):
    """An L1/L2 weight penalty added to the loss, or None when both are zero."""
    if l1 and l2:
        return keras.regularizers.L1L2(l1=l1, l2=l2)
    if l2:
        return keras.regularizers.L2(l2)
    if l1:
        return keras.regularizers.L1(l1)
    return None


def loss(name, label_smoothing=0.0):
    builder, _ = LOSSES[check_name("loss", name)]
    return builder(label_smoothing)


def loss_target(name):
    """'index' when the loss takes integer labels, 'one_hot' when it takes vectors like the model output."""
    return LOSSES[check_name("loss", name)][1]


def optimizer(name, learning_rate, momentum=0.9, weight_decay=0.0, clipnorm=None):
    """An optimizer by its registry name.

    Args:
        name: a name of OPTIMIZERS (or an alias).
        learning_rate: a float or a `keras.optimizers.schedules` object (`schedule`).
        momentum: the momentum of "momentum" and "nesterov"; the others ignore it.
        weight_decay: decoupled weight decay (0: none; AdamW then keeps Keras' default).
        clipnorm: clip each gradient's norm to this; None: no clipping.
    """
    kwargs = {"clipnorm": clipnorm} if clipnorm else {}
    return OPTIMIZERS[check_name("optimizer", name)](learning_rate, momentum, weight_decay or None, **kwargs)


def schedule(name, learning_rate, steps_per_epoch, epochs, step_epochs=30, milestones=(), gamma=0.1,
             warmup_epochs=0.0):
    """A learning rate, or a `keras.optimizers.schedules` object, with every period given in epochs.

    step: x gamma every `step_epochs` (PyTorch StepLR); multistep: x gamma at each milestone (MultiStepLR);
    exponential: x gamma every epoch (ExponentialLR); cosine: optional linear warm-up, then cosine decay to 0
    at the last epoch; onecycle: linear rise to the rate over `warmup_epochs` (default: a quarter of the
    epochs), then linear fall to 0 at the last epoch (Smith's one-cycle, as ResNet-9 uses it); triangular:
    airbench94's variant, from 0.2 x the rate up to it over `warmup_epochs` (default: 23 % of the steps), then
    down to 0.07 x at the last step; warmup: linear warm-up, then constant.

    Args:
        name: a name of SCHEDULES (or an alias); "constant" returns `learning_rate` itself.
        learning_rate: the base (or peak) rate.
        steps_per_epoch: the batches per epoch, which turn the epochs below into steps.
        epochs: the length of the whole run.
        step_epochs: the period of "step".
        milestones: the epochs at which "multistep" multiplies by `gamma`.
        gamma: the factor of "step", "multistep" and "exponential".
        warmup_epochs: the rise of "cosine", "onecycle", "triangular" and "warmup" (0: none for "cosine",
            the defaults above for "onecycle" and "triangular", one step for "warmup").
    """
    name = check_name("schedule", name)
    schedules = keras.optimizers.schedules
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    total_steps = max(1, epochs * steps_per_epoch)
    if name == "constant":
        return learning_rate
    if name in ("step", "multistep"):
        epochs_at = (range(step_epochs, epochs, step_epochs) if name == "step" else sorted(milestones))
        boundaries = [int(e * steps_per_epoch) for e in epochs_at]
        if not boundaries:
            return learning_rate
        values = [learning_rate * gamma**i for i in range(len(boundaries) + 1)]
        return schedules.PiecewiseConstantDecay(boundaries, values)
    if name == "exponential":
        return schedules.ExponentialDecay(learning_rate, decay_steps=steps_per_epoch, decay_rate=gamma,
                                          staircase=True)
    if name == "cosine":
        if warmup_steps:
            return schedules.CosineDecay(0.0, decay_steps=max(1, total_steps - warmup_steps),
                                         warmup_target=learning_rate, warmup_steps=warmup_steps)
        return schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    if name == "onecycle":
        peak_step = warmup_steps or max(1, total_steps // 4)
        return OneCycle(learning_rate, peak_step, total_steps)
    if name == "triangular":
        peak_step = warmup_steps or max(1, int(TRIANGULAR_PEAK_AT * total_steps))
        return OneCycle(learning_rate, peak_step, total_steps, start=TRIANGULAR_START, end=TRIANGULAR_END)
    # warmup: alpha=1 turns the cosine part into a constant at the warm-up target.
    return schedules.CosineDecay(0.0, decay_steps=1, alpha=1.0, warmup_target=learning_rate,
                                 warmup_steps=max(1, warmup_steps))
