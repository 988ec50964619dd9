"""CIFAR-10 from whatever copy is at hand, as uint8 arrays with a stratified validation hold-out.

In the data set folder `cifar10/` of the data root (see common/data_root.py), in this order:

1. `train/<class>/` and `test/<class>/` image folders (already extracted),
2. `cifar10-images.tar` holding those folders (the offline copy: JPEG re-encodings), extracted once,
3. the official python batches, `cifar-10-batches-py/` or `cifar-10-python.tar.gz`.

With no data set folder anywhere, `keras.datasets.cifar10` is asked (its own Keras cache, or the download
for online users). Class order is `labels.txt` when present, else the standard airplane..truck.
"""

import pickle
from pathlib import Path

import numpy as np

from common import images
from common.data_root import extract_once, find_dataset
from common.errors import UserError

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SIZE = (32, 32)
ARCHIVE = "cifar10-images.tar"
LOSSY_NOTE = "JPEG re-encodings of the CIFAR-10 images (lossy), not the original batches"


def load_cifar10(data_dir=None, val_size=5000, split_seed=42, limit=None):
    """ImageArrays for CIFAR-10; `limit` keeps only that many images per split (smoke runs)."""
    try:
        folder = find_dataset("cifar10", data_dir)
    except UserError as not_found:
        if data_dir is not None:
            raise
        arrays = _keras_download(not_found)
        note = ""
    else:
        arrays, note = _read_folder(folder)
    x, y, x_test, y_test = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    names = [str(n) for n in arrays["class_names"]]
    if limit:
        x, y = _first_per_class(x, y, limit), _first_per_class(y, y, limit)
        x_test, y_test = _first_per_class(x_test, y_test, limit), _first_per_class(y_test, y_test, limit)
        val_size = max(len(names), min(val_size, len(y) // 5))
    x_train, y_train, x_val, y_val = images.split_validation(x, y, val_size, split_seed)
    return images.ImageArrays(x_train, y_train, x_val, y_val, x_test, y_test, names, note)


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
        return _read_python_batches(folder / "cifar-10-batches-py"), ""
    if (folder / "cifar-10-python.tar.gz").is_file():
        tree = extract_once(folder / "cifar-10-python.tar.gz", "cifar10-python")
        return _read_python_batches(tree / "cifar-10-batches-py"), ""
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
    return {"x_train": np.concatenate([p[0] for p in parts]), "y_train": np.concatenate([p[1] for p in parts]),
            "x_test": x_test, "y_test": y_test, "class_names": np.array(CLASS_NAMES)}


def _keras_download(not_found):
    import keras

    try:
        (x, y), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception:  # noqa: BLE001 (offline, or a partial download: the data set is simply not there)
        raise not_found from None
    return {"x_train": x, "y_train": y.ravel().astype("int64"), "x_test": x_test,
            "y_test": y_test.ravel().astype("int64"), "class_names": np.array(CLASS_NAMES)}

