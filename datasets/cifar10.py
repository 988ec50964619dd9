"""CIFAR-10 from whatever copy is at hand, as uint8 arrays with a stratified validation hold-out.

`load(config)` reads the lesson's settings (`data_dir`, `val_images`, `split_seed`, `max_images`,
`lossless_holdout`, `source`) and returns one `Splits`; `read(...)` is the same with plain arguments.

In the data set folder `cifar10/` of the data root (see common/data_root.py), in this order:

1. `train/<class>/` and `test/<class>/` image folders (already extracted),
2. `cifar10-images.tar` holding those folders (the offline copy: JPEG re-encodings), extracted once,
3. the official python batches, `cifar-10-batches-py/` or `cifar-10-python.tar.gz`.

With no data set folder anywhere, `keras.datasets.cifar10` is asked (its own Keras cache, or the download
for online users). Class order is `labels.txt` when present, else the standard airplane..truck.

`lossless_holdout` keeps the first 4,000 training images (the start of the original data_batch_1) out of
training and validation, as evaluation sets: with the JPEG copy, `lossless_train_first4000.npz` beside it
holds their lossless originals and the name of each one's JPEG, so a model is scored on both versions of the
same images (`held_out["lossless"]`, `held_out["jpeg"]`): the first estimates accuracy on the original
CIFAR-10, the difference is what the JPEG copy costs. With the original batches the 4,000 are the originals.
With `source="tfds"` (TensorFlow Datasets' `cifar10`, PNG-decoded, so lossless too) the images are put back
in the original order, so the held-out 4,000 are the same originals and `held_out["lossless"]` means the same:
accuracy on unseen original images; there is no JPEG copy, so no "jpeg" set and no cost to measure.
"""

import dataclasses
import functools
import pickle
from pathlib import Path

import numpy as np

from common import images
from common.data_root import extract_once, find_dataset
from common.errors import UserError
from datasets import ArraySplits

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SIZE = (32, 32)
ARCHIVE = "cifar10-images.tar"
LOSSLESS_FILE = "lossless_train_first4000.npz"
HOLDOUT_SIZE = 4000
# A JPEG copy differs from its original by about 6 grey levels per pixel on average (SOURCE.txt of the
# shared copy); unrelated images differ by about 60. Above this mean, the file does not belong to the copy.
MATCH_LIMIT = 16.0
LOSSY_NOTE = "JPEG re-encodings of the CIFAR-10 images (lossy), not the original batches"
TFDS_NAME, KERAS_NAME = "TensorFlow Datasets cifar10", "keras.datasets.cifar10"


@dataclasses.dataclass
class Splits(ArraySplits):
    """uint8 images (n, height, width, channels) and integer labels per split."""

    class_names: list
    source: object = None  # the data set folder read, or the name of the copy (TFDS, keras.datasets)
    note: str = ""  # what the images are (a lossy copy, what was held out), said beside the numbers
    # Evaluation sets kept out of training and validation: name -> (uint8 images, labels).
    held_out: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def channel_stats(self):
        """Per-channel (mean, variance) of the training images, for the models' Normalization layer."""
        mean, std = images.channel_stats(self.x_train)
        return mean, std**2

    @property
    def mean(self):
        return self.channel_stats[0]

    @property
    def variance(self):
        return self.channel_stats[1]

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self):
        return len(self.class_names)


def load(config):
    """The lesson's CIFAR-10 splits: `read` with the config's data folder, split sizes, seed and source."""
    return read(config.data_dir, config.val_images, config.split_seed, config.max_images,
                lossless_holdout=config.lossless_holdout, source=config.source)


def read(data_dir=None, val_images=5000, split_seed=42, max_images=None, lossless_holdout=False,
         source="auto"):
    """Splits of CIFAR-10 from the first copy found (see the module's docstring).

    Args:
        data_dir: the data root (`common/data_root.py`), or with `source` "tfds" the TFDS data dir.
        val_images: training images held out for validation, the same number per class (0: none).
        split_seed: seeds the choice of the validation images.
        max_images: keep only this many images per split (smoke runs); None: all.
        lossless_holdout: keep the first 4,000 training images out of training and validation, as evaluation
            sets (see the module's docstring).
        source: "auto" (the data root's copy, else keras.datasets) or "tfds" (TensorFlow Datasets' prepared
            `cifar10`, `common/tfds_data.py`).
    """
    # TFDS holds the original images: the held-out 4,000 are lossless originals, as with the batches.
    if source == "tfds":
        from common import tfds_data

        folder, arrays, note = None, tfds_data.cifar10_arrays(CLASS_NAMES, data_dir), TFDS_NAME
        where = TFDS_NAME
    else:
        folder, arrays, note = _find_copy(data_dir)
        where = folder or KERAS_NAME
    x, y, x_test, y_test = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    names = [str(n) for n in arrays["class_names"]]
    held_out = {}
    if lossless_holdout:
        held_out, kept, holdout_note = _lossless_holdout(folder, x, y, names, arrays.get("source"))
        x, y = x[kept], y[kept]
        note = "; ".join(n for n in (note, holdout_note) if n)
    if max_images:
        x, y = _first_per_class(x, y, max_images), _first_per_class(y, y, max_images)
        x_test, y_test = (_first_per_class(x_test, y_test, max_images),
                          _first_per_class(y_test, y_test, max_images))
        held_out = {k: (_first_per_class(hx, hy, max_images), _first_per_class(hy, hy, max_images))
                    for k, (hx, hy) in held_out.items()}
        val_images = max(len(names), min(val_images, len(y) // 5)) if val_images else 0
    if val_images:
        x_train, y_train, x_val, y_val = images.split_validation(x, y, val_images, split_seed)
    else:  # no validation split: the recipe's hyperparameters were chosen elsewhere
        x_train, y_train, x_val, y_val = x, y, x[:0], y[:0]
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, names, source=where, note=note,
                  held_out=held_out)


def _find_copy(data_dir):
    """(folder or None, arrays, note) from the data root's copy, else keras.datasets."""
    try:
        folder = find_dataset("cifar10", data_dir)
    except UserError as not_found:
        if data_dir is not None:
            raise
        return None, _keras_download(not_found), ""
    return (folder, *_read_folder(folder))


def _lossless_holdout(folder, x, y, names, source):
    """({name: (images, labels)}, indices of the training images kept, note) for `lossless_holdout`."""
    everything = np.arange(len(y))
    if source == "original":  # the official batches: the first 4,000 are the originals themselves
        count = min(HOLDOUT_SIZE, len(y))
        return ({"lossless": (x[:count], y[:count])}, everything[count:],
                f"the first {count:,} training images (originals) held out")
    path = folder / LOSSLESS_FILE
    if not path.is_file():
        return {}, everything, f"nothing held out: no {LOSSLESS_FILE} beside this copy"
    try:
        with np.load(path) as stored:
            lossless, labels, jpeg_names = stored["x"], stored["y"].astype("int64"), stored["jpeg_name"]
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path} is not a readable lossless hold-out file ({type(error).__name__}); expected "
                        "arrays x, y and jpeg_name.") from None
    by_class = {name: np.flatnonzero(y == c) for c, name in enumerate(names)}
    indices = np.array([_train_index(str(name), by_class, path) for name in jpeg_names], dtype="int64")
    copies = x[indices]
    difference = np.abs(copies.astype("float32") - lossless.astype("float32")).mean() if len(indices) else 0.0
    if lossless.shape != copies.shape or not np.array_equal(y[indices], labels) or difference > MATCH_LIMIT:
        raise UserError(f"{path} does not match the training images of this copy (labels or pixels differ); "
                        "expected the lossless originals of its own images.")
    return ({"lossless": (lossless, labels), "jpeg": (copies, labels)},
            np.setdiff1d(everything, indices),
            f"the first {len(indices):,} training images held out: lossless originals ({LOSSLESS_FILE}) and "
            "their copies here")


def _train_index(name, by_class, path):
    """Where `train/<class>/NNNN.<ext>` sits in the training arrays: image NNNN of its class, since the
    arrays hold each class's files in name order (`by_class`: class name -> its indices, in order)."""
    parts = name.split("/")
    stem = parts[-1].split(".")[0]
    position = int(stem) if stem.isdigit() else -1
    members = by_class.get(parts[-2], []) if len(parts) >= 2 else []
    if not 0 <= position < len(members):
        raise UserError(f"{path} names {name}, which is not an image of this copy's training set; expected "
                        "names like train/<class>/0000.jpg.")
    return members[position]


def _first_per_class(values, labels, limit):
    """The first `limit` examples, taken evenly across classes, in their stored order."""
    per_class = max(1, limit // (int(labels.max()) + 1))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return values[np.sort(keep)]


def _read_folder(folder):
    labels_file = folder / "labels.txt"
    class_names = labels_file.read_text().split() if labels_file.is_file() else CLASS_NAMES
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return _read_tree(folder, class_names), ""
    if (folder / ARCHIVE).is_file():
        tree = extract_once(folder / ARCHIVE, "cifar10")
        # The decoded arrays are cached beside the extracted files (and go when the archive changes).
        return images.cached_arrays(tree / "arrays.npz", lambda: _read_tree(tree, class_names)), LOSSY_NOTE
    if (folder / "cifar-10-batches-py").is_dir():
        return {**_read_python_batches(folder / "cifar-10-batches-py"), "source": "original"}, ""
    if (folder / "cifar-10-python.tar.gz").is_file():
        tree = extract_once(folder / "cifar-10-python.tar.gz", "cifar10-python")
        return {**_read_python_batches(tree / "cifar-10-batches-py"), "source": "original"}, ""
    raise UserError(f"{folder} holds none of train/+test/ image folders, {ARCHIVE}, cifar-10-batches-py/ "
                    "or cifar-10-python.tar.gz; expected one CIFAR-10 copy there.")


def _read_tree(root, class_names):
    arrays = {}
    for split in ("train", "test"):
        x, y, _ = images.load_image_folder(Path(root) / split, IMAGE_SIZE, class_names)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    arrays["class_names"] = np.array(class_names)
    return arrays


def _read_python_batches(folder):
    """The official pickled batches (what keras.datasets.cifar10 reads): 5 training batches and a test one."""
    def read(name):
        path = folder / name
        try:
            with open(path, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            x = np.asarray(batch[b"data"], dtype="uint8").reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(batch[b"labels"], dtype="int64")
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
            raise UserError(f"{path} is not a CIFAR-10 python batch ({type(error).__name__}); "
                            "expected the files of cifar-10-python.tar.gz.") from None

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return {"x_train": np.concatenate([p[0] for p in parts]),
            "y_train": np.concatenate([p[1] for p in parts]), "x_test": x_test, "y_test": y_test,
            "class_names": np.array(CLASS_NAMES)}


def _keras_download(not_found):
    import keras

    try:
        (x, y), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception:  # noqa: BLE001 (offline, or a partial download: the data set is simply not there)
        raise not_found from None
    return {"x_train": x, "y_train": y.ravel().astype("int64"), "x_test": x_test,
            "y_test": y_test.ravel().astype("int64"), "class_names": np.array(CLASS_NAMES),
            "source": "original"}

