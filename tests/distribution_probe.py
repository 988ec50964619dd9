"""A few training steps of a tiny model under one --distribution mode; the final weights go to .npz files.

Run by tests/distribution_test.py in subprocesses (alone, or via the tasks.distributed launcher, which adds
--distribution, --workers and --worker-index), so that every mode trains the same model from the same initial
weights on the same global batches, through common/distribution.py and common/training.py as a lesson does.
Each case is one model variant; `--baseline` first trains every case without distribution in the same process:

    python tests/distribution_probe.py --out DIR --distribution mirrored --cpus 2 --baseline --cases plain,bn
    -> DIR/none-plain.npz, DIR/none-bn.npz, DIR/mirrored-plain.npz, DIR/mirrored-bn.npz (worker i: -worker<i>)

Cases: plain (dense layers), bn (a BatchNormalization layer), bn-unsync (the same, with per-replica
statistics: the contrast), mp (plain under mixed precision).
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FEATURES, CLASSES = 6, 3
CASES = ("plain", "bn", "bn-unsync", "mp")


def parse(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="folder for the .npz files of the final weights")
    parser.add_argument("--distribution", default="none")
    parser.add_argument("--workers")
    parser.add_argument("--worker-index", type=int)
    parser.add_argument("--cpus", type=int, default=1, help="logical CPU devices (for mirrored)")
    parser.add_argument("--cases", default="plain", help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--baseline", action="store_true", help="first train every case without distribution")
    parser.add_argument("--rows", type=int, default=96, help="rows of the data set (97: a last batch of 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    return parser.parse_args(argv)


def split_cpu(count):
    """Several logical CPU devices, for MirroredStrategy without GPUs; must come before TensorFlow starts."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def build(config, _):
    import keras

    inputs = keras.Input((FEATURES,))
    x = keras.layers.Dense(8, activation="tanh")(inputs)
    if config.batch_norm:
        x = keras.layers.BatchNormalization(momentum=0.5)(x)  # low momentum: the moving statistics move
    outputs = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def train(args, mode, case):
    """One case under one mode; returns its final weights."""
    import numpy as np
    import tensorflow as tf

    from common import distribution, training
    from common.config import TrainConfig, build_config

    @dataclasses.dataclass
    class ProbeConfig(TrainConfig):
        batch_norm: bool = False

    cluster = dict(workers=args.workers, worker_index=args.worker_index) if mode == args.distribution else {}
    config = build_config(ProbeConfig, overrides=dict(
        distribution=mode, batch_size=args.batch_size, epochs=args.epochs, optimizer="sgd", learning_rate=0.1,
        seed=3, batch_norm=case.startswith("bn"), mixed_precision=case == "mp", mixed_dtype="float16",
        **cluster))
    distribution.setup(config)
    model = training.build_seeded(build, config, None)  # seeds everything, as lessons do before their data
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, FEATURES)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1).astype("int32")
    # Seeded shuffle, reshuffled each pass: every worker must draw the same global batches.
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(args.rows, seed=1).batch(args.batch_size)
    steps = int(data.cardinality())
    for layer in model.layers:
        if case == "bn-unsync" and hasattr(layer, "synchronized"):
            layer.synchronized = False
    training.compile_model(model, config, steps)
    model.fit(distribution.prepare(data.repeat()), steps_per_epoch=steps, epochs=args.epochs, verbose=0,
              shuffle=False)
    loss = model.evaluate(distribution.prepare(data), verbose=0, return_dict=True)["loss"]
    print(f"{mode} {case}: replicas {distribution.active().replicas}, policy {model.dtype_policy.name}, "
          f"loss {loss:.6f}", flush=True)
    return [np.asarray(w) for w in model.get_weights()]


def main(argv=None):
    args = parse(argv)
    if args.cpus > 1:
        split_cpu(args.cpus)
    import numpy as np

    from common import distribution

    cases = args.cases.split(",")
    modes = (["none"] if args.baseline else []) + [args.distribution]
    out = Path(args.out)
    for mode in modes:
        for case in cases:
            weights = train(args, mode, case)
            index = distribution.active().worker_index
            np.savez(out / f"{mode}-{case}{f'-worker{index}' if index else ''}.npz", *weights)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
