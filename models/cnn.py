"""Convolutional networks for small images (CIFAR-10), from the course's first CNN to residual networks.

Every model starts with a `Normalization` layer holding the training set's per-channel mean and variance,
so a saved model takes raw 0..255 pixels, and ends in a float32 softmax.

- `course_cnn`: the course's first CNN, conv 16 5x5 -> ReLU -> pool -> conv 32 5x5 -> ReLU -> pool ->
  flatten -> dense 10 (34,538 parameters on 32x32x3).
- `vgg`: blocks of two 3x3 conv + batch norm + activation, max-pool and dropout, widths doubling.
- `resnet20` / `resnet32` / `resnet56`: He et al. (2016), section 4.2: a 3x3 conv with 16 filters, then 3
  stages of n basic blocks (16, 32, 64 filters, depth 6n + 2), global average pooling, dense 10. Shortcuts
  are option A: identity, and where the shape changes, every other pixel with the new channels zero-padded
  (no parameters: ResNet-20 has the paper's 0.27 M).
- `fast`: a network made for time-to-accuracy, after Keller Jordan's airbench (2024) and Page's ResNet-9:
  a 2x2 stem, then three blocks of conv -> max-pool -> BN -> act -> conv -> BN -> act, global max pooling
  and a down-scaled linear head. Widths are a flag, so it fits a CPU budget (quick) or a GPU one (full).
  airbench94's model-side methods are flags (`models/airbench.py`): a frozen patch-whitening stem
  (`whiten`), identity-initialised 3x3 convs (`dirac`, any model), batch norm without a learned scale
  (`bn_scale`) and with a faster-learning shift (`bn_bias_lr`, any model with batch norm).

Each name maps to its builder in BUILDERS, at the end of this file.
"""

import functools

import keras
import numpy as np
from keras import layers

from common.errors import UserError
from common import registry
from models import airbench
from models.fused_batch_norm import FusedBatchNormalization

RESNET_BLOCKS = {"resnet20": 3, "resnet32": 5, "resnet56": 9}


def build_cnn(config, data):
    """The architecture named by `config.model` (a key of BUILDERS), for `data` (image_shape, num_classes,
    mean, variance): the normalisation layer, the architecture's builder, then a float32 softmax."""
    name = config.model
    if name not in BUILDERS:
        raise UserError(f"unknown model '{name}'; valid: {', '.join(BUILDERS)}.")
    inputs = keras.Input(shape=data.image_shape, name="pixels")
    x = layers.Normalization(mean=data.mean, variance=data.variance, name="normalize")(inputs)
    logits = BUILDERS[name](x, config, data)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


def dense_logits(x, config, data, use_bias=True):
    """The classifier every architecture ends in: one dense layer to `data.num_classes` logits."""
    return layers.Dense(data.num_classes, use_bias=use_bias, kernel_initializer=_init(config),
                        kernel_regularizer=_l2(config), name="logits")(x)


def _init(config):
    return registry.initializer(config.initializer)


def _l2(config):
    return registry.regularizer(l2=config.l2)


def _option(config, name, default):
    """An airbench setting: configs of other lessons (and tests' small ones) do not have these fields."""
    return getattr(config, name, default)


def conv(x, filters, config, kernel_size=3, strides=1, padding="same", use_bias=False, name=None):
    initializer = _init(config)
    if kernel_size == 3 and _option(config, "dirac", False):
        initializer = airbench.Dirac(initializer)
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                         kernel_initializer=initializer, kernel_regularizer=_l2(config), name=name)(x)


def batch_norm(x, config, name=None):
    """Batch norm, by TensorFlow's fused kernel unless `fused_batch_norm` is False; `bn_scale` False drops
    its learned scale, `bn_bias_lr` != 1 moves its shift into a `ScaledBias` that SGD trains that many times
    faster."""
    bias_lr = _option(config, "bn_bias_lr", 1.0)
    norm = FusedBatchNormalization if _option(config, "fused_batch_norm", True) else layers.BatchNormalization
    x = norm(momentum=config.bn_momentum, epsilon=1e-5, center=bias_lr == 1.0,
             scale=_option(config, "bn_scale", True), name=name)(x)
    if bias_lr != 1.0:
        x = airbench.ScaledBias.for_learning_rate(bias_lr, name=f"{name}_shift")(x)
    return x


def conv_bn_act(x, filters, config, name, strides=1):
    """conv (no bias: BN has its own shift) -> batch norm -> activation."""
    if strides > 1:
        # Pad 1 on every side, as PyTorch's padding=1 does. Keras' "same" would pad only bottom/right for a
        # stride-2 conv on an even size, shifting every window by a pixel against a PyTorch twin.
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        x = conv(x, filters, config, strides=strides, padding="valid", name=f"{name}_conv")
    else:
        x = conv(x, filters, config, name=f"{name}_conv")
    x = batch_norm(x, config, name=f"{name}_bn")
    return registry.activation(config.activation)(x)


# ----------------------------------------------------------------------------------------------- course CNN
def course_cnn_body(x, config):
    for i, filters in enumerate((16, 32), start=1):
        x = conv(x, filters, config, kernel_size=5, use_bias=True, name=f"conv_{i}")
        x = registry.activation(config.activation)(x)
        x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Dropout(config.dropout, name="dropout")(x) if config.dropout else x


def build_course_cnn(x, config, data):
    return dense_logits(course_cnn_body(x, config), config, data)


# ------------------------------------------------------------------------------------------------------ VGG
def vgg_body(x, config):
    for stage, filters in enumerate(config.widths, start=1):
        for i in (1, 2):
            x = conv_bn_act(x, filters, config, name=f"block{stage}_{i}")
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
        if config.dropout:  # more dropout deeper in, where the layers have more parameters
            x = layers.Dropout(config.dropout * stage / len(config.widths), name=f"block{stage}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dropout(config.dropout, name="dropout")(x) if config.dropout else x


def build_vgg(x, config, data):
    return dense_logits(vgg_body(x, config), config, data)


# --------------------------------------------------------------------------------------------------- ResNet
@keras.saving.register_keras_serializable(package="keras_tutorials")
class ShortcutA(layers.Layer):
    """He et al.'s option A shortcut: keep every other pixel and zero-pad the new channels (no weights)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def call(self, x):
        x = x[:, ::2, ::2, :]
        extra = self.filters - x.shape[-1]
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else (h + 1) // 2, None if w is None else (w + 1) // 2, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def basic_block(x, filters, config, name, strides=1):
    """conv-BN-act-conv-BN plus the shortcut, then the activation (He et al. 2016, figure 2)."""
    shortcut = (x if strides == 1 and x.shape[-1] == filters
                else ShortcutA(filters, name=f"{name}_shortcut")(x))
    y = conv_bn_act(x, filters, config, name=f"{name}_a", strides=strides)
    y = conv(y, filters, config, name=f"{name}_b_conv")
    y = batch_norm(y, config, name=f"{name}_b_bn")
    x = layers.Add(name=f"{name}_add")([shortcut, y])
    return registry.activation(config.activation)(x)


def resnet_body(x, config, blocks_per_stage):
    x = conv_bn_act(x, 16, config, name="stem")
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            x = basic_block(x, filters, config, name=f"stage{stage}_block{block + 1}", strides=strides)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def build_resnet(x, config, data, blocks_per_stage):
    return dense_logits(resnet_body(x, config, blocks_per_stage), config, data)


def resnet_parameter_count(blocks_per_stage, num_classes=10, channels=3):
    """Trainable parameters of the CIFAR ResNet by formula: 3x3 convs without bias (9 * in * out), two per
    block; batch norm adds scale and shift per channel; option A shortcuts add nothing; dense 64 * 10 + 10."""
    total = 9 * channels * 16 + 2 * 16  # stem conv + BN
    fan_in = 16
    for filters in (16, 32, 64):
        for _ in range(blocks_per_stage):
            total += 9 * fan_in * filters + 9 * filters * filters + 2 * (2 * filters)
            fan_in = filters
    return total + 64 * num_classes + num_classes


# ------------------------------------------------------------------------------------------------- fast net
def fast_body(x, config, data=None):
    # A 2x2 stem without padding (32 -> 31 pixels) sees every 2x2 patch: trained, or (`whiten`) airbench's
    # frozen whitening of those patches, computed here from the normalised training images.
    if _option(config, "whiten", False):
        stem = airbench.PatchWhitening(eps=_option(config, "whiten_eps", airbench.WHITEN_EPS),
                                       name="stem_whiten")
        x = stem(x)
        stem.adapt(normalized_training_images(data, airbench.WHITEN_IMAGES))
    else:
        x = conv(x, config.stem_width, config, kernel_size=2, padding="valid", use_bias=True,
                 name="stem_conv")
    x = registry.activation(config.activation)(x)
    for stage, filters in enumerate(config.widths, start=1):
        x = conv(x, filters, config, name=f"block{stage}_conv_1")
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
        x = batch_norm(x, config, name=f"block{stage}_bn_1")
        x = registry.activation(config.activation)(x)
        x = conv_bn_act(x, filters, config, name=f"block{stage}_2")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    return layers.Dropout(config.dropout, name="dropout")(x) if config.dropout else x


def build_fast(x, config, data):
    # A head without bias, and a small output scale that keeps the first steps' logits small (airbench: 1/9).
    logits = dense_logits(fast_body(x, config, data), config, data, use_bias=False)
    return layers.Rescaling(config.logit_scale, name="logit_scale")(logits)


def normalized_training_images(data, count):
    """The first `count` training images as the model's Normalization layer sees them."""
    if getattr(data, "x_train", None) is None:
        raise UserError("the whitening stem is computed from training images; this data has none.")
    x = np.asarray(data.x_train[:count], dtype="float64")
    return (x - np.asarray(data.mean)) / np.sqrt(np.asarray(data.variance))


def course_cnn_parameter_count(height=32, width=32, channels=3, num_classes=10):
    """conv 5x5: 25 * in * out + out; two 2x2 pools quarter the pixels; dense: flattened * classes +
    classes."""
    flattened = (height // 4) * (width // 4) * 32
    return (25 * channels * 16 + 16) + (25 * 16 * 32 + 32) + flattened * num_classes + num_classes


# Every `--model` name -> its builder: (normalised pixels, config, data) -> logits. A new architecture is a
# builder and an entry here: the lesson's --model, the tuner's search space and `--compare model`
# (tuning/spaces.py) and benchmarks/cifar10.py read this mapping.
BUILDERS = {
    "course_cnn": build_course_cnn,
    "vgg": build_vgg,
    **{name: functools.partial(build_resnet, blocks_per_stage=n) for name, n in RESNET_BLOCKS.items()},
    "fast": build_fast,
}
