"""TensorFlow Datasets as a data source (`--source tfds`): CIFAR-10 (`cifar10`) and IMDB (`imdb_reviews`).

Where: `--data-dir` when given is the TFDS `data_dir` (TFDS keeps `<data_dir>/cifar10/3.0.2/...` and
`<data_dir>/imdb_reviews/plain_text/1.0.0/...`, so one folder can be both this project's data root and a
TFDS data dir); without it TFDS chooses as it always does: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

Nothing is downloaded by a lesson (`download=False`): a data set that is not prepared there is a one-sentence
UserError naming the command that prepares it on a connected machine. That keeps a lesson's start fast and
predictable offline, and the download (TFDS's own, checksummed) is one explicit step.

`tensorflow_datasets` is imported only here, inside the functions: the other sources never load it.

Image folders (the offline JPEG copy, a user's `train/<class>/` tree) stay with `common/images.py`:
`tfds.folder_dataset.ImageFolder` would need the same `train/<class>/` layout but decodes images at their
stored sizes into a tf.data pipeline without resizing to one shape, builds no class order from
`labels.txt`, and gives no uint8 arrays with the cache, the JPEG-vs-lossless matching and the stratified
hold-out the lesson uses; wrapping it would be longer than the loader it replaces.
"""

import logging
import os
from pathlib import Path

import numpy as np

from common.errors import UserError

CIFAR10 = "cifar10"
IMDB = "imdb_reviews"
READ_BATCH = 4096


def load(name, splits, data_dir=None):
    """{split: dict of numpy arrays} for TFDS data set `name`, each split read whole.

    Raises UserError when the data set is not prepared in the data dir (nothing is downloaded)."""
    import tensorflow_datasets as tfds

    data_dir = tfds_dir(data_dir)
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_not_prepared_warning)  # the UserError below says it, in the one sentence
    try:
        loaded = tfds.load(name, split=list(splits), data_dir=data_dir, download=False)
    except AssertionError:  # TFDS's "could not find data in <data_dir>" when not prepared
        where = data_dir or "~/tensorflow_datasets"
        raise UserError(
            f"TFDS data set {name} is not prepared in {where}; prepare it on a connected machine with "
            f"python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}'"
            + (f", data_dir='{data_dir}'" if data_dir else "")
            + ").download_and_prepare()\" and copy that folder here.") from None
    finally:
        absl_logger.removeFilter(_not_prepared_warning)
    # Batches of a fixed size, joined (not `batch_size=-1`, one batch the size TFDS's metadata states).
    return {split: _joined(tfds.as_numpy(part.batch(READ_BATCH))) for split, part in zip(splits, loaded)}


def _not_prepared_warning(record):
    return "has no dataset_info.json" not in record.getMessage()


def _joined(batches):
    parts = list(batches)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else {}


def tfds_dir(data_dir=None):
    """--data-dir, else $TFDS_DATA_DIR, else None (TFDS's default). The variable is read here, at each call,
    because TFDS reads it once, when it is imported."""
    chosen = data_dir if data_dir is not None else os.environ.get("TFDS_DATA_DIR") or None
    return None if chosen is None else str(Path(chosen).expanduser())


def cifar10_arrays(class_names, data_dir=None):
    """The arrays `datasets/cifar10.py` reads from any copy (x/y train and test, class names, source).

    TFDS stores the original PNG-decoded images, in its own shuffled order; the `id` field
    (`train_00000`...) is the position in the original batches, so sorting by it restores the order of
    `keras.datasets.cifar10` (and the lossless hold-out is the same 4,000 original images). `class_names`:
    the lesson's, which are TFDS's label names in the same order (from the data set's batches.meta)."""
    parts = load(CIFAR10, ("train", "test"), data_dir)
    arrays = {}
    for split, part in parts.items():
        order = np.argsort(part["id"], kind="stable")
        arrays[f"x_{split}"] = np.asarray(part["image"], dtype="uint8")[order]
        arrays[f"y_{split}"] = np.asarray(part["label"], dtype="int64")[order]
    arrays["class_names"] = np.array(class_names)
    arrays["source"] = "original"
    return arrays


def imdb_texts(data_dir=None):
    """(train texts, train labels, test texts, test labels) of `imdb_reviews` (0 = neg, 1 = pos)."""
    parts = load(IMDB, ("train", "test"), data_dir)
    train, test = parts["train"], parts["test"]
    return (_decode(train["text"]), np.asarray(train["label"], "int32"),
            _decode(test["text"]), np.asarray(test["label"], "int32"))


def imdb_unlabelled(limit, data_dir=None, seed=0):
    """Up to `limit` texts of the `unsupervised` split (a seeded random choice, in a seeded order)."""
    texts = _decode(load(IMDB, ("unsupervised",), data_dir)["unsupervised"]["text"])
    if not texts:
        raise UserError(f"the unsupervised split of TFDS {IMDB} is empty; expected 50,000 unlabelled "
                        "reviews.")
    order = np.random.default_rng(seed).permutation(len(texts))[:limit]
    return [texts[i] for i in order]


def _decode(values):
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values]
