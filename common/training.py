"""The training loop every lesson shares: seeding, run folders, compile, callbacks, fit, evaluate, save.

A run lives in `<output-dir>/<task>/<run-id>/`. Each model trained in it gets a folder (the run folder
itself for the main model, a sub-folder for baselines and cross-validation folds) holding `history.csv`,
`model.keras`, `learning_curves.png`, `confusion_matrix.png`, TensorBoard `logs/` and, while training, a
`backup/` with the whole training state (common/resume.py): rerun an interrupted command with the same
`--run-id` and training continues after the last finished epoch, to the same final numbers; a model that
had finished is not trained again. Run folders themselves (ids, marker, lock) are common/runs.py's.
"""

import dataclasses
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from common import distribution, hardware, plots, resume, run_report, runs
from common.errors import UserError
from common.tables import format_table
from common import registry


def seed_everything(seed, deterministic=True):
    """Seed Python, NumPy and the backend; with `deterministic`, TensorFlow ops are made deterministic too.

    Called before every model is built, so each model starts from the same weights whatever ran before.
    """
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def require_backend(task, supported, why):
    """Refuse to start on a Keras backend the lesson cannot run on, saying why (before any work is done)."""
    backend = keras.backend.backend()
    if backend not in supported:
        raise UserError(f"the {task} lesson cannot run on the {backend} backend: {why} "
                        f"Run it with KERAS_BACKEND={supported[0]}.")


def setup_precision(config):
    """Mixed precision computes in float16 or bfloat16 (`common/hardware.py: compute_dtype`, "auto" resolved
    from the machine) and keeps float32 weights; factories keep outputs in float32."""
    dtype = hardware.compute_dtype(config)
    keras.mixed_precision.set_dtype_policy("float32" if dtype == "float32" else f"mixed_{dtype}")


# ------------------------------------------------------------------------------------------------- run folder
# Run folders (plain ids, marker, lock, atomic writes) live in common/runs.py.
def start_run(config, data_source=None):
    """The run folder (common/runs.py); `data_source` (the splits' `source`) is part of what a resume must
    match. Only the chief of a multi-worker run writes it; every other worker gets a scratch folder, removed
    when the run closes (common/distribution.py)."""
    distribution.setup(config)
    distribution.check_lesson()
    if distribution.is_chief():
        return runs.start_run(config, data_source)
    return distribution.scratch_run(config)


# ---------------------------------------------------------------------------------------------------- compile
def compile_model(model, config, steps_per_epoch, metrics=("accuracy",), loss=None):
    """Compile with the optimizer, schedule, loss and clipping named in the config.

    Args:
        model: the built model.
        config: the lesson's config (optimizer, learning rate, schedule, loss, clipping, jit_compile).
        steps_per_epoch: the batches per epoch, the unit of the learning-rate schedule.
        metrics: the metrics to compile with ("accuracy" is made the right accuracy for the loss).
        loss: a loss function that replaces the config's, for models whose loss is not a registry name
            (such as the captioner's); None: the config's.
    """
    with distribution.scope():  # the optimizer and the metrics create variables: mirrored under a strategy
        return _compile(model, config, steps_per_epoch, metrics, loss)


def _compile(model, config, steps_per_epoch, metrics, loss):
    loss_name = getattr(config, "loss", "sparse_categorical_crossentropy")
    if loss is None:
        outputs = model.output_shape[-1]
        metrics = [_metric(m, registry.check_name("loss", loss_name), outputs) for m in metrics]
        loss = registry.loss(loss_name, config.label_smoothing)
    model.compile(optimizer=optimizer(config, steps_per_epoch), loss=loss, metrics=list(metrics),
                  jit_compile=jit_compile(config),
                  steps_per_execution=steps_per_call(config, steps_per_epoch))
    return model


# The pieces of a lesson's `model.compile(...)`, each named after the Keras argument it fills.
def scope():
    """`with training.scope():` around `model.compile`: under a --distribution strategy the optimizer's and
    the metrics' variables are created mirrored over the replicas (a no-op without one)."""
    return distribution.scope()


def optimizer(config, steps_per_epoch):
    """The optimizer named by --optimizer (with --momentum, --weight-decay, --clipnorm), its learning rate a
    `keras.optimizers.schedules` schedule named by --schedule, counted in steps of `steps_per_epoch`."""
    learning_rate = registry.schedule(
        config.schedule, config.learning_rate, steps_per_epoch, config.epochs,
        step_epochs=config.step_epochs, milestones=config.milestones, gamma=config.gamma,
        warmup_epochs=config.warmup_epochs)
    return registry.optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                              weight_decay=config.weight_decay, clipnorm=config.clipnorm)


def accuracy(loss_name, outputs):
    """The accuracy metric that reads the targets of `loss_name` (class indices or one-hot rows) for a model
    with `outputs` units (1: a sigmoid probability)."""
    return _metric("accuracy", registry.check_name("loss", loss_name), outputs)


def jit_compile(config):
    """--jit-compile as Keras takes it: "auto", True or False."""
    return {"auto": "auto", "true": True, "false": False}[config.jit_compile]


def steps_per_call(config, steps_per_epoch):
    """--steps-per-execution, cut to a divisor of the epoch (`execution_steps`); Keras' PyTorch backend runs
    one step per call only."""
    steps = 1 if keras.backend.backend() == "torch" else getattr(config, "steps_per_execution", 1)
    return execution_steps(steps, steps_per_epoch)


def execution_steps(requested, steps_per_epoch):
    """The largest number of steps per compiled call, at most `requested`, that divides an epoch.

    Keras 3.15 runs whole calls only: with 21 steps an epoch and 32 per call, every "epoch" of the repeated
    training stream ran 32 steps, so epochs, the schedule and an exact resume drifted apart. A divisor keeps
    every epoch exactly `steps_per_epoch` steps, and the numbers those of one step per call.
    """
    if not steps_per_epoch or steps_per_epoch < 1:
        return requested
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


@keras.saving.register_keras_serializable(package="keras_tutorials")
def rounded_binary_accuracy(y_true, y_pred):
    """Binary accuracy that reads a soft target (a teacher's probability) by its side of 0.5, as it reads
    the prediction; `keras.metrics.BinaryAccuracy` compares the target as it is, so 0.93 never matches."""
    y_pred = keras.ops.convert_to_tensor(y_pred)
    y_true = keras.ops.cast(y_true, y_pred.dtype)  # integer labels, or float soft targets
    return keras.metrics.binary_accuracy(keras.ops.cast(y_true > 0.5, y_pred.dtype), y_pred)


def _metric(name, loss_name, outputs):
    """Say which accuracy: Keras cannot always infer it from the loss."""
    if name != "accuracy":
        return name
    if outputs == 1:  # one sigmoid unit; targets may be soft (pseudo-labels), so they are rounded too
        return keras.metrics.MeanMetricWrapper(rounded_binary_accuracy, name="accuracy")
    if registry.loss_target(loss_name) == "index":
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return keras.metrics.CategoricalAccuracy(name="accuracy")


class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that saves to a temporary file and renames it into place: a kill during the save
    leaves the previous best checkpoint whole."""

    def __init__(self, filepath, **kwargs):
        self.final_path = Path(filepath)
        self.partial_path = self.final_path.with_name(f".{self.final_path.stem}.partial.keras")
        super().__init__(str(self.partial_path), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        self.partial_path.unlink(missing_ok=True)
        super().on_epoch_end(epoch, logs)
        if self.partial_path.exists():
            os.replace(self.partial_path, self.final_path)


def callbacks(config, folder, monitor="val_loss", extra=()):
    """Keras' own callbacks (CSV history, best checkpoint, early stopping, learning-rate plateau,
    TensorBoard); the ones that carry state from epoch to epoch come second in the returned pair, for
    `ExactResume`."""
    folder = Path(folder)
    checkpoint = AtomicCheckpoint(folder / "checkpoint.keras", monitor=monitor, save_best_only=True)
    stateful = [checkpoint]
    if config.early_stopping:
        stateful.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping,
                                                      restore_best_weights=True))
    if config.reduce_lr_patience and config.schedule == "constant":
        stateful.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                          patience=config.reduce_lr_patience))
    result = [keras.callbacks.TerminateOnNaN(),
              keras.callbacks.CSVLogger(str(folder / "history.csv"), append=True), *stateful]
    if config.tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(folder / "logs")))
    return result + list(extra), stateful


# -------------------------------------------------------------------------------------------------------- fit
@dataclasses.dataclass
class TrainingData:
    """The tf.data pipelines a model trains and is tested on, with what `fit` and the evaluation need to know.

    Each lesson's `make_datasets(config, data)` builds one from its data set's splits; the tuner reads the
    same (tuning/tasks.py).

    Args:
        train: the training batches, (inputs, targets), shuffled by the pipeline itself; may be an endless
            stream (then `steps_per_epoch` batches make an epoch).
        val: the validation batches, or None (no validation split, e.g. cross-validation folds without early
            stopping): the checkpoint then follows the training loss.
        steps_per_epoch: the batches in one pass of `train`; also the unit of the learning-rate schedule.
        test: the test batches, in the order of `test_labels` (None for a model that `fit` only trains).
        test_labels: the integer label of each test example, for the per-class accuracy and confusion matrix.
        class_names: the class names, in label order.
    """

    train: object
    val: object
    steps_per_epoch: int
    test: object = None
    test_labels: object = None
    class_names: list = None


def fit(model, config, folder, data, extra_callbacks=(), loss=None, metrics=("accuracy",)):
    """Compile `model` as the config says and train it on `data` with exact resume (`FitState`): the whole
    of a lesson's compile-and-fit for lessons and tools that need nothing else. Returns `FitState.outcome`.

    Args:
        model: the built model (`build_seeded`).
        config: the lesson's config (optimizer, schedule, epochs, callbacks' settings, verbosity).
        folder: the model's folder (history.csv, model.keras, backup/); created if missing.
        data: a `TrainingData`; `fit` reads its `train`, `val` and `steps_per_epoch`.
        extra_callbacks: Keras callbacks added to the shared ones (e.g. the lookahead of
            models/airbench.py).
        loss: a loss function that replaces the config's (see `compile_model`).
        metrics: the metrics to compile with ("accuracy" is made the right accuracy for the loss).
    """
    compile_model(model, config, data.steps_per_epoch, metrics, loss)
    state = FitState(model, config, folder)
    if state.finished:
        return state.load()
    model.fit(state.stream(data.train, data.steps_per_epoch), steps_per_epoch=state.steps,
              validation_data=state.prepare(data.val), initial_epoch=state.epoch,
              epochs=state.epochs(config.epochs), verbose=config.verbose, shuffle=False,
              callbacks=state.callbacks(extra_callbacks, monitor=monitor_of(data)))
    return state.save()


def monitor_of(data):
    """What the checkpoint and early stopping follow: the validation loss, or the training loss when there is
    no validation split."""
    return "val_loss" if data.val is not None else "loss"


class FitState:
    """Where the training of one model stands in its folder, and the pieces of a resumable `model.fit`.

    A lesson writes the Keras call itself and takes from here what makes it exact after a kill:

        state = training.FitState(model, config, folder)
        if state.finished:                    # trained by an earlier run of this command: load it
            state.load()
        else:
            model.fit(state.stream(train, steps), steps_per_epoch=steps, validation_data=state.prepare(val),
                      initial_epoch=state.epoch, epochs=state.epochs(config.epochs),
                      callbacks=state.callbacks(), verbose=config.verbose, shuffle=False)
            state.save()                      # model.keras; the backup is marked finished

    `state.epoch` is the first epoch still to train (0, or the one after the last saved epoch); `stream`
    skips the batches already trained on; `callbacks` adds Keras' own (CSV history, best checkpoint, early
    stopping, learning-rate plateau, TensorBoard, TerminateOnNaN) and `common/resume.py: ExactResume`, which
    saves the whole state after each epoch and puts it back at the start of a resumed fit.
    """

    def __init__(self, model, config, folder):
        self.model, self.config, self.folder = model, config, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.backup = self.folder / "backup"
        state = resume.load_state(self.backup)
        finished = bool(state and state.get("finished") and (self.folder / "model.keras").is_file())
        # Workers of a multi-worker run keep no state: they resume from the chief's (common/distribution.py).
        self.saved, self.finished = distribution.json_from_chief([state, finished])
        self.epoch = self.saved["epoch"] if self.saved and not self.finished else 0
        self.steps = None
        self._exact = None
        run_report.save_model_summary(model, self.folder, show=config.verbose > 0)

    def epochs(self, epochs):
        """The `epochs` argument of fit: the config's, or where early stopping had stopped it (then the
        resumed fit only runs `on_train_end`, which restores the best weights)."""
        return self.epoch if self.saved and self.saved["stopped"] else epochs

    def stream(self, train, steps_per_epoch):
        """The training batches from the first one not yet trained on: one pass per epoch, repeated."""
        known = int(train.cardinality())
        self.steps = known if known > 0 else steps_per_epoch
        if self.epoch:
            print(f"{self.folder}: resuming after epoch {self.epoch}")
        _keep_history_before(self.folder / "history.csv", self.epoch)
        return distribution.prepare(resume.stream_from(train, self.epoch, self.steps))

    @staticmethod
    def prepare(dataset):
        """A validation or test dataset as the distribution strategy wants it (each worker its share)."""
        return distribution.prepare(dataset)

    def callbacks(self, extra=(), monitor="val_loss"):
        """Keras' callbacks of this run (`callbacks`), the lesson's `extra` ones, and the exact resume."""
        own, stateful = callbacks(self.config, self.folder, monitor, extra=extra)
        self._exact = resume.ExactResume(self.backup, self.saved if not self.finished else None, stateful,
                                         time_before=self.saved["train_time_s"] if self.saved else 0.0)
        return own + [self._exact]

    def save(self):
        """After fit: refuse a diverged model, save model.keras, mark the backup finished; return
        `outcome`."""
        exact = self._exact
        train_time = exact.state["train_time_s"] if exact and exact.state else 0.0
        losses = read_history(self.folder / "history.csv").get("loss", [])
        # A worker's history holds only the epochs it ran itself; the chief's is whole (and the same).
        if distribution.is_chief() and (not losses or not all(math.isfinite(v) for v in losses)):
            raise UserError(f"training diverged (the loss became NaN or infinite, see "
                            f"{self.folder / 'history.csv'}); try a lower --learning-rate or --clipnorm 1.0.")
        runs.save_model(self.model, self.folder / "model.keras")
        resume.mark_finished(self.backup, {**((exact.state if exact else None) or {}),
                                           "train_time_s": train_time})
        return self.outcome(train_time)

    def load(self):
        """A model trained by an earlier run of this command: its weights from model.keras; `outcome`."""
        if distribution.is_chief():
            saved = keras.saving.load_model(self.folder / "model.keras", compile=False)
            self.model.set_weights(saved.get_weights())
        distribution.assign_from_chief(self.model.weights)
        print(f"{self.folder}: already trained, skipped")
        return self.outcome(self.saved["train_time_s"])

    def outcome(self, train_time):
        """The full history (read back from history.csv, so a resumed run reports every epoch), the number of
        epochs and the training time summed over every resumed part; the learning curves are drawn."""
        return _outcome(self.folder, train_time)


def _outcome(folder, train_time):
    history = read_history(Path(folder) / "history.csv")
    plots.learning_curves(history, Path(folder) / "learning_curves.png")
    epochs_run = len(history.get("loss", []))
    return {"history": history, "epochs": epochs_run, "train_time_s": round(train_time, 2),
            "time_per_epoch_s": round(train_time / max(1, epochs_run), 3)}


def _keep_history_before(path, epoch):
    """Before a (re)start at `epoch`: keep the header and the whole rows of earlier epochs, nothing else (a
    kill can leave a half-written row, or rows of an epoch whose state was not saved yet)."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("epoch,"):
        runs.atomic_write_text(path, "")
        return
    width = len(lines[0].split(","))
    kept = [line for line in lines[1:] if _whole_row(line, width) and int(line.split(",")[0]) < epoch]
    runs.atomic_write_text(path, "\n".join([lines[0], *kept]) + "\n" if epoch else "")


def _whole_row(line, width):
    values = line.split(",")
    if len(values) != width or not values[0].isdigit():
        return False
    try:
        [_number(v) for v in values[1:]]
    except ValueError:
        return False
    return True


def read_history(path):
    """history.csv as {column: [one value per epoch]}, keeping the last row written for each epoch."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text().strip().splitlines()
    if not lines:
        return {}
    header = lines[0].split(",")
    by_epoch = {}
    for line in lines[1:]:
        if _whole_row(line, len(header)):  # skips a second header or a row cut short by a kill
            by_epoch[int(line.split(",")[0])] = line.split(",")
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    history = {name: [_number(r[i]) for r in rows] for i, name in enumerate(header) if name != "epoch"}
    return {name: values for name, values in history.items() if not all(math.isnan(v) for v in values)}


def _number(text):
    return float("nan") if text in ("", "NA") else float(text)


def evaluate_classifier(model, data, folder, scores=None):
    """Test loss/accuracy, per-class accuracy and the confusion matrix (saved as PNG in `folder`) on
    `data.test` (a `TrainingData`), scored against `data.test_labels`; `scores`: what the lesson's own
    `model.evaluate(..., return_dict=True)` returned (else it is called here)."""
    labels, class_names = data.test_labels, data.class_names
    dataset = distribution.prepare(data.test)  # every worker evaluates its share; results are gathered
    results = scores if scores is not None else model.evaluate(dataset, verbose=0, return_dict=True)
    probabilities = model.predict(dataset, verbose=0)
    if probabilities.shape[-1] == 1:  # one sigmoid unit: the probability of class 1
        predicted = (probabilities[:, 0] > 0.5).astype(int)
    else:
        predicted = np.argmax(probabilities, axis=-1)
    labels = np.asarray(labels)
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    plots.confusion_matrix(matrix, class_names, Path(folder) / "confusion_matrix.png")
    return {
        "test_loss": float(results["loss"]),
        "test_accuracy": float(np.mean(predicted == labels)),
        "per_class_accuracy": {name: round(float(a), 4)
                               for name, a in zip(class_names, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
        "probabilities": probabilities,
    }


def best_validation(history, metric="val_accuracy"):
    values = history.get(metric, [])
    return max(values) if values else None


# ------------------------------------------------------------------------------------------- whole classifier
def build_seeded(factory, config, data):
    """Seed, then build: every model of a run starts from the weights its seed gives, in any order."""
    keras.backend.clear_session()
    # clear_session also forgets the dtype policy and the Keras distribution: set them again.
    setup_precision(config)
    distribution.setup(config)
    distribution.activate()
    seed_everything(config.seed, config.deterministic)
    with distribution.scope():  # variables made here are mirrored over the replicas
        return distribution.adapt_model(factory(config, data))


def train_classifier(model, config, folder, data, extra_callbacks=(), keep_probabilities=False):
    """fit + evaluate_classifier for one model; returns the metrics a run reports for it.

    Args:
        model: the built model (`build_seeded`).
        config: the lesson's config (see `fit`).
        folder: the model's folder: the run folder, or a sub-folder of it for a baseline or a fold.
        data: a `TrainingData` with its test split, test labels and class names.
        extra_callbacks: Keras callbacks added to the shared ones.
        keep_probabilities: also return the test predictions, under "probabilities" (pop them before
            writing JSON).
    """
    outcome = fit(model, config, folder, data, extra_callbacks)
    return classifier_results(model, data, folder, outcome, keep_probabilities=keep_probabilities)


def classifier_results(model, data, folder, outcome, scores=None, keep_probabilities=False):
    """What a run reports for one trained classifier: the test scores (`evaluate_classifier`; `scores`:
    the lesson's own `model.evaluate` result), the best validation accuracy, size and training time
    (`outcome`: what `FitState.save` or `load` returned)."""
    metrics = evaluate_classifier(model, data, folder, scores)
    return {
        "model": model.name,
        **{k: metrics[k] for k in ("test_accuracy", "test_loss")},
        "best_val_accuracy": best_validation(outcome["history"]),
        "params": int(model.count_params()),
        "epochs": outcome["epochs"],
        "train_time_s": outcome["train_time_s"],
        "time_per_epoch_s": outcome["time_per_epoch_s"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "confusion_matrix": metrics["confusion_matrix"],
        "folder": str(folder),
        **({"probabilities": metrics["probabilities"]} if keep_probabilities else {}),
    }


def finish_run(run, config, results, summary):
    """Write metrics.json (which marks the run finished) and print the summary table.

    `summary` is a list of rows {model, metric, value, params, train_time_s}; run_all.py collects them.
    The models' small training states (`backup/state.json`, their weights already in `model.keras`) are
    removed once metrics.json is written, in the same process and under the run's lock: a finished run is
    never resumed, and nothing else in its folder changes afterwards.
    """
    runs.write_json(run.path / "metrics.json", {"task": config.TASK, "run_dir": str(run.path),
                                                "profile": config.profile, "seed": config.seed,
                                                "summary": summary, "results": results})
    if not distribution.is_chief():  # a worker's numbers are the chief's; its scratch folder goes
        run.close()
        print(f"worker {distribution.active().worker_index}: done (the chief wrote the run folder)")
        return
    try:
        run_report.write_run_report(run.path)
    except (UserError, OSError, ValueError) as error:  # the numbers are safe; the page is only a view of them
        print(f"report.html not written: {error}")
    for backup in run.path.rglob("backup"):
        shutil.rmtree(backup, ignore_errors=True)
    run.close()
    print(format_table(summary, ["model", "metric", "value", "params", "train_time_s"]))
    print(f"\nrun folder: {run.path}")

