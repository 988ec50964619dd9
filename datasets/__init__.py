"""One module per data set, each with the same small contract:

    load(config) -> Splits

`Splits` is the module's own dataclass. Every one has `train`, `val` and `test` (the three parts, in the form
its lesson trains on: arrays, tf.data batches or image indices), `source` (where the data came from: the
folder read, or the name of the copy) and `note` (what a reader of the numbers should know about the copy,
"" when nothing). Anything else a model needs (class names, image statistics, a vocabulary) sits beside them.

A loader reads only the fields of `config` it needs (`data_dir`, the split sizes and seeds, the smoke subset),
so the lesson, the tuner and the benchmarks all call the same `load`. Modules here import from `common/` only.
"""
