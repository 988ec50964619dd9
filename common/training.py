"""The training loop every lesson shares: seeding, run folders, compile, callbacks, fit, evaluate, save.

A run lives in `<output-dir>/<task>/<run-id>/`. Each model trained in it gets a folder (the run folder
itself for the main model, a sub-folder for baselines and cross-validation folds) holding `history.csv`,
`model.keras`, `learning_curves.png`, `confusion_matrix.png`, TensorBoard `logs/` and, while training, a
`backup/` that `keras.callbacks.BackupAndRestore` uses: rerun an interrupted command with the same
`--run-id` and training continues from the last finished epoch.
"""

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from common import plots
from common.tables import format_table
from common.errors import UserError
from models import registry

# Settings that may differ when an interrupted run is resumed (they do not change the result).
RESUMABLE_CHANGES = {"verbose", "tensorboard", "data_dir", "output_dir", "run_id", "jit_compile",
                     "steps_per_execution"}


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
    """Mixed precision computes in float16 and keeps float32 weights; factories keep outputs in float32."""
    keras.mixed_precision.set_dtype_policy("mixed_float16" if config.mixed_precision else "float32")


# -------------------------------------------------------------------------------------------------- run folder
@dataclasses.dataclass
class Run:
    path: Path
    resumed: bool

    def folder(self, name=None):
        """The folder for one trained model: the run folder itself, or a named sub-folder."""
        folder = self.path / name if name else self.path
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def start_run(config):
    """Create (or reopen, to resume) the run folder and write `config.json`."""
    task_dir = Path(config.output_dir) / config.TASK
    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S") + f"-seed{config.seed}"
    path = task_dir / run_id
    resumed = False
    if path.exists():
        if (path / "metrics.json").exists():
            raise UserError(f"run {path} already finished; choose another --run-id to train again.")
        if config.run_id is None:  # two runs started in the same second: keep both
            path = Path(f"{path}-{os.getpid()}")
        else:
            _check_same_recipe(path / "config.json", config)
            resumed = True
    path.mkdir(parents=True, exist_ok=True)
    config.run_id = path.name
    config.save(path / "config.json")
    print(f"{'resuming' if resumed else 'run'}: {path}")
    return Run(path, resumed)


def _check_same_recipe(config_path, config):
    if not config_path.exists():
        return
    before = json.loads(config_path.read_text())
    now = json.loads(json.dumps(config.to_dict()))
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and k in before and before[k] != now[k])
    if changed:
        raise UserError(f"run {config_path.parent} was started with other settings ({', '.join(changed)}); "
                        "rerun the original command to resume it, or choose another --run-id.")


def write_json(path, data):
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ------------------------------------------------------------------------------------------------------ compile
def compile_model(model, config, steps_per_epoch, metrics=("accuracy",), loss=None):
    """Compile with the optimizer, schedule, loss and clipping named in the config (`loss`: a loss function
    that replaces the config's, for models whose loss is not a registry name, such as the captioner's)."""
    learning_rate = registry.schedule(
        config.schedule, config.learning_rate, steps_per_epoch, config.epochs,
        step_epochs=config.step_epochs, milestones=config.milestones, gamma=config.gamma,
        warmup_epochs=config.warmup_epochs)
    optimizer = registry.optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                                   weight_decay=config.weight_decay, clipnorm=config.clipnorm)
    loss_name = getattr(config, "loss", "sparse_categorical_crossentropy")
    jit = {"auto": "auto", "true": True, "false": False}[config.jit_compile]
    outputs = model.output_shape[-1]
    if loss is None:
        metrics = [_metric(m, registry.check_name("loss", loss_name), outputs) for m in metrics]
        loss = registry.loss(loss_name, config.label_smoothing)
    # Keras' PyTorch backend runs one step per call only; several steps per call never change the numbers.
    steps = 1 if keras.backend.backend() == "torch" else getattr(config, "steps_per_execution", 1)
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics), jit_compile=jit, steps_per_execution=steps)
    return model


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


def callbacks(config, folder, monitor="val_loss", extra=()):
    """Keras' own callbacks: backup/resume, CSV history, best checkpoint, early stopping, TensorBoard."""
    folder = Path(folder)
    result = [
        keras.callbacks.TerminateOnNaN(),
        # History first, backup second: a crash between the two repeats an epoch (read_history keeps the
        # last row of each epoch) instead of losing one.
        keras.callbacks.CSVLogger(str(folder / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(folder / "backup")),
        keras.callbacks.ModelCheckpoint(str(folder / "checkpoint.keras"), monitor=monitor, save_best_only=True),
    ]
    if config.early_stopping:
        result.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping,
                                                    restore_best_weights=True))
    if config.reduce_lr_patience and config.schedule == "constant":
        result.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                        patience=config.reduce_lr_patience))
    if config.tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(folder / "logs")))
    return result + list(extra)


# ---------------------------------------------------------------------------------------------------------- fit
def fit(model, config, folder, train, val, steps_per_epoch, extra_callbacks=(), loss=None,
        metrics=("accuracy",)):
    """Train `model` (already built) on tf.data splits and return what happened.

    `val` may be None (no validation split, e.g. cross-validation folds without early stopping): the
    checkpoint then follows the training loss.
    The returned dict holds the full history (read back from history.csv, so a resumed run reports every
    epoch), the number of epochs, and the wall time of this call.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    compile_model(model, config, steps_per_epoch, metrics, loss)
    monitor = "val_loss" if val is not None else "loss"
    started = time.perf_counter()
    # shuffle=False: the tf.data pipeline shuffles (seeded) itself.
    model.fit(train, validation_data=val, epochs=config.epochs, verbose=config.verbose, shuffle=False,
              callbacks=callbacks(config, folder, monitor, extra=extra_callbacks))
    train_time = time.perf_counter() - started
    history = read_history(folder / "history.csv")
    losses = history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        raise UserError(f"training diverged (the loss became NaN or infinite, see {folder / 'history.csv'}); "
                        "try a lower --learning-rate or --clipnorm 1.0.")
    plots.learning_curves(history, folder / "learning_curves.png")
    model.save(folder / "model.keras")
    epochs_run = len(losses)
    return {"history": history, "epochs": epochs_run, "train_time_s": round(train_time, 2),
            "time_per_epoch_s": round(train_time / max(1, epochs_run), 3)}


def read_history(path):
    """history.csv as {column: [one value per epoch]}, keeping the last row written for each epoch."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text().strip().splitlines()
    header = lines[0].split(",")
    by_epoch = {}
    for line in lines[1:]:
        if line.startswith("epoch,"):  # a resumed run appends a second header
            continue
        values = line.split(",")
        by_epoch[int(values[0])] = values
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    history = {name: [_number(r[i]) for r in rows] for i, name in enumerate(header) if name != "epoch"}
    return {name: values for name, values in history.items() if not all(math.isnan(v) for v in values)}


def _number(text):
    return float("nan") if text in ("", "NA") else float(text)


def evaluate_classifier(model, dataset, labels, class_names, folder):
    """Test loss/accuracy, per-class accuracy and the confusion matrix (saved as PNG) on a labelled split."""
    results = model.evaluate(dataset, verbose=0, return_dict=True)
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
        "per_class_accuracy": {name: round(float(a), 4) for name, a in zip(class_names, per_class)},
        "confusion_matrix": matrix.tolist(),
        "probabilities": probabilities,
    }


def best_validation(history, metric="val_accuracy"):
    values = history.get(metric, [])
    return max(values) if values else None


# -------------------------------------------------------------------------------------------- whole classifier
def build_seeded(factory, config, data):
    """Seed, then build: every model of a run starts from the weights its seed gives, in any order."""
    keras.backend.clear_session()
    seed_everything(config.seed, config.deterministic)
    return factory(config, data)


def train_classifier(model, config, folder, train, val, test, test_labels, class_names, steps_per_epoch,
                     extra_callbacks=(), keep_probabilities=False):
    """fit + evaluate_classifier for one model; returns the metrics a run reports for it (and, with
    `keep_probabilities`, the test predictions under "probabilities": pop them before writing JSON)."""
    outcome = fit(model, config, folder, train, val, steps_per_epoch, extra_callbacks)
    metrics = evaluate_classifier(model, test, test_labels, class_names, folder)
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
    """
    write_json(run.path / "metrics.json", {"task": config.TASK, "run_dir": str(run.path),
                                           "profile": config.profile, "seed": config.seed,
                                           "summary": summary, "results": results})
    print(format_table(summary, ["model", "metric", "value", "params", "train_time_s"]))
    print(f"\nrun folder: {run.path}")

