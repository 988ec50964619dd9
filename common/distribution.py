"""Training on several devices and machines with the engines' own distribution, chosen by `--distribution`.

    none           one device (the default)
    mirrored       tf.distribute.MirroredStrategy over this machine's GPUs (TensorFlow backend)
    multi_worker   tf.distribute.MultiWorkerMirroredStrategy over several processes or machines (TensorFlow);
                   the cluster comes from TF_CONFIG or from `--workers host:port,... --worker-index i`
    data_parallel  keras.distribution.DataParallel over every device of this machine (JAX backend); several
                   processes (`--workers`, keras.distribution.initialize) train, but lessons refuse them:
                   Keras 3.15's predict cannot fetch outputs that span JAX processes (`check_lesson`)

`--batch-size` is always the global batch: each step takes that many examples, split over the replicas, so a
run takes the same steps on one device or many, and ends with the same weights up to float rounding (batch
norm included: under a TensorFlow strategy its statistics are synchronised across replicas,
`BatchNormalization(synchronized=True)`; JAX computes them over the global batch anyway). Each worker runs the
same seeded input pipeline and takes its share of every global batch (tf.data auto-sharding by DATA, or Keras'
own per-process sharding on JAX). One exception, the engines' own: a batch that does not split evenly (the
last, partial batch of a pass, 3 rows over 2 replicas) is weighted per replica by TensorFlow, which averages
each replica's mean loss; on JAX such a batch is replicated instead of split, which keeps it exact.

Only the chief (worker 0) writes the run folder; every other worker writes into a private temporary scratch
folder removed at the end. A resumed multi-worker run takes the chief's saved state on every worker through
the engine's own collectives, so a worker restarted on a fresh machine needs no files of its own.

Keras 3.15 needs small fixes here, each a wrapper around one spot and each explained where it is made:
`_fix_keras_trainer` (TensorFlow: the first batch drawn only for its shapes, which advanced a reshuffling
pipeline and, under MultiWorkerMirroredStrategy, failed in `strategy.reduce`, keras-team/keras#20585; scalar
logs reduced along an axis they lack) and `_fix_keras_jax_layouts` (JAX: the data layout chosen per batch).
"""

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from common import runs
from common.errors import UserError

MODES = ("none", "mirrored", "multi_worker", "data_parallel")
# The backend each mode runs on, and the engine that runs it.
ENGINES = {"mirrored": ("tensorflow", "tf.distribute.MirroredStrategy"),
           "multi_worker": ("tensorflow", "tf.distribute.MultiWorkerMirroredStrategy"),
           "data_parallel": ("jax", "keras.distribution.DataParallel")}


@dataclasses.dataclass
class Setup:
    """What this process runs: the mode, the engine's object, and its place among the workers."""

    mode: str = "none"
    strategy: object = None  # the tf.distribute strategy (mirrored, multi_worker)
    keras_distribution: object = None  # the keras.distribution.DataParallel (data_parallel)
    worker_index: int = 0
    workers: int = 1
    replicas: int = 1


_ACTIVE = Setup()
_STARTED_FOR = None  # the `_settings` the active Setup was started for; None before the first `setup`


def active():
    return _ACTIVE


def is_chief():
    """Whether this process writes the run folder: worker 0, or any process of an undistributed run."""
    return _ACTIVE.worker_index == 0


# ----------------------------------------------------------------------------------------------- the cluster
def parse_workers(text, flag="--workers"):
    """`host:port,host:port,...` -> a list of addresses, or one sentence saying what is wrong."""
    addresses = [part.strip() for part in str(text).split(",") if part.strip()]
    if not addresses:
        raise UserError(f"{flag} must list host:port of every worker, comma-separated, the chief first; got "
                        f"'{text}'.")
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"{flag} expects host:port for each worker (e.g. 10.0.0.1:2222), "
                            f"got '{address}'.")
    if len(set(addresses)) != len(addresses):
        raise UserError(f"{flag} lists an address twice: {', '.join(addresses)}.")
    return addresses


def tf_config_cluster():
    """(index of this process among the workers, number of workers) from TF_CONFIG, or None without it.

    The chief is the "chief" task if the cluster has one (then worker i is process i + 1), else worker 0.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError("TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
                        "\"task\": {\"type\": \"worker\", \"index\": 0}}.") from None
    if kind not in ("chief", "worker") or set(cluster) - {"chief", "worker"}:
        raise UserError(f"TF_CONFIG describes a '{kind}' task or other jobs ({', '.join(cluster)}); "
                        "--distribution multi_worker needs only chief and worker tasks.")
    return (index if kind == "chief" else index + chiefs), chiefs + workers


def check(config):
    """Refuse, in one sentence and before any engine starts, a mode the backend cannot run or a cluster that
    does not add up."""
    import keras

    mode = getattr(config, "distribution", "none")
    workers, index = getattr(config, "workers", None), getattr(config, "worker_index", None)
    backend = keras.backend.backend()
    if mode not in MODES:
        raise UserError(f"--distribution must be one of {', '.join(MODES)}, got '{mode}'.")
    if mode in ENGINES and backend != ENGINES[mode][0]:
        need, engine = ENGINES[mode]
        other = "data_parallel on JAX" if need == "tensorflow" else "mirrored or multi_worker on TensorFlow"
        raise UserError(f"--distribution {mode} uses {engine}, which runs only on the {need} backend, not on "
                        f"{backend}; run with KERAS_BACKEND={need}, or choose --distribution {other}.")
    if (workers is not None or index is not None) and mode not in ("multi_worker", "data_parallel"):
        raise UserError("--workers and --worker-index describe a cluster of processes; they need "
                        f"--distribution multi_worker or data_parallel, not {mode}.")
    if workers is not None:
        addresses = parse_workers(workers)
        if index is None or not 0 <= index < len(addresses):
            raise UserError(f"--worker-index must be this process's place in --workers, 0 to "
                            f"{len(addresses) - 1} (0 = the chief), got {index}.")
    elif index is not None:
        raise UserError("--worker-index needs --workers (host:port of every worker, the chief first).")
    if mode == "multi_worker" and workers is None and tf_config_cluster() is None:
        raise UserError("--distribution multi_worker needs the cluster: --workers host:port,... with "
                        "--worker-index, or the TF_CONFIG environment variable (or use python -m "
                        "tasks.distributed on one machine).")
    processes = len(parse_workers(workers)) if workers is not None else 1
    if mode == "data_parallel" and config.batch_size % processes:
        raise UserError(f"--batch-size {config.batch_size} (the global batch) must split evenly over the "
                        f"{processes} processes of --workers.")


# ---------------------------------------------------------------------------------------------------- set up
def _settings(config):
    """What a setup depends on: the mode and the cluster flags (a cluster from TF_CONFIG is the process's)."""
    return (getattr(config, "distribution", "none"), getattr(config, "workers", None),
            getattr(config, "worker_index", None))


def setup(config):
    """Start the engine the config names, before the backend lists its devices (the multi-process engines must
    come first); print one line saying what runs where. Returns the Setup.

    Idempotent and cheap to call again: the work (the checks, the engine, the line) is done once per process
    for each distribution setting, so every entry point of a run (the command line, `start_run`,
    `build_seeded`, a test calling `train(config)` directly) calls it, and only the first call of a run does
    anything. After `keras.backend.clear_session()`, which forgets the Keras distribution, `activate` puts it
    back without starting anything."""
    global _ACTIVE, _STARTED_FOR
    settings = _settings(config)
    if settings == _STARTED_FOR:
        return _ACTIVE
    if _ACTIVE.workers > 1:  # a process that joined a cluster stays in it
        raise UserError(f"this process already runs --distribution {_ACTIVE.mode} with other workers; start "
                        f"another process for --distribution {settings[0]}.")
    check(config)
    if _ACTIVE.keras_distribution is not None:
        import keras

        keras.distribution.set_distribution(None)
    _ACTIVE, _STARTED_FOR = Setup(), None
    _ACTIVE = _start(config)
    _STARTED_FOR = settings
    if _ACTIVE.mode != "none":
        print(describe(config), flush=True)
    return _ACTIVE


def _start(config):
    """The real work of `setup`, done once per process and setting: the engine's object for the mode."""
    mode = getattr(config, "distribution", "none")
    if mode == "none":
        return Setup()
    engines = {"mirrored": _mirrored, "multi_worker": _multi_worker, "data_parallel": _data_parallel}
    return engines[mode](config)


def _mirrored(config):
    import tensorflow as tf

    _fix_keras_trainer()
    strategy = tf.distribute.MirroredStrategy(devices=local_devices())
    return Setup("mirrored", strategy=strategy, replicas=strategy.num_replicas_in_sync)


def local_devices():
    """The devices MirroredStrategy spreads over: every GPU; without GPUs, every logical CPU device (one,
    unless the process split its CPU with tf.config.set_logical_device_configuration)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in gpus] if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]


def _multi_worker(config):
    import tensorflow as tf

    if config.workers is not None:  # the flags win over an inherited TF_CONFIG
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": parse_workers(config.workers)},
                                              "task": {"type": "worker", "index": config.worker_index}})
    index, workers = tf_config_cluster()
    _fix_keras_trainer()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # waits until every worker has started
    return Setup("multi_worker", strategy=strategy, worker_index=index, workers=workers,
                 replicas=strategy.num_replicas_in_sync)


def _data_parallel(config):
    import keras

    index, workers = 0, 1
    if config.workers is not None:
        addresses = parse_workers(config.workers)
        index, workers = config.worker_index, len(addresses)
        keras.distribution.initialize(",".join(addresses), num_processes=workers, process_id=index)
    devices = keras.distribution.list_devices()
    _fix_keras_jax_layouts()
    distribution = _even_data_parallel()(devices=devices)
    keras.distribution.set_distribution(distribution)
    return Setup("data_parallel", keras_distribution=distribution, worker_index=index, workers=workers,
                 replicas=len(devices))


def _even_data_parallel():
    """DataParallel that replicates, instead of splitting, a batch too small to split evenly over the devices
    (the last, partial batch of a pass): JAX shards only evenly. One process only: across processes Keras
    splits each global batch by process itself, and replicating would mix the processes' different rows."""
    import keras

    class EvenDataParallel(keras.distribution.DataParallel):
        def get_data_layout(self, data_shape):
            if not self._is_multi_process and data_shape[0] % self.num_model_replicas:
                return keras.distribution.TensorLayout([None] * len(data_shape), self.device_mesh)
            return super().get_data_layout(data_shape)

    return EvenDataParallel


def check_lesson():
    """Refuse what a whole lesson cannot do yet (measured with Keras 3.15 and JAX 0.10): across JAX processes,
    training runs (and ends with one device's weights), but `model.predict`, which every lesson's evaluation
    calls, fetches outputs that span the other processes' devices and fails."""
    if _ACTIVE.mode == "data_parallel" and _ACTIVE.workers > 1:
        raise UserError("--distribution data_parallel with --workers trains, but Keras 3.15 cannot evaluate "
                        "a lesson across JAX processes (its predict cannot fetch outputs that span "
                        "processes); use --distribution multi_worker (TensorFlow) on several machines, or "
                        "data_parallel over the devices of one machine.")


def describe(config):
    """One line: the mode, the replicas, this process's place, and the batch each replica computes."""
    setup_ = _ACTIVE
    engine = ENGINES[setup_.mode][1]
    place = f", worker {setup_.worker_index} of {setup_.workers}" if setup_.workers > 1 else ""
    role = " (the chief: writes the run folder)" if setup_.workers > 1 and is_chief() else ""
    per_replica = config.batch_size / setup_.replicas
    return (f"distribution: {setup_.mode} ({engine}), {setup_.replicas} replica(s){place}{role}; "
            f"global batch {config.batch_size} = {per_replica:g} per replica")


def activate():
    """Put the Keras distribution back after `keras.backend.clear_session()`, which forgets it."""
    if _ACTIVE.keras_distribution is not None:
        import keras

        keras.distribution.set_distribution(_ACTIVE.keras_distribution)


def scope():
    """The strategy's scope (variables created in it are mirrored), or a context that does nothing."""
    return _ACTIVE.strategy.scope() if _ACTIVE.strategy is not None else contextlib.nullcontext()


def adapt_model(model):
    """Under a TensorFlow strategy, batch norm computes its batch statistics over the global batch
    (`synchronized=True`, read when the layer is called, so it can be set on a built model)."""
    if _ACTIVE.strategy is None:
        return model
    import keras

    for layer in model._flatten_layers(include_self=False):  # every nested layer, encoders' included
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    return model


def prepare(dataset):
    """Under a TensorFlow strategy, shard the batches of a dataset by DATA: every worker runs the whole
    (seeded, identical) pipeline and keeps its part of each global batch. The default policy would try to
    shard by files, which in-memory datasets do not have."""
    if _ACTIVE.strategy is None or dataset is None:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


# ---------------------------------------------------------------------------------------- the chief's values
def from_chief(arrays):
    """The chief's values of a list of NumPy arrays, on every worker (the engine's collectives; the other
    workers' arrays give only the shapes and dtypes). The list itself when there is one worker."""
    import numpy as np

    arrays = [np.asarray(a) for a in arrays]
    if _ACTIVE.workers == 1 or not arrays:
        return arrays
    if _ACTIVE.mode == "data_parallel":
        from jax.experimental import multihost_utils

        return [np.asarray(a) for a in multihost_utils.broadcast_one_to_all(arrays)]
    return _tf_from_chief(arrays)


def _tf_from_chief(arrays):
    """An all-reduce (SUM) in which every replica but the chief's first one contributes zeros."""
    import numpy as np
    import tensorflow as tf

    strategy = _ACTIVE.strategy
    chief = is_chief()

    @tf.function
    def step(tensors):
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        return [context.all_reduce(tf.distribute.ReduceOp.SUM, tf.where(first, t, tf.zeros_like(t)))
                for t in tensors]

    # Booleans and small integers travel as float64 or int64, which every all-reduce implementation takes.
    wide = [a.astype(np.float64 if a.dtype.kind in "fb" else np.int64) for a in arrays]
    local = [w if chief else np.zeros_like(w) for w in wide]
    result = strategy.run(step, args=([tf.constant(w) for w in local],))
    values = [strategy.experimental_local_results(r)[0].numpy() for r in result]
    return [v.astype(a.dtype) for v, a in zip(values, arrays, strict=True)]


def json_from_chief(value):
    """The chief's JSON-able value, on every worker."""
    import numpy as np

    if _ACTIVE.workers == 1:
        return value
    data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8) if is_chief() else np.zeros(0, np.uint8)
    (size,) = from_chief([np.array(len(data), dtype=np.int64)])
    padded = np.zeros(int(size), dtype=np.int64)
    padded[:len(data)] = data
    (received,) = from_chief([padded])
    return json.loads(received.astype(np.uint8).tobytes().decode())


def assign_from_chief(variables):
    """Give every worker the chief's values of these variables (after the chief loaded a saved state)."""
    import keras

    if _ACTIVE.workers == 1:
        return
    variables = list(variables)
    values = from_chief([keras.ops.convert_to_numpy(v) for v in variables])
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


# ------------------------------------------------------------------------------------------ workers' folders
def scratch_run(config):
    """A worker's stand-in for the run folder: a new private temporary folder (`tempfile.mkdtemp`: a name
    nobody can guess or plant beforehand, readable only by the user), locked like a run, removed when the run
    closes (and at exit, if the process ends early). A killed worker cannot remove its own: the launcher
    (tasks.distributed) gives its processes a temporary folder of their own and removes it at the end. Only
    the chief writes the run."""
    index = _ACTIVE.worker_index
    path = Path(tempfile.mkdtemp(prefix=f"keras-tutorials-{config.TASK}-worker{index}-"))
    try:
        lock = runs.FolderLock(path, "worker scratch folder").acquire()
    except BaseException:
        remove_folder(path)
        raise
    run = ScratchRun(path, False, lock)
    atexit.register(run.remove)
    print(f"worker {index} of {_ACTIVE.workers}: scratch folder {path} (removed at the end; the chief writes "
          "the run folder)", flush=True)
    return run


def remove_folder(path):
    """Remove a folder and everything in it without following links: a link is removed, never its target
    (shutil.rmtree unlinks links inside the folder and refuses a link as the folder itself)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


class ScratchRun(runs.Run):
    """A worker's scratch folder: closing it removes it."""

    def remove(self):
        self.lock.release()
        remove_folder(self.path)

    def close(self):
        self.remove()
        atexit.unregister(self.remove)


# ------------------------------------------------------------------------------------------ Keras 3.15 fixes
def _fix_keras_trainer():
    """Two wrappers around Keras 3.15's TensorFlow trainer, for fit under a tf.distribute strategy:

    - `_maybe_symbolic_build` draws a batch from a new iterator only to learn its shapes: that iterator
      advances the seed of a reshuffling `tf.data` pipeline, so training would see other batches than the
      same run without a strategy, and under MultiWorkerMirroredStrategy it then reduces the nested batch with
      `strategy.reduce`, which fails (keras-team/keras#20585). The dataset's element spec has the shapes.
    - `reduce_per_replica` averages scalar logs across workers with `strategy.reduce(..., axis=0)`, which
      fails on scalars; `axis=None` averages over the replicas, as Keras does on one worker.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "keras_tutorials_fix", False):
        return
    build, reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            data_batch, iterator = iterator.data_adapter.get_tf_dataset().element_spec, None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            from keras.src import tree

            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce(values, strategy, reduction)

    reduce_per_replica.keras_tutorials_fix = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


def _fix_keras_jax_layouts():
    """Keras 3.15's JAX trainer picks the data layout from the first batch of a pass and keeps it, so a later
    batch too small to split evenly over the devices (the last, partial one) fails; choose it per batch
    (EvenDataParallel replicates such a batch). Picking a layout costs nothing beside a training step."""
    from keras.src.backend.jax import trainer

    if getattr(trainer.JAXEpochIterator._get_distributed_iterator, "keras_tutorials_fix", False):
        return

    def get_distributed_iterator(self, distribution):
        for data in self.data_adapter.get_jax_iterator():
            yield trainer._distribute_data(data)

    get_distributed_iterator.keras_tutorials_fix = True
    trainer.JAXEpochIterator._get_distributed_iterator = get_distributed_iterator
