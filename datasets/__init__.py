"""One module per data set, each with the same small contract:

    load(config) -> Splits

`Splits` is the module's own dataclass. Every one has `train`, `val` and `test` (the three parts, in the form
its lesson trains on: arrays, tf.data batches or image indices), `source` (where the data came from: the
folder read, or the name of the copy) and `note` (what a reader of the numbers should know about the copy,
"" when nothing). Anything else a model needs (class names, image statistics, a vocabulary) sits beside them.

A loader reads only the fields of `config` it needs (`data_dir`, the split sizes and seeds, the smoke subset),
so the lesson, the tuner and the benchmarks all call the same `load`. Modules here import from `common/` only.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class ArraySplits:
    """In-memory arrays and integer labels per split (phone price, CIFAR-10); a data set's `Splits` adds its
    own fields after these six."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    # The contract's three parts, as (inputs, labels) pairs.
    train = property(lambda self: (self.x_train, self.y_train))
    val = property(lambda self: (self.x_val, self.y_val))
    test = property(lambda self: (self.x_test, self.y_test))
