"""CIFAR-10 image classification: from the course's first CNN to residual networks, fast on a CPU.

What you will learn: a `tf.data` pipeline from uint8 arrays that augments on the fly (random crop after
padding, flips; `--cutout`, `--mixup`), with normalisation inside the model; the nets of `models/cnn.py`
(`--model`: the course's CNN, VGG, ResNet-20/32/56 and `fast`, the default); the recipe that makes `fast`
quick on a CPU, airbench94's (Jordan 2024): SGD with Nesterov momentum and decoupled weight decay, a
triangular learning rate, label smoothing, large batches, 16-bit arithmetic where the hardware has it, and
two layers that do Keras' work in fewer passes over memory (docs/frameworks.md); reading the result
(learning curves, confusion matrix, misclassified.png); export to SavedModel, ONNX and LiteRT float32,
float16 and int8, each file scored on the test set. The data: 50,000 training and 10,000 test images of
32x32 pixels in 10 classes; 5,000 training images are held out for validation, and the first
4,000 as lossless originals to score on (the offline copy is JPEG re-encodings: see the last section).

Run it:

    python -m tasks.cifar10                     # the default run: quick profile, the fast net, 10 epochs
    python -m tasks.cifar10 --profile smoke     # seconds, a few hundred images
    python -m tasks.cifar10 --config recipes/cifar10_airbench94.json   # airbench94 in Keras
    python -m tasks.cifar10 predict --run runs/cifar10/<run-id> my_cat.png

How long: about a quarter of an hour on a 2-core CPU with AMX bfloat16 units, longer on one without them.
Expected result: the 'CIFAR-10' section of benchmarks/RESULTS.md (the default run's row, the airbench94
recipe over seeds, one row per method taken away); the lesson page (`make pages`) shows the default run's
row at the top.
"""

# %% Setup
import dataclasses
import sys
import time
import typing
from pathlib import Path

if __package__ in (None, ""):  # `python tasks/cifar10.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run, task_main

quiet_tensorflow()

import numpy as np  # noqa: E402

from common import export, images, plots, trained, training  # noqa: E402
from common.config import TrainConfig, setting  # noqa: E402
from common.errors import UserError, printable  # noqa: E402
from common import registry  # noqa: E402
from datasets import cifar10  # noqa: E402
from datasets.cifar10 import CLASS_NAMES, IMAGE_SIZE  # noqa: E402
from models import airbench, cnn  # noqa: E402


# %% Settings
AIRBENCH94 = Path(__file__).resolve().parents[1] / "recipes" / "cifar10_airbench94.json"

# The fast net's quick profile (the lesson's default run): the methods and hyperparameters of
# recipes/cifar10_airbench94.json, where each value is explained (tests/lessons_test.py checks that the two
# agree), on a split with 5,000 validation images, and 16-bit compute where the CPU has it.
AIRBENCH94_METHODS = dict(
    widths=(64, 256, 256), stem_width=24, activation="gelu", initializer="torch_default", dropout=0.0,
    l2=0.0, bn_momentum=0.6, bn_scale=False, bn_bias_lr=64.0, dirac=True, logit_scale=1 / 9,
    whiten=True, whiten_eps=0.0005, whiten_bias_epochs=3,
    epochs=10, batch_size=1024, optimizer="nesterov", momentum=0.85, learning_rate=1.5,
    weight_decay=0.00887, schedule="triangular", warmup_epochs=2.3,
    loss="categorical_crossentropy", label_smoothing=0.2,
    crop_padding=2, flip=True, alternating_flip=True, cutout=0, mixup=0.0,
    lookahead=True, lookahead_steps=5, tta=True, tta_crops=True,
    mixed_precision=True, mixed_dtype="auto")


# Every field is a flag and a `--config` key. The airbench94 methods are flags too (`--whiten`, `--dirac`,
# `--lookahead`, `--alternating-flip`, `--tta-crops`, ...), so `recipes/cifar10_airbench94.json` switches
# them all on and `python -m benchmarks.cifar10 --ablations` removes each in turn.
@dataclasses.dataclass
class Cifar10Config(TrainConfig):
    TASK: typing.ClassVar[str] = "cifar10"
    PROFILES: typing.ClassVar[dict] = {
        "smoke": dict(model="course_cnn", max_images=600, epochs=2, batch_size=64, learning_rate=0.05,
                      export=False, tta=False, tensorboard=False, verbose=0),
        "quick": dict(),
        "full": dict(widths=(64, 256, 256), batch_size=512, epochs=10),
    }
    # The quick profile of the fast net (the lesson's default run) is airbench94's recipe
    # (recipes/cifar10_airbench94.json, where each value is explained), 5,000 training images held out for
    # validation and 16-bit compute where the CPU has it (--mixed-dtype auto), for a CPU budget of about a
    # quarter of an hour on a 2-core machine with AMX. Its widths were chosen on validation accuracy within
    # that budget: airbench94's 64/256/256 over airbench93's 64/128/128, both 10 epochs (the two fast-net
    # rows of benchmarks/RESULTS.md' CIFAR-10 section). Other models keep the quick profile above.
    MODEL_PROFILES: typing.ClassVar[dict] = {"quick": {"fast": AIRBENCH94_METHODS}}

    model: str = setting(  # argparse fills in %(choices)s in --help
        "fast", "model", "architecture (models/cnn.py), one of: %(choices)s", choices=cnn.BUILDERS)
    widths: tuple[int, ...] = setting(
        (32, 96, 192), "model", "filters per stage of vgg and fast (e.g. 64,128,256); ResNets use the "
        "paper's 16,32,64")
    stem_width: int = setting(24, "model", "filters of the fast net's 2x2 stem")
    logit_scale: float = setting(0.125, "model", "fast net: logits are scaled by this")
    activation: str = setting("gelu", "model", "activation after each convolution", registry="activation")
    initializer: str = setting(
        "he_normal", "model", "initializer of the conv and dense kernels", registry="initializer")
    bn_momentum: float = setting(
        0.9, "model", "batch-norm moving-average momentum (Keras 0.99 = PyTorch 0.01; 0.9 = PyTorch's "
        "default 0.1)")
    fused_batch_norm: bool = setting(
        True, "model", "batch norm by TensorFlow's fused kernel (models/fused_batch_norm.py): the same "
        "layer, a faster step on the CPU")
    dropout: float = setting(
        0.0, "model", "dropout before the output layer (vgg: also after each stage, more in deeper ones; "
        "0 = off)")
    l2: float = setting(0.0, "training", "L2 penalty on conv/dense kernels (ResNet paper: 1e-4)")
    epochs: int = 16
    batch_size: int = 256
    optimizer: str = "nesterov"
    learning_rate: float = 0.2
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 1.0
    loss: str = setting("categorical_crossentropy", "training", "loss (common/registry.py)", registry="loss")
    label_smoothing: float = 0.2
    crop_padding: int = setting(4, "data", "random crop after padding this many pixels (0 = off)")
    flip: bool = setting(True, "data", "random horizontal flips")
    cutout: int = setting(0, "data", "side of the cutout square in pixels (0 = off)")
    mixup: float = setting(0.0, "data", "mixup Beta(a, a) parameter (0 = off)")
    tta: bool = setting(
        True, "training", "also report test accuracy averaged over each image and its mirror image")
    # airbench94's methods (Jordan 2024), one flag each, so the lesson can teach them and a benchmark can take
    # each away: recipes/cifar10_airbench94.json turns them all on.
    whiten: bool = setting(
        False, "model", "fast net: a frozen 2x2 patch-whitening stem computed from the training images "
        "(24 filters)")
    whiten_eps: float = setting(
        5e-4, "model", "added to each eigenvalue of the patch covariance before whitening")
    whiten_bias_epochs: int = setting(
        3, "training", "epochs the whitening stem's bias trains before it is frozen")
    bn_scale: bool = setting(True, "model", "batch norm learns a scale (airbench: no, only the shift)")
    bn_bias_lr: float = setting(
        1.0, "training", "learning-rate multiplier of the batch-norm shifts (airbench: 64), as a "
        "reparametrised shift")
    dirac: bool = setting(False, "model", "identity (dirac) initialisation of the 3x3 convs")
    lookahead: bool = setting(
        False, "training", "airbench's lookahead: every few steps, reset the weights to a moving average "
        "of them")
    lookahead_steps: int = setting(5, "training", "steps between lookahead syncs")
    alternating_flip: bool = setting(
        False, "data", "with --flip: mirror each image in every other epoch instead of at random")
    tta_crops: bool = setting(
        False, "training", "with --tta: also average over the mirror pairs shifted one pixel up-left and "
        "down-right")
    lossless_holdout: bool = setting(
        True, "data", "hold the first 4,000 training images out and report accuracy on their lossless "
        "originals and their JPEG versions (needs lossless_train_first4000.npz beside a JPEG copy)")
    export: bool = setting(
        True, "run", "export SavedModel, ONNX, LiteRT float32, float16 and int8 (model.export), and test "
        "each file")
    representative_size: int = setting(500, "run", "training images used to calibrate int8 quantisation")
    source: str = setting(
        "auto", "data", "auto: the data root's copy (folders, the JPEG archive or the python batches), else "
        "keras.datasets.cifar10; tfds: TensorFlow Datasets' prepared cifar10 (--data-dir is then the TFDS "
        "data dir, else $TFDS_DATA_DIR or ~/tensorflow_datasets)", choices=("auto", "tfds"))
    val_images: int = setting(
        5000, "data", "training images held out for validation, the same number per class (0 = none)",
        aliases=("val_size",))
    split_seed: int = setting(42, "data", "seed of the choice of validation images (kept apart from --seed)")
    max_images: typing.Optional[int] = setting(
        None, "data", "use only this many images per split (smoke tests)", aliases=("limit",))

    RANGES: typing.ClassVar[dict] = {
        "widths": ">= 1", "stem_width": ">= 1", "logit_scale": "> 0", "bn_momentum": "[0, 1)",
        "dropout": "[0, 1)", "l2": ">= 0", "mixup": ">= 0", "representative_size": ">= 1",
        "val_images": ">= 0",
        "whiten_eps": "> 0", "whiten_bias_epochs": ">= 0", "bn_bias_lr": "> 0", "lookahead_steps": ">= 1",
        # Reflect padding of a 32-pixel image: the crop must still see most of it.
        "crop_padding": f"[0, {IMAGE_SIZE[0] // 2})", "cutout": f"[0, {IMAGE_SIZE[0]}]",
        # Two images per class: one to train on and one to hold out for validation.
        "max_images": f">= {2 * len(CLASS_NAMES)}"}

    def validate(self):
        super().validate()  # types, choices and RANGES of every field
        if self.mixup and registry.loss_target(registry.check_name("loss", self.loss)) != "one_hot":
            raise UserError("--mixup blends one-hot labels: use --loss categorical_crossentropy (or mse, "
                            "...).")
        if self.model in ("vgg", "fast") and not self.widths:
            raise UserError(f"--widths must name the filters per stage of {self.model}, e.g. 32,128,128.")
        if self.whiten and self.model != "fast":
            raise UserError(f"--whiten replaces the fast net's stem; --model {self.model} has none (use "
                            "--model fast).")
        if self.whiten and self.stem_width != WHITENED_WIDTH:
            raise UserError(f"--whiten gives the stem {WHITENED_WIDTH} filters (12 per 2x2 patch and their "
                            f"negatives); leave --stem-width at {WHITENED_WIDTH}, got {self.stem_width}.")
        if self.alternating_flip and not self.flip:
            raise UserError("--alternating-flip chooses when to mirror each image: it needs --flip.")
        if self.tta_crops and not self.tta:
            raise UserError("--tta-crops adds views to the mirror-image TTA: it needs --tta.")


# %% Data: arrays, hold-outs, augmentation
# The images load as uint8 arrays (`datasets/cifar10.py: load`, which calls `datasets/cifar10.py: read`).
# The first 4,000 training images are held out as lossless originals, to measure what the JPEG copy costs;
# validation is carved from the rest. Augmentation runs on whole batches with stateless random ops seeded per
# batch (`common/images.py: augment_batch`): random crop after reflect padding and a horizontal flip, or
# airbench's alternating flip (`common/images.py: alternate_flips`).
WHITENED_WIDTH = 24  # models/airbench.py: 2 x (2 x 2 pixels x 3 channels)


def make_datasets(config, data):
    """train / validation / test tf.data pipelines (labels one-hot when the loss wants them), steps per epoch
    and the test labels, as `common/training.py: TrainingData`."""
    one_hot = registry.loss_target(registry.check_name("loss", config.loss)) == "one_hot"
    classes = data.num_classes if one_hot else None
    # The config's seed, crop_padding, flip, cutout, mixup and alternating_flip make the training stream.
    train = images.image_pipeline(data.train, config.batch_size, classes, training=config)
    val = images.image_pipeline(data.val, 1000, classes) if len(data.y_val) else None
    test = images.image_pipeline(data.test, 1000, classes)
    steps = int(np.ceil(len(data.y_train) / config.batch_size))
    return training.TrainingData(train, val, steps, test=test, test_labels=data.y_test,
                                 class_names=data.class_names)


# %% Model, compile, fit, evaluate
# The networks are in `models/cnn.py` (`--model`); the default is the airbench-style fast net
# (`models/cnn.py: fast_body`), whose first layer can be airbench's frozen patch-whitening
# (`models/airbench.py: PatchWhitening`), computed from the training images' 2x2 patch covariance before
# training. The Keras calls are the lesson's own: SGD with Nesterov momentum, decoupled weight decay and a
# one-cycle or triangular rate (`common/training.py: optimizer`); lookahead averaging of the weights is a
# callback (`models/airbench.py: Lookahead`); `common/training.py: FitState` makes the fit resume exactly.
def train(config, data=None):
    """Train, evaluate and export one run; `data`: splits to use instead of the config's data root's (the
    JPEG-cost experiment of benchmarks/cifar10_airbench.py trains on the lossless originals)."""
    if config.export and export.unavailable():
        print(f"export skipped: {export.unavailable()}")
        config.export = False
    training.setup_precision(config)
    data = data or cifar10.load(config)
    held = "".join(f", held out {len(y)} ({name})" for name, (_, y) in data.held_out.items())
    print(f"data: train {len(data.y_train)}, validation {len(data.y_val)}, test {len(data.y_test)} "
          f"images{held}" + (f" ({data.note})" if data.note else ""))
    run_ = training.start_run(config, data.source)
    folder = run_.folder()
    splits = make_datasets(config, data)
    steps = splits.steps_per_epoch
    model = training.build_seeded(cnn.build_cnn, config, data)
    with training.scope():  # --distribution: the optimizer's and the metrics' variables are mirrored
        model.compile(
            optimizer=training.optimizer(config, steps),  # Nesterov SGD, one-cycle/triangular schedule
            loss=registry.loss(config.loss, config.label_smoothing),  # label-smoothed cross-entropy
            metrics=[training.accuracy(config.loss, outputs=data.num_classes)],
            jit_compile=training.jit_compile(config),
            steps_per_execution=training.steps_per_call(config, steps))
    state = training.FitState(model, config, folder)  # exact resume after a kill
    if state.finished:
        outcome = state.load()
    else:
        model.fit(state.stream(splits.train, steps), steps_per_epoch=steps,
                  validation_data=state.prepare(splits.val),
                  initial_epoch=state.epoch, epochs=state.epochs(config.epochs),
                  # Keras' own callbacks, then the methods' (lookahead, the whitening bias's freeze)
                  callbacks=state.callbacks(method_callbacks(config, steps),
                                            monitor=training.monitor_of(splits)),
                  verbose=config.verbose, shuffle=False)  # the tf.data pipeline shuffles, seeded
        outcome = state.save()
    scores = model.evaluate(state.prepare(splits.test), return_dict=True, verbose=0)
    result = training.classifier_results(model, splits, folder, outcome, scores, keep_probabilities=True)
    probabilities = result.pop("probabilities")
    result["train_images"] = len(data.y_train)
    result["images_per_s"] = round(
        len(data.y_train) * result["epochs"] / max(result["train_time_s"], 1e-9), 1)
    result["data"] = data.note or "original images"
    result["class_names"] = data.class_names
    write_misclassified(data, probabilities, folder / "misclassified.png")
    summary = [{"model": config.model, "metric": "test_accuracy", "value": result["test_accuracy"],
                "params": result["params"], "train_time_s": result["train_time_s"]}]
    if config.tta:
        tta = images.predict_tta(model, data.x_test, translate=config.tta_crops)
        result["test_accuracy_tta"] = float(np.mean(tta.argmax(-1) == data.y_test))
        summary.append({**summary[0], "metric": "test_accuracy_tta", "value": result["test_accuracy_tta"]})
    for metric, value in evaluate_held_out(model, config, data).items():
        result[metric] = value
        summary.append({**summary[0], "metric": metric, "value": value})
    if config.export:
        sample = np.random.default_rng(config.seed).choice(len(data.x_train), config.representative_size)
        started = time.perf_counter()
        result["exports"] = export.export_classifier(model, folder, data.x_train[sample].astype("float32"),
                                                     data.x_test, data.y_test)
        result["export_time_s"] = round(time.perf_counter() - started, 1)
        print(export.write_table(result["exports"], folder))
        summary += [{"model": f"{config.model} ({row['format']})", "metric": "test_accuracy",
                     "value": row["test_accuracy"], "params": result["params"], "train_time_s": ""}
                    for row in result["exports"][2:]]
    training.finish_run(run_, config, {config.model: result}, summary)
    return 0


def method_callbacks(config, steps_per_epoch):
    """The callbacks of airbench's training-time methods that are on (models/airbench.py)."""
    chosen = []
    if config.lookahead:
        chosen.append(airbench.Lookahead(config.epochs * steps_per_epoch, steps_per_epoch,
                                         every=config.lookahead_steps))
    if config.whiten and config.whiten_bias_epochs < config.epochs:
        chosen.append(airbench.FreezeBiasAt(config.whiten_bias_epochs))
    return chosen


# %% Evaluation: test split, held-out originals, test-time augmentation
# The test split is scored once; so are the 4,000 held-out images, lossless and as JPEGs, with the mirror
# image and (airbench) translated crops averaged in (`common/images.py: predict_tta`).
def evaluate_held_out(model, config, data):
    """Accuracy on each held-out set (the lossless originals and their JPEG copies), plain and with the
    run's test-time augmentation: {"heldout_<name>_accuracy[_tta]": value}."""
    metrics = {}
    for name, (x, y) in data.held_out.items():
        plain = model.predict(x.astype("float32"), batch_size=500, verbose=0)
        metrics[f"heldout_{name}_accuracy"] = float(np.mean(np.argmax(plain, -1) == y))
        if config.tta:
            tta = images.predict_tta(model, x, translate=config.tta_crops)
            metrics[f"heldout_{name}_accuracy_tta"] = float(np.mean(tta.argmax(-1) == y))
    return metrics


def write_misclassified(data, probabilities, path, count=32):
    """The test images the model is most sure about and still gets wrong, with true and predicted labels."""
    predicted = probabilities.argmax(-1)
    wrong = np.flatnonzero(predicted != data.y_test)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    names = data.class_names
    titles = [f"{names[data.y_test[i]]} -> {names[predicted[i]]}\n{probabilities[i, predicted[i]]:.2f}"
              for i in wrong]
    plots.image_grid(data.x_test[wrong], titles, path, title="Misclassified test images (true -> predicted)")


# %% Predict with a finished run
def add_predict_arguments(parser):
    parser.add_argument("images", nargs="+", help="image files (any size: resized to 32x32)")
    parser.add_argument("--run", required=True, help="a finished cifar10 run folder (holds model.keras)")


def predict(args):
    """Print the three most likely classes of each image with a trained run's model (the run is only read)."""
    import keras

    metrics = trained.open_run(args.run, Cifar10Config.TASK)
    # Bad images are refused before the model loads.
    batch = [read_image(path, IMAGE_SIZE) for path in args.images]
    model_path = Path(args.run) / "model.keras"
    model = trained.load_model(model_path)
    trained.expect_input(model, model_path, tuple(model.input_shape[1:]) == (*IMAGE_SIZE, 3),
                         f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} colour images")
    results = list(metrics.get("results", {}).values())
    names = results[0].get("class_names") if results and isinstance(results[0], dict) else None
    if not isinstance(names, list) or len(names) != model.output_shape[-1]:
        names = None  # an older or edited metrics.json: show class numbers
    probabilities = keras.ops.convert_to_numpy(model.predict(np.stack(batch), verbose=0))
    for path, p in zip(args.images, probabilities, strict=True):
        top = np.argsort(-p)[:3]
        shown = ", ".join(f"{names[i] if names else i} {p[i]:.2f}" for i in top.tolist())
        print(f"{printable(path)}\t{shown}")
    return 0


def read_image(path, size):
    """One image file as a float array of `size`, or a UserError naming the file."""
    import keras
    from PIL import UnidentifiedImageError

    if not Path(path).is_file():
        raise UserError(f"{path} is not an image file (no such file); expected a PNG, JPEG or other image.")
    images.check_pixel_count(path)
    try:
        return keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))
    except (OSError, ValueError, UnidentifiedImageError):  # PIL's message names a BytesIO, not the file
        raise UserError(f"{path} is not a readable image; expected a PNG, JPEG or other image "
                        "file.") from None


# %% Things to try
# The course's setting: `--model course_cnn --optimizer adam --learning-rate 1e-3 --schedule constant`, or
# `--config recipes/cifar10_course_cnn.json` to train it the course's way; the paper's ResNet-20:
# `--config recipes/cifar10_resnet20.json` (for a GPU). No augmentation, `--crop-padding 0 --no-flip`:
# validation accuracy stalls while training accuracy climbs. Also `--label-smoothing 0`, `--mixup 0.2`,
# `--cutout 8`, `--activation relu|leaky_relu|swish`.
#
# airbench94's methods, one flag each, all on in `--config recipes/cifar10_airbench94.json` (every value
# explained there); turn one off to see what it is worth (`python -m benchmarks.cifar10 --ablations` takes
# each away in turn and writes the table of benchmarks/RESULTS.md):
#
# - `--whiten`: the 2x2 stem is not learned but computed before training from the covariance of the training
#   images' 2x2 patches (its eigenvectors, scaled to unit variance: PatchWhitening in models/airbench.py), so
#   the net starts on decorrelated inputs; its bias trains for `--whiten-bias-epochs` epochs.
# - `--no-bn-scale --bn-bias-lr 64`: batch norm keeps only its shift, and the shift learns 64x faster. Keras
#   has no per-variable learning rate, so the shift is written as 8 * b: SGD's step on b is 8x larger and
#   moves the shift 8x as far, 64x in all, with weight decay unchanged.
# - `--dirac`: each 3x3 conv starts as the identity on its first channels, so the deep net begins shallow.
# - `--logit-scale`, `--label-smoothing`: small, soft outputs early in training. The learning rate is chosen
#   for logits scaled by 1/9: with `--logit-scale 1` each step moves the logits 81 times as far and training
#   barely starts.
# - `--optimizer nesterov --schedule triangular`: Nesterov SGD on a triangle (`--optimizer momentum` and
#   `--schedule onecycle` are the alternatives the ablations try).
# - `--lookahead`: every few steps the weights are reset to a moving average of themselves, heavier as
#   training ends; the run ends on the averaged weights.
# - `--alternating-flip`: each image is mirrored in every other epoch instead of on a coin flip, so no image
#   is shown the same way two epochs running. `--crop-padding 2`: random translation by up to 2 pixels.
# - `--tta --tta-crops`: the test image, its mirror and the mirror pairs shifted by one pixel, averaged.
#
# What the JPEG copy costs: `python -m benchmarks.cifar10 --jpeg-cost` trains the recipe on most of the
# 4,000 held-out images, once as lossless originals and once as their JPEG copies with the same seed; the
# JPEG-trained net scores well below on the originals (it learns the compression's artefacts). Whether the
# Keras port is what stops it short of the reference: `python -m benchmarks.cifar10 --twin` trains the same
# recipe written in plain PyTorch the way the reference is (`twins/airbench94.py`) on the same images. It
# scores the same as this lesson, so the distance lies in the data (a JPEG copy, 4,000 images fewer);
# `--epochs 20` closes part of it, float32 instead of bfloat16 does not (the rows are in RESULTS.md).
main = task_main(Cifar10Config, train, __doc__, commands={"predict": (add_predict_arguments, predict)})

if __name__ == "__main__":
    run(main)
