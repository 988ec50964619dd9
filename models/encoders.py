"""Pretrained image encoders for captioning, and the on-disk cache of the features they compute.

A frozen encoder gives the same features for an image in every epoch, so they are computed once per image
and stored (float16) in the cache, as the TensorFlow captioning tutorial does: training then only runs the
decoder.

* `efficientnet_lite0`: EfficientNet-Lite0 with ImageNet weights ported from PyTorch (models/efficientnet_lite.py),
  7x7x1280 features at 224 pixels. Works offline.
* any of `KERAS_APPLICATIONS` (e.g. `ResNet50`, `MobileNetV2`): `keras.applications` with ImageNet weights,
  downloaded by Keras into ~/.keras/models the first time (online users).
"""

import time
from pathlib import Path

import numpy as np

from common.data_root import cache_root
from common.errors import UserError

# keras.applications model -> the module holding its preprocess_input.
KERAS_APPLICATIONS = {"MobileNetV2": "mobilenet_v2", "ResNet50": "resnet50", "ResNet50V2": "resnet_v2",
                      "InceptionV3": "inception_v3", "EfficientNetB0": "efficientnet", "DenseNet121": "densenet",
                      "VGG16": "vgg16", "ConvNeXtTiny": "convnext"}
PRETRAINED = ("efficientnet_lite0",) + tuple(KERAS_APPLICATIONS)


def pretrained_encoder(name, image_size):
    """A frozen model from raw pixels (0..255) to its last feature map (h, w, channels)."""
    import keras

    shape = (image_size, image_size, 3)
    if name == "efficientnet_lite0":
        from models.efficientnet_lite import feature_extractor

        model = feature_extractor(weights="imagenet", input_shape=shape)
    elif name in KERAS_APPLICATIONS:
        module = getattr(keras.applications, KERAS_APPLICATIONS[name])
        try:
            base = getattr(keras.applications, name)(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as error:  # offline: the download fails with one of several error types
            raise UserError(f"the ImageNet weights of {name} are not in the Keras cache (~/.keras/models) and "
                            f"could not be downloaded ({type(error).__name__}); use --encoder efficientnet_lite0 "
                            "offline.") from None
        inputs = keras.Input(shape)
        model = keras.Model(inputs, base(module.preprocess_input(inputs)), name=f"{name}_features")
    else:
        raise UserError(f"unknown encoder '{name}'; valid: cnn, {', '.join(PRETRAINED)}.")
    model.trainable = False
    return model


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
    batches = [np.clip(np.round(b), 0, 255).astype("uint8") for b in read_images(paths, image_size).as_numpy_iterator()]
    return np.concatenate(batches)


def cached_features(paths, name, image_size, key):
    """(features (n, positions, channels) float16, seconds spent, whether they came from the cache).

    `key` names the image list (see common.captions.fingerprint); a changed list or encoder gets a new file.
    """
    from common.images import check_images

    path = cache_root() / "caption-features" / f"{name}-{image_size}px-{key}.npy"
    started = time.perf_counter()
    if path.is_file():
        return np.load(path), time.perf_counter() - started, True
    check_images(paths)  # a corrupt file: one sentence naming it, before an hour of encoding
    encoder = pretrained_encoder(name, image_size)
    grids = encoder.predict(read_images(paths, image_size), verbose=0)  # compiled: ~30 ms per image on a CPU
    features = grids.reshape(len(grids), -1, grids.shape[-1]).astype("float16")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{path}.partial.npy")
    np.save(partial, features)
    partial.replace(path)  # never leave a half-written cache behind
    return features, time.perf_counter() - started, False
