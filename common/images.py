"""Image data: class-per-folder trees -> uint8 arrays -> tf.data pipelines with augmentation on the fly.

Small image sets (CIFAR-10 is 180 MB as uint8) are decoded once with
`keras.utils.image_dataset_from_directory` and kept in memory as arrays; a copy of the arrays is cached beside
an extracted archive, so later runs skip the 60,000 JPEG decodes. Before that, every file is checked: a
corrupt image, an image of the wrong size or an empty class folder is a `UserError` naming the file or folder,
not a traceback mid-epoch.

Augmentation (`augment_batch`) works on whole batches with stateless random ops seeded per batch from
`--seed`: the same seed gives the same augmented images on every run (and it is cheap, which matters on
a 2-core CPU where the input pipeline shares the cores with training):

- random crop after padding 4 pixels (reflect), and horizontal flip: the standard CIFAR augmentation;
- cutout (DeVries & Taylor 2017): one square of each image set to the mean (zero after normalisation);
- mixup (Zhang et al. 2018): pairs of images and their one-hot labels blended with a Beta(a, a) weight;
- alternating flip (airbench, Jordan 2024): each image is mirrored in exactly half the epochs, every other
  one, starting from a random choice per image (`Augmentation(alternating_flip=True)`).

`predict_tta` is test-time augmentation: predictions averaged over the mirror image and, optionally, one-pixel
translations (airbench's multi-crop evaluation).
"""

import dataclasses
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UserError
from common.umask import follow_umask

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


# --------------------------------------------------------------------------------------------- folder trees
def class_folders(folder, class_names=None):
    """The class names of `folder/<class>/`, checked: each class folder exists and holds images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist; expected one sub-folder of images per class.")
    names = list(class_names) if class_names else sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not names:
        raise UserError(f"{folder} has no class sub-folders; expected {folder}/<class>/<image files>.")
    for name in names:
        sub = folder / name
        if not sub.is_dir():
            raise UserError(f"{sub} is missing; expected one folder per class ({', '.join(names)}).")
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in sub.iterdir()):
            raise UserError(f"{sub} holds no images; every class folder needs at least one image file.")
    return names


def check_pixel_count(path):
    """Refuse, before decoding, an image whose header claims more pixels than Pillow's decompression-bomb
    limit (a small PNG can declare a 100,000 x 100,000 canvas: decoding it would fill the memory)."""
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():  # Pillow's own warning past the limit: the sentence below says it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError:
        width = height = None
    except (OSError, ValueError, UnidentifiedImageError):
        return  # not an image Pillow knows: the decoder that reads it says what is wrong
    if width is None or width * height > limit:
        size = "" if width is None else f" ({width}x{height})"
        raise UserError(f"{path} declares too many pixels{size}, over {limit:,}: it is not a photo but a "
                        "decompression bomb or a damaged file; expected an ordinary image.")


def check_images(paths, image_size=None):
    """Decode every file once; raise UserError for the first one that is corrupt, declares an absurd number
    of pixels, or (when `image_size` is given) is not that size."""
    paths = [str(p) for p in paths]
    if image_size is None:  # files of unknown size (a user's photos): no decoding of a bomb
        for path in paths:
            check_pixel_count(path)

    def shape_of(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return path, tf.shape(image)[:2]

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(shape_of, num_parallel_calls=tf.data.AUTOTUNE)
    decoded = {}
    for path, shape in dataset.ignore_errors().batch(4096).as_numpy_iterator():
        decoded.update(zip((p.decode() for p in path), (tuple(s) for s in shape), strict=True))
    broken = [p for p in paths if p not in decoded]
    if broken:
        raise UserError(f"{broken[0]} is not a readable image ({len(broken)} such file(s) in all); "
                        "remove or replace it.")
    wrong = [(p, s) for p, s in decoded.items() if image_size and s != tuple(image_size)]
    if wrong:
        path, size = wrong[0]
        raise UserError(f"{path} is {size[0]}x{size[1]} pixels, expected {image_size[0]}x{image_size[1]} "
                        f"({len(wrong)} such image(s) in all).")


def load_image_folder(folder, image_size, class_names=None):
    """All images of `folder/<class>/` as (uint8 array, int labels, class names), checked first."""
    import keras

    names = class_folders(folder, class_names)
    dataset = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", class_names=names, image_size=tuple(image_size),
        batch_size=2048, shuffle=False, verbose=False)
    check_images(dataset.file_paths, image_size)
    images, labels = [], []
    for x, y in dataset.as_numpy_iterator():  # same size as stored, so no resampling happened
        images.append(np.round(x).astype("uint8"))
        labels.append(y.astype("int64"))
    return np.concatenate(images), np.concatenate(labels), names


def cached_arrays(cache_file, build):
    """`build()` -> dict of arrays, saved to `cache_file` (.npz) the first time and read back after.

    The file is written under a name of its own and renamed into place (two processes never write the same
    file, a kill never leaves half of one); a cache file that cannot be read is built again.
    """
    cache_file = Path(cache_file)
    try:
        with np.load(cache_file) as stored:
            return {k: stored[k] for k in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing, or damaged: build it again
        pass
    arrays = build()
    handle, partial = tempfile.mkstemp(prefix=f".{cache_file.stem}.", suffix=".partial.npz",
                                       dir=cache_file.parent)
    os.close(handle)
    try:
        np.savez(partial, **arrays)
        follow_umask(partial)  # a shared cache stays readable by the user's colleagues
        os.replace(partial, cache_file)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return arrays


def split_validation(x, y, val_images, seed):
    """Hold out `val_images` examples, the same number per class, chosen with `seed`."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_images < len(y):
        raise UserError(f"--val-images must be between 1 and {len(y) - 1}, got {val_images}.")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_images, stratify=y,
                                                      random_state=seed)
    return x_train, y_train, x_val, y_val


# ------------------------------------------------------------------------------------------------ pipelines
def channel_stats(x):
    """Per-channel mean and standard deviation of uint8 images, on the 0..255 scale."""
    pixels = x.reshape(-1, x.shape[-1]).astype("float64")
    return pixels.mean(axis=0), pixels.std(axis=0)


def augment_batch(images, seed, crop_padding=4, flip=True, cutout=0):
    """Random pad-and-crop, horizontal flip and cutout of a float batch, from a stateless seed.

    Args:
        images: a float batch (n, height, width, channels).
        seed: a shape-(2,) int tensor; each transformation derives its own seed from it.
        crop_padding: pixels of reflect padding on each side before the random crop (0: no crop).
        flip: mirror a random half of the images.
        cutout: the side of the square set to zero in each image (0: no cutout).
    """
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if crop_padding:
        p = crop_padding
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        offsets = tf.random.stateless_uniform((n, 2), seeds[0], 0, 2 * p + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(height)[None]
        cols = offsets[:, 1:] + tf.range(width)[None]
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if flip:
        flips = tf.random.stateless_uniform((n, 1, 1, 1), seeds[1]) < 0.5
        images = tf.where(flips, tf.reverse(images, axis=[2]), images)
    if cutout:
        centres = tf.random.stateless_uniform((n, 2), seeds[2], 0, 1) * tf.cast([height, width], tf.float32)
        row = tf.cast(tf.range(height), tf.float32)[None, :, None]
        col = tf.cast(tf.range(width), tf.float32)[None, None, :]
        half = cutout / 2
        inside = ((tf.abs(row + 0.5 - centres[:, :1, None]) <= half)
                  & (tf.abs(col + 0.5 - centres[:, 1:, None]) <= half))
        images = images * tf.cast(~inside, images.dtype)[..., None]
    return images


def mixup_batch(images, one_hot, seed, alpha):
    """Blend each example with another of the batch (the batch reversed) by a Beta(alpha, alpha) weight."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma((n,), seeds[0], alpha)
    b = tf.random.stateless_gamma((n,), seeds[1], alpha)
    weight = a / (a + b)
    weight = tf.maximum(weight, 1 - weight)  # the example keeps the larger share: its own label dominates
    images = (weight[:, None, None, None] * images
              + (1 - weight[:, None, None, None]) * tf.reverse(images, [0]))
    one_hot = weight[:, None] * one_hot + (1 - weight[:, None]) * tf.reverse(one_hot, [0])
    return images, one_hot


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How `image_pipeline` shuffles and transforms the training batches (by default: shuffled only).

    A lesson's config with the same fields (tasks/cifar10.py's) serves as well.

    Args:
        seed: seeds the shuffle and each batch's random transformations.
        crop_padding: random crop after reflect-padding this many pixels on each side (0: no crop).
        flip: random horizontal flips.
        cutout: the side of the square cut out of each image (0: no cutout).
        mixup: the alpha of mixup's Beta(alpha, alpha) weights (0: no mixup); it needs one-hot labels.
        alternating_flip: airbench's alternating flips instead of random ones.
    """

    seed: int = 0
    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    mixup: float = 0.0
    alternating_flip: bool = False


def image_pipeline(split, batch_size, one_hot_classes=None, training=None):
    """A tf.data pipeline of (float32 images on the 0..255 scale, labels) batches from uint8 arrays.

    Normalisation lives in the model (a `Normalization` layer), so a saved model takes raw pixels.
    A training pipeline shuffles every epoch (seeded) and applies `augment_batch` and mixup to each batch.
    With alternating flips the flip depends on the epoch, so the pipeline is the endless training stream
    itself (every pass reshuffled, as `resume.stream_from` makes it) and a batch's epoch is its position in
    the stream // batches per epoch: a resumed run that skips the finished epochs' batches flips exactly as
    an uninterrupted one.

    Args:
        split: (uint8 images (n, height, width, channels), integer labels), e.g. `data.train` of
            datasets/cifar10.py's splits.
        batch_size: the examples per batch.
        one_hot_classes: one-hot labels over this many classes (mixup needs them); None keeps the integer
            labels.
        training: shuffle and augment as this `Augmentation` (or config) says; None for evaluation batches,
            in order and unchanged.
    """
    x, y = split
    if training is None:  # evaluation: in order, as stored
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).map(
            _float_batch(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)
    seed, mixup, alternating_flip = training.seed, training.mixup, training.alternating_flip
    augment = dict(crop_padding=training.crop_padding, flip=training.flip, cutout=training.cutout)
    if alternating_flip:
        augment = dict(augment, flip=False)  # the flips are made before
        dataset = tf.data.Dataset.from_tensor_slices((x, y, first_flips(len(x), seed)))
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    dataset = dataset.map(_float_batch(one_hot_classes), num_parallel_calls=tf.data.AUTOTUNE)
    if alternating_flip:
        batches_per_epoch = -(-len(x) // batch_size)
        epochs = tf.data.Dataset.counter().map(lambda position: position // batches_per_epoch)
        dataset = tf.data.Dataset.zip(dataset.repeat(), epochs).map(
            lambda batch, epoch: (alternate_flips(batch[0], batch[2], epoch), batch[1]))
    # One stateless seed per batch, different every epoch, the same on every run.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def transform(batch, batch_seed):
        images, labels = batch[:2]
        batch_seed = tf.cast(batch_seed % (2**31), tf.int32)
        images = augment_batch(images, batch_seed, **augment)  # (all off: the images as they are)
        if mixup:
            images, labels = mixup_batch(images, labels, batch_seed + 1, mixup)
        return images, labels

    dataset = tf.data.Dataset.zip(dataset, seeds).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _float_batch(one_hot_classes):
    """A batch's uint8 images as float32 (0..255), its labels one-hot over `one_hot_classes` when given."""

    def to_float(images, labels, *flips):
        labels = tf.one_hot(labels, one_hot_classes) if one_hot_classes is not None else labels
        return (tf.cast(images, tf.float32), labels, *flips)

    return to_float


def first_flips(count, seed):
    """Whether each of `count` images is mirrored in the first epoch (a fair coin each, from `seed`)."""
    return np.random.default_rng([seed, 0xF11B]).random(count) < 0.5


def alternate_flips(images, first_flip, epoch):
    """Mirror an image when its first-epoch choice XOR the epoch's parity says so: each image is then mirrored
    in every other epoch, exactly half of an even number of them."""
    flip = tf.math.logical_xor(first_flip, tf.equal(epoch % 2, 1))
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


# ------------------------------------------------------------------------------------ test-time augmentation
def tta_views(x, translate=False):
    """(view, weight) pairs of a batch (n, h, w, c): the images and their mirror images (0.5 each); with
    `translate`, airbench's multi-crop: those two at half weight, and the mirror pairs of the images shifted
    one pixel down-right and up-left (reflect padding) at a quarter each, i.e. 1/8 per view."""
    mirror = x[:, :, ::-1]
    if not translate:
        return [(x, 0.5), (mirror, 0.5)]
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    height, width = x.shape[1:3]
    shifted = [padded[:, :height, :width], padded[:, 2:2 + height, 2:2 + width]]
    return [(x, 0.25), (mirror, 0.25)] + [(view, 0.125) for s in shifted for view in (s, s[:, :, ::-1])]


def predict_tta(model, x, translate=False, batch_size=500, chunk=2000):
    """Class probabilities of uint8 or float images averaged over `tta_views`.

    The views are averaged in log space: the mean log-probability differs from the mean logit only by a
    per-view constant, so this ranks classes as averaging logits does (airbench's rule), although the model
    ends in a softmax. A model that ignores its input gets its own output back.

    Args:
        model: the trained classifier (softmax outputs).
        x: the images (n, height, width, channels), uint8 or float.
        translate: add airbench's one-pixel translations to the mirror images (`tta_views`).
        batch_size: the images per `model.predict` batch.
        chunk: the images whose views are held in memory at once.
    """
    out = []
    for start in range(0, len(x), chunk):  # the views of 10,000 images at once would take 0.7 GB
        block = np.asarray(x[start:start + chunk], dtype="float32")
        log_mean = 0.0
        for view, weight in tta_views(block, translate):
            probabilities = np.asarray(model.predict(view, batch_size=batch_size, verbose=0), dtype="float64")
            log_mean = log_mean + weight * np.log(np.maximum(probabilities, np.finfo("float32").tiny))
        log_mean = log_mean - log_mean.max(axis=-1, keepdims=True)
        probabilities = np.exp(log_mean)
        out.append(probabilities / probabilities.sum(axis=-1, keepdims=True))
    return np.concatenate(out).astype("float32")
