"""Mobile price (Kaggle "Mobile Price Classification"): 2,000 labelled phones, 20 numeric features each, and
a price range 0..3; `test.csv` holds 1,000 more without labels.

`load(config)` finds the CSVs (the data root's `mobile_price/`, else the copy that ships in `datasets/data/`),
checks them, and splits the labelled rows three ways, stratified by class with a fixed seed. Also here: the
checked CSV reader, stratified folds, and tf.data pipelines from the arrays.

Every way a CSV can be wrong (missing file, not a CSV, missing columns, empty or non-numeric cells, labels
outside the known classes) raises `UserError` with the file, the column and the first bad row.
"""

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from common.data_root import find_dataset
from common.errors import UserError
from datasets import ArraySplits

# Twenty numeric columns and the label.
FEATURES = ["battery_power", "blue", "clock_speed", "dual_sim", "fc", "four_g", "int_memory", "m_dep",
            "mobile_wt", "n_cores", "pc", "px_height", "px_width", "ram", "sc_h", "sc_w", "talk_time",
            "three_g", "touch_screen", "wifi"]
LABEL = "price_range"
CLASS_NAMES = ["low", "medium", "high", "very_high"]
EMBEDDED_DATA = Path(__file__).resolve().parent / "data"  # a copy of the two CSVs ships with the repo


@dataclasses.dataclass
class Splits(ArraySplits):
    """Feature rows (float32) and integer labels for train / validation / test."""

    feature_names: list
    class_names: list
    source: Path = None  # the folder the CSVs came from (it also holds the unlabelled test.csv)
    note: str = ""

    @property
    def num_features(self):
        return self.x_train.shape[1]

    @property
    def num_classes(self):
        return len(self.class_names)


def find_folder(data_dir=None, required=("train.csv",)):
    """The `mobile_price/` folder of the data root (holding the `required` files), else the copy that ships
    with the repo."""
    return find_dataset("mobile_price", data_dir, required=required,
                        fallback=lambda: EMBEDDED_DATA / "mobile_price")


def load(config):
    """The labelled CSV, checked, split three ways (stratified by class, `config.split_seed`); `max_rows`
    keeps a stratified subset (smoke runs), and `cv` folds are checked before any training."""
    folder = find_folder(config.data_dir)
    _, x, y = read_csv(folder / "train.csv", FEATURES, LABEL, num_classes=len(CLASS_NAMES))
    if config.max_rows:
        x, y = stratified_subset(x, y, config.max_rows, config.split_seed)
    if config.cv:
        stratified_folds(y, config.cv, config.split_seed)  # refuse too many folds before any training
    parts = split_stratified(x, y, config.val_fraction, config.test_fraction, config.split_seed)
    return Splits(*parts, feature_names=FEATURES, class_names=CLASS_NAMES, source=folder)


FLOAT32_MAX = float(np.finfo("float32").max)


def read_csv(path, columns, label=None, num_classes=None):
    """Read `columns` (and the integer `label` column, if given) from a CSV; returns (frame, x, y or None)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; expected a CSV file with columns {', '.join(columns)}.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable CSV file ({reason}).") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    wanted = list(columns) + ([label] if label else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}; "
                        f"expected columns: {', '.join(wanted)}.")
    if frame.empty:
        raise UserError(f"{path} has a header but no rows.")
    for column in wanted:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        # The model reads float32: 1e39 is finite here but infinite there (every loss NaN).
        bad = numeric.isna() | ~np.isfinite(numeric.astype(float)) | (numeric.abs() > FLOAT32_MAX)
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            value = frame[column].iloc[row]
            shown = "an empty cell" if pd.isna(value) else _shown(value)
            raise UserError(f"{path}: column {column} has {shown} in data row {row + 1} "
                            f"({int(bad.sum())} bad cells in all); expected a number in every cell, at most "
                            f"{FLOAT32_MAX:.3g} in size.")
        frame[column] = numeric
    x = frame[list(columns)].to_numpy(dtype="float32")
    y = None
    if label:
        values = frame[label].to_numpy()
        if num_classes is not None:
            outside = (values != np.round(values)) | (values < 0) | (values >= num_classes)
            if outside.any():
                row = int(np.argmax(outside))
                raise UserError(f"{path}: column {label} has {_shown(values[row])} in data row {row + 1}; "
                                f"expected an integer class from 0 to {num_classes - 1}.")
        y = values.astype("int64")
        check_classes(y, path, label, num_classes)
    return frame, x, y


def _shown(value):
    """A cell as the user wrote it: 7, 2.5 or 'abc', never np.int64(7)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def check_classes(y, path, label, num_classes=None):
    """A classifier needs two classes at least; a class with no rows at all is worth a warning."""
    present = np.unique(y)
    if len(present) < 2:
        raise UserError(f"{path}: every row has {label} {int(present[0])}; a classifier needs rows of at "
                        "least two classes.")
    missing = sorted(set(range(num_classes or 0)) - set(present.tolist()))
    if missing:
        print(f"warning: {path} has no rows of {label} {', '.join(map(str, missing))}; the model will never "
              "learn to predict them.", file=sys.stderr)


def minimum_rows(num_classes, val_fraction, test_fraction):
    """The fewest rows a stratified train/validation/test split takes: each part has at least as many rows as
    there are classes (scikit-learn's condition, for both cuts)."""
    parts = (test_fraction, val_fraction, 1 - val_fraction - test_fraction)
    return max([3 * num_classes] + [math.ceil(num_classes / f - 1e-9) for f in parts])


def stratified_subset(x, y, size, seed):
    """`size` rows with the classes in their proportions (smoke runs); all rows when there are no more."""
    if size >= len(y):
        return x, y
    classes = len(np.unique(y))
    if size < classes:
        raise UserError(f"--max-rows {size} is fewer rows than classes ({classes}); every class needs rows.")
    x, _, y, _ = train_test_split(x, y, train_size=size, stratify=y, random_state=seed)
    return x, y


def split_stratified(x, y, val_fraction, test_fraction, seed):
    """Train/validation/test with each class in the same proportion in every part.

    Args:
        x: the feature rows.
        y: their integer labels.
        val_fraction: the share of all rows for validation.
        test_fraction: the share of all rows for test.
        seed: fixes the split.
    Returns:
        (x_train, y_train, x_val, y_val, x_test, y_test).
    """
    counts = np.bincount(y)
    counts = counts[counts > 0]
    needed = minimum_rows(len(counts), val_fraction, test_fraction)
    if len(y) < needed or counts.min() < 3:
        raise UserError(f"{len(y)} labelled rows ({len(counts)} classes, the smallest with {counts.min()} "
                        "rows) are too few to split into stratified training, validation and test parts: use "
                        f"at least {needed} rows (--max-rows) with 3 or more of each class.")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed)
    return x_train, y_train, x_val, y_val, x_test, y_test


def stratified_folds(y, folds, seed):
    """(train indices, held-out indices) for each of `folds` stratified folds."""
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())
    if folds < 2 or folds > smallest:
        raise UserError(f"--cv must be between 2 and the smallest class size ({smallest}), got {folds}.")
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def to_dataset(x, y=None, batch_size=32, shuffle_seed=None):
    """A batched tf.data pipeline from arrays; shuffled (deterministically, per epoch) when a seed is
    given."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
