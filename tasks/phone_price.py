"""Phone price classification with a feed-forward network (FNN).

What you will learn: a stratified train / validation / test split, with normalisation learned from the
training rows by a layer inside the model (the saved model takes raw feature rows); a small FNN
(`models/fnn.py`: one hidden GELU layer, softmax) trained with cross-entropy, Adam and a cosine learning-rate
schedule; why an L1 penalty on the first layer (learned feature selection) matters more here than the
activation; a softmax-regression baseline beside it; k-fold cross-validation; predictions for unlabelled
phones. The data: 2,000 phones (Kaggle "Mobile Price Classification"), 20 numeric features each (battery,
RAM, screen pixels, cameras, ...), four price ranges of 500 phones each; test.csv has 1,000 more without
labels.

Run it:

    python -m tasks.phone_price                      # the default run: quick profile, FNN + baseline
    python -m tasks.phone_price --profile smoke      # seconds: tests the plumbing, measures nothing
    python -m tasks.phone_price --cv 5               # 5-fold cross-validated accuracy
    python -m tasks.phone_price predict --run runs/phone_price/<run-id>   # label test.csv's phones

How long: about a minute on a laptop CPU (the measured time is in benchmarks/RESULTS.md).
Expected result: the 'Phone price' section of benchmarks/RESULTS.md (test accuracy of the FNN and of its
baseline, with date, machine and commit); the lesson page (`make pages`) shows it at the top. A run's own
numbers are in runs/phone_price/<run-id>/metrics.json.
"""

# %% Setup
# The lesson runs as `python -m tasks.phone_price` or as a file; TensorFlow's native start-up noise is
# filtered before it loads (`common/cli.py: quiet_tensorflow`), so the console shows only what matters.
import dataclasses
import sys
import typing
from pathlib import Path

if __package__ in (None, ""):  # `python tasks/phone_price.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run, task_main

quiet_tensorflow()

import numpy as np  # noqa: E402

from common import export, trained, training  # noqa: E402
from common.config import TrainConfig, setting  # noqa: E402
from common.errors import UserError  # noqa: E402
from common import registry  # noqa: E402
from datasets import mobile_price  # noqa: E402
from datasets.mobile_price import CLASS_NAMES, FEATURES  # noqa: E402
from models import build_fnn, build_softmax_regression  # noqa: E402

# %% The data set
# Twenty numeric columns (`FEATURES`: battery, RAM, pixels, ...) and the label, `price_range`, one of four
# `CLASS_NAMES`. A copy of the CSVs ships with the repo (`datasets/data/`), so the lesson also runs without
# any data root.


# %% Settings
# Every field is a command-line flag (`--hidden-units 128,64`), a key of a `--config` JSON file and a value
# the tuner can sample. The three profiles differ only in size: `smoke` for tests, `quick` (the default)
# and `full` (adds 5-fold cross-validation).
@dataclasses.dataclass
class PhonePriceConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "phone_price"
    PROFILES: typing.ClassVar[dict] = {
        "smoke": dict(epochs=8, max_rows=400, batch_size=32, tensorboard=False, export=False, verbose=0),
        # One compiled call runs a whole epoch (21 steps: `training.execution_steps` takes the largest divisor
        # of an epoch up to 32): the same numbers, less per-step overhead.
        "quick": dict(steps_per_execution=32),
        "full": dict(cv=5, steps_per_execution=32),
    }

    epochs: int = 150
    batch_size: int = 64
    learning_rate: float = 0.01
    schedule: str = "cosine"
    early_stopping: int = 0
    # setting(default, section of --help, help): the sections are data, model, training and run.
    hidden_units: tuple[int, ...] = setting(
        (64,), "model", "widths of the hidden layers, e.g. 64,32 (empty = softmax regression)")
    activation: str = setting("gelu", "model", "activation of the hidden layers", registry="activation")
    initializer: str = setting(
        "glorot_uniform", "model", "initializer of every Dense kernel", registry="initializer")
    dropout: float = setting(0.0, "model", "dropout after each hidden layer (0 = off)")
    batch_norm: bool = setting(
        False, "model", "batch normalisation between each hidden layer and its activation")
    l2: float = setting(0.0, "training", "L2 penalty on every kernel")
    input_l1: float = setting(
        3e-3, "training", "L1 penalty on the first layer's kernel: zeroes the weights of useless features")
    loss: str = setting(
        "sparse_categorical_crossentropy", "training", "loss (common/registry.py)", registry="loss")
    linear_baseline: bool = setting(
        True, "model", "also train the softmax-regression baseline", aliases=("baseline",))
    val_fraction: float = setting(
        0.15, "data", "share of the labelled rows held out for validation (stratified by class)")
    test_fraction: float = setting(
        0.2, "data", "share of the labelled rows held out for the test (stratified by class)")
    split_seed: int = setting(
        42, "data", "seed of the train/validation/test split and the CV folds (kept apart from --seed)")
    cv: int = setting(0, "training", "k-fold cross-validation (0 = off)")
    max_rows: typing.Optional[int] = setting(
        None, "data", "use a stratified subset of this many labelled rows (smoke tests)")
    export: bool = setting(
        True, "run", "export the FNN as SavedModel, ONNX and LiteRT (model.export) and test each file "
        "(exports.md)")

    RANGES: typing.ClassVar[dict] = {
        "dropout": "[0, 1)", "l2": ">= 0", "input_l1": ">= 0", "val_fraction": "(0, 1)",
        "test_fraction": "(0, 1)", "hidden_units": ">= 1", "max_rows": ">= 1"}

    def validate(self):
        super().validate()  # types and RANGES of every field
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError(f"--val-fraction ({self.val_fraction:g}) and --test-fraction "
                            f"({self.test_fraction:g}) must sum to less than 1, leaving rows to train on.")
        if self.cv == 1:
            raise UserError("--cv must be between 2 and the smallest class size, or 0 (off), got 1.")


# %% Data: check, split, batch
# `datasets/mobile_price.py: load` checks the CSV (columns, labels, size) and splits it three ways, stratified
# by class with a fixed seed (`datasets/mobile_price.py: split_stratified`). Normalisation is learned from the
# training rows only, by a `Normalization` layer inside the model, so the saved model takes raw rows.
def make_datasets(config, data):
    """tf.data splits (train shuffled with the seed), the number of steps per epoch and the test labels, as
    `common/training.py: TrainingData`."""
    one_hot = registry.loss_target(config.loss) == "one_hot"

    def labels(y):  # MSE/MAE/Huber/BCE compare the softmax output with one-hot vectors
        return np.eye(data.num_classes, dtype="float32")[y] if one_hot else y

    train = mobile_price.to_dataset(data.x_train, labels(data.y_train), config.batch_size, config.seed)
    val = (mobile_price.to_dataset(data.x_val, labels(data.y_val), config.batch_size) if len(data.y_val)
           else None)
    test = mobile_price.to_dataset(data.x_test, labels(data.y_test), config.batch_size)
    steps = int(np.ceil(len(data.x_train) / config.batch_size))
    return training.TrainingData(train, val, steps, test=test, test_labels=data.y_test,
                                 class_names=data.class_names)


# %% Model, compile, fit, evaluate
# The network is `models/fnn.py: build_fnn`: Normalization, hidden Dense layers (with the L1 penalty on the
# first kernel that selects features), softmax. The Keras calls are the lesson's own; `common/training.py`
# names the pieces around them: the optimizer and schedule the flags choose, and `FitState`, which makes the
# fit resume exactly where a killed run stopped (a model trained by an earlier run is loaded, not retrained).
def train_one(factory, config, data, folder):
    """Build with the seed, compile, fit with backups (and early stopping if asked), evaluate on test."""
    model = training.build_seeded(factory, config, data)  # seeds everything, then builds
    splits = make_datasets(config, data)  # after the seed: tf.data's shuffle draws from it
    steps = splits.steps_per_epoch
    with training.scope():  # --distribution: the optimizer's and the metrics' variables are mirrored
        model.compile(
            optimizer=training.optimizer(config, steps),  # Adam, cosine schedule over the run's steps
            loss=registry.loss(config.loss, config.label_smoothing),  # sparse categorical cross-entropy
            metrics=[training.accuracy(config.loss, outputs=data.num_classes)],
            jit_compile=training.jit_compile(config),
            steps_per_execution=training.steps_per_call(config, steps))  # a whole epoch per call
    state = training.FitState(model, config, folder)
    if state.finished:
        outcome = state.load()
    else:
        model.fit(state.stream(splits.train, steps), steps_per_epoch=steps,
                  validation_data=state.prepare(splits.val),
                  initial_epoch=state.epoch, epochs=state.epochs(config.epochs),
                  callbacks=state.callbacks(monitor=training.monitor_of(splits)),
                  verbose=config.verbose, shuffle=False)  # the tf.data pipeline shuffles, seeded
        outcome = state.save()
    scores = model.evaluate(state.prepare(splits.test), return_dict=True, verbose=0)
    return training.classifier_results(model, splits, folder, outcome, scores)


# %% Cross-validation
# One split gives one number; k folds give a mean and its spread, which is what a comparison of two
# settings should rest on.
def cross_validate(factory, config, data, folder):
    """k stratified folds of all labelled rows, each scored on the fold it did not train on.

    With early stopping, each fold carves a validation part from its training rows (never the held-out
    fold); without, every training row is used for training.
    """
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    accuracies = []
    folds = mobile_price.stratified_folds(y, config.cv, config.split_seed)
    for k, (rest, held_out) in enumerate(folds, start=1):
        if config.early_stopping:
            x_train, x_val, y_train, y_val = mobile_price.train_test_split(
                x[rest], y[rest], test_size=config.val_fraction, stratify=y[rest],
                random_state=config.split_seed)
        else:
            x_train, y_train, x_val, y_val = x[rest], y[rest], x[:0], y[:0]
        fold = mobile_price.Splits(x_train, y_train, x_val, y_val, x[held_out], y[held_out],
                                   FEATURES, CLASS_NAMES)
        result = train_one(factory, config, fold, folder / f"fold-{k}")
        accuracies.append(result["test_accuracy"])
        print(f"cv fold {k}/{config.cv}: accuracy {result['test_accuracy']:.4f}")
    return {"folds": config.cv, "accuracies": accuracies, "mean": float(np.mean(accuracies)),
            "std": float(np.std(accuracies))}


# %% Predictions for unlabelled phones
def write_predictions(model, csv_path, out_path=None):
    """Label an unlabelled CSV (same feature columns, optional id) with the saved model; the id,price_range
    rows go to `out_path` (None: stdout)."""
    frame, x, _ = mobile_price.read_csv(csv_path, FEATURES)
    ids = frame["id"].to_numpy() if "id" in frame.columns else np.arange(1, len(x) + 1)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    lines = ["id,price_range"] + [f"{i},{p}" for i, p in zip(ids.tolist(), predicted.tolist(), strict=True)]
    trained.write_output(out_path, "\n".join(lines) + "\n")
    return predicted


# %% The lesson, end to end
# Load, train the FNN and its softmax-regression baseline (each in its own folder of the run), optionally
# cross-validate, label the unlabelled phones, write metrics.json and report.html.
def train(config):
    training.setup_precision(config)
    data = mobile_price.load(config)
    print(f"data: {data.source} -> train {len(data.y_train)}, validation {len(data.y_val)}, "
          f"test {len(data.y_test)} rows")
    run_ = training.start_run(config, data.source)
    models = {"fnn": (build_fnn, run_.folder())}
    if config.linear_baseline:
        models["softmax_regression"] = (build_softmax_regression, run_.folder("baseline"))
    results, summary = {}, []
    for name, (factory, model_folder) in models.items():
        results[name] = train_one(factory, config, data, model_folder)
        summary.append({"model": name, "metric": "test_accuracy", "value": results[name]["test_accuracy"],
                        "params": results[name]["params"], "train_time_s": results[name]["train_time_s"]})
        if config.cv:
            cv = cross_validate(factory, config, data, run_.folder(f"cv/{name}"))
            results[name]["cv"] = cv
            summary.append({"model": name, "metric": f"cv{config.cv}_accuracy_mean", "value": cv["mean"],
                            "params": results[name]["params"], "train_time_s": ""})
    import keras

    model = keras.saving.load_model(run_.path / "model.keras")
    if config.export:  # the saved FNN, in every format Keras exports, each file scored on the test rows
        reason = export.unavailable()
        if reason:
            print(f"export skipped: {reason}")
        else:
            results["fnn"]["exports"] = export.export_model(model, run_.path, data.x_test, data.y_test)
            print(export.write_table(results["fnn"]["exports"], run_.path))
    unlabelled = data.source / "test.csv"
    if unlabelled.exists():
        write_predictions(model, unlabelled, run_.path / "predictions.csv")
        print(f"predictions for {unlabelled}: {run_.path / 'predictions.csv'}")
    training.finish_run(run_, config, results, summary)
    return 0


# %% Predict with a finished run
# `predict` reads a finished run (never modifies it) and writes id,price_range rows to --output or stdout.
def add_predict_arguments(parser):
    parser.add_argument("--run", required=True, help="a finished phone_price run folder (holds model.keras)")
    parser.add_argument("--input",
                        help="CSV with the 20 feature columns (default: test.csv of the data root)")
    parser.add_argument("--output", help="file to write the id,price_range rows to (its folder is created; "
                        "never inside a run folder); default: print them, e.g. '> predictions.csv'")
    parser.add_argument("--data-dir", help="data root to take test.csv from")


def predict(args):
    """Label phones with a trained run's model: id,price_range rows to --output or stdout; the run folder is
    only read."""
    trained.check_output(args.output, inputs=[args.input])
    trained.open_run(args.run, PhonePriceConfig.TASK)
    if args.input:
        csv_path = Path(args.input)
    else:
        csv_path = mobile_price.find_folder(args.data_dir, required=("test.csv",)) / "test.csv"
        trained.check_output(args.output, inputs=[csv_path])
    mobile_price.read_csv(csv_path, FEATURES)  # a bad file is refused before the model is loaded
    model_path = Path(args.run) / "model.keras"
    model = trained.load_model(model_path)
    trained.expect_input(model, model_path, model.input_shape[1:] == (len(FEATURES),)
                         and model.output_shape[1:] == (len(CLASS_NAMES),),
                         f"{len(FEATURES)} phone features in, {len(CLASS_NAMES)} class probabilities out")
    predicted = write_predictions(model, csv_path, args.output)
    counts = np.bincount(predicted, minlength=len(CLASS_NAMES))
    print(f"{len(predicted)} phones -> {args.output or 'stdout'}; per class: "
          + ", ".join(f"{name} {n}" for name, n in zip(CLASS_NAMES, counts.tolist(), strict=True)),
          file=sys.stderr)
    return 0


# %% Things to try
# Why the defaults are what they are. The price range is close to a function of a few features (RAM above all,
# then battery, pixel resolution, weight); the other 14 are noise, and a plain network fits that noise: with
# `--input-l1 0` its accuracy falls below logistic regression's. The L1 penalty on the first layer drives the
# weights of useless features to zero (learned feature selection); once it does, the activation matters much
# less (`--activation relu` lands within one validation phone of GELU). Both choices were made on validation;
# the ablation rows of benchmarks/RESULTS.md ('Phone price') measure each.
#
# More: `--activation sigmoid|tanh|leaky_relu|swish`, `--initializer he_normal`, `--batch-norm`,
# `--hidden-units 128,64 --dropout 0.3`, `--optimizer sgd --learning-rate 0.1`,
# `--schedule step --step-epochs 20`, `--loss mse` (a regression loss on one-hot labels),
# `--label-smoothing 0.1`, `--cv 5` (a mean and spread over folds, for a comparison that does not hang on one
# split); then compare runs with `python -m tuning.search --task phone_price --compare activation`.
main = task_main(PhonePriceConfig, train, __doc__, commands={"predict": (add_predict_arguments, predict)})

if __name__ == "__main__":
    run(main)
