r"""Where a CIFAR-10 epoch goes: one Keras epoch beside one epoch of its plain-PyTorch twin, stage by stage
(issue 36).

    python -m benchmarks.stage_profile                  # 20 timed steps a stage, bfloat16 if the CPU has it
    python -m benchmarks.stage_profile --float32        # float32 on both sides
    python -m benchmarks.stage_profile --data-dir DIR   # the real images instead of random ones

Run it alone on the machine: on 2 cores a second busy process stalls every multi-threaded op of both
frameworks (the section records the load average at the start).

The same network and recipe on both sides: the lesson's model (`models/cnn.py: build_cnn` with
`recipes/cifar10_airbench94.json`, compiled as `tasks/cifar10.py` compiles it) and `twins/airbench94.py`'s
`AirbenchNet` with its `Recipe`; the same batch (1,024), images and precision. Each stage is timed alone,
`--steps` times after `--warmup` untimed runs, and reported as the median per step:

1. input + augmentation: the next batch of the lesson's training stream (`common/images.py: image_pipeline`
   through `tasks/cifar10.py: make_datasets`: shuffle, reflect-pad translation, alternating flips, one-hot
   labels, tf.data's own threads), against the next batch of the twin's `batches` generator;
2. forward in training mode (batch norm on batch statistics), no gradient recorded: a `tf.function` calling
   the model with `training=True`, against the twin's net in train mode under `torch.no_grad()`;
3. forward + backward: the gradients of the training loss (a `tf.function` with a GradientTape, the loss
   as the compiled model computes it), against `zero_grad` + `backward` of the twin's summed loss;
4. optimizer step on precomputed gradients: `optimizer.apply_gradients` in a `tf.function`, against
   `opt.step()` (Nesterov SGD with weight decay on both);
5. a full training step as fit runs it: `train_on_batch` (the compiled `train_function`, one step per call:
   loss, gradients, update, accuracy), against the body of the twin's training loop (forward, backward,
   step, schedule step, accuracy count);
6. lookahead: the lesson's `Lookahead` callback's `on_train_batch_end` after every step (a sync every 5
   steps, a counter read otherwise), against the twin's `Lookahead.sync` every 5 steps: the median sync
   shared over its 5 steps;
7. evaluation with test-time augmentation (mirror and one-pixel translations, 6 views): `predict_tta` on the
   evaluation images, against `logits_tta` (the normalisation of the images included), per 1,000 images.

Each side's seconds per epoch extrapolate its time per step to an epoch of 46,000 training images: 45 steps
in Keras (the lesson's pipeline keeps the last partial batch), 44 in the twin (the reference drops it). The
achieved FLOP rate of the full step (`benchmarks/cifar10_airbench.py: forward_flops`, three forward passes
per image for training, one for the frozen stem) is set against the machine's matmul peak measured in the
same process (`cifar10_airbench.matmul_peak`). Writes the "stage_profile" section of RESULTS.md.

What stays different, each side being written in its own framework's way: the lesson runs TensorFlow's
deterministic ops (`--deterministic`, its default), the twin PyTorch's default ones; Keras' loss is the mean
label-smoothed cross-entropy on one-hot labels, the twin's the sum on class indices; Keras writes the
batch-norm shifts' 64x learning rate as an extra scaled-bias layer (`models/airbench.py: ScaledBias`), the
twin as a parameter group; the Keras input pipeline runs on tf.data's threads, the twin's batches in the
training thread; Keras' lookahead copies every weight to NumPy and back, the twin's lerps in place; Keras'
TTA predicts batches of 500 and averages log-probabilities in NumPy, the twin's batches of 2,000 and
averages logits in PyTorch.
"""

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

import numpy as np  # noqa: E402

from benchmarks.common import command_line, facts_block, publish, stamp  # noqa: E402
from common.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cifar10_airbench94.json"
SECTION = "stage_profile"
EPOCH_IMAGES = 46000  # the recipe's training images: CIFAR-10's 50,000 less the 4,000 lossless held out
EVAL_UNIT = 1000  # evaluation is reported per this many images
TARGET_RATIO = 1.1  # issue 36: a Keras training step at most 1.1x the twin's
TARGET_PEAK_SHARE = 0.5  # issue 36: half the bfloat16 matmul peak
# (key, label) of each stage, in the order they are timed and shown.
STAGES = (("input", "1. input + augmentation"),
          ("forward", "2. forward (training mode)"),
          ("forward_backward", "3. forward + backward"),
          ("optimizer", "4. optimizer step"),
          ("full_step", "5. full training step"),
          ("lookahead", "6. lookahead"),
          ("evaluation", f"7. evaluation with TTA (per {EVAL_UNIT:,} images)"))
TRAINING_STAGES = ("input", "full_step", "lookahead")  # what an epoch of fit runs, evaluation aside
COLUMNS = ["stage", "Keras ms/step", "twin ms/step", "Keras / twin", "of the Keras full step",
           "Keras s/epoch", "twin s/epoch"]


def median_time(function, steps, warmup):
    """The median seconds of `steps` calls of `function` after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------------ data
def random_splits(images, eval_images, seed=0):
    """CIFAR-shaped random uint8 images with random labels, as the lesson's `Splits`: `images` to train on
    and `eval_images` to evaluate (enough for timing: no stage's cost depends on the pixels)."""
    from datasets import cifar10 as cifar10_data

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (images, *cifar10_data.IMAGE_SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, len(cifar10_data.CLASS_NAMES), images)
    x_eval = rng.integers(0, 256, (eval_images, *cifar10_data.IMAGE_SIZE, 3), dtype=np.uint8)
    y_eval = rng.integers(0, len(cifar10_data.CLASS_NAMES), eval_images)
    return cifar10_data.Splits(x, y, x[:0], y[:0], x_eval, y_eval, list(cifar10_data.CLASS_NAMES),
                               source="random", note="random uint8 images")


def real_splits(config, images, eval_images):
    """The recipe's splits of the real data (46,000 training images, the 10,000 test images), cut to `images`
    and `eval_images` when those are given."""
    from datasets import cifar10 as cifar10_data

    splits = cifar10_data.load(config)
    x, y = splits.x_train[:images], splits.y_train[:images]
    x_eval, y_eval = splits.x_test[:eval_images], splits.y_test[:eval_images]
    return cifar10_data.Splits(x, y, x[:0], y[:0], x_eval, y_eval, splits.class_names, source=splits.source,
                               note=splits.note or "the original images")


# ----------------------------------------------------------------------------------------------------- Keras
class KerasSide:
    """The lesson's model, compiled as the lesson compiles it (the recipe's one step per call, or the
    config's `steps_per_execution` through `training.steps_per_call`), and its training stream. Stages 1, 5
    and 6 run on any Keras backend (benchmarks/keras_speed.py times stage 5 on each); 2 to 4 are TensorFlow
    functions."""

    name = "keras"

    def __init__(self, config, splits, steps, warmup, eval_repeats=1):
        import keras
        import tensorflow as tf

        from common import images, registry, training
        from models import airbench, cnn
        from tasks import cifar10

        self.tf, self.keras, self.images, self.airbench = tf, keras, images, airbench
        self.config, self.splits = config, splits
        self.steps, self.warmup, self.eval_repeats = steps, warmup, eval_repeats
        self.model = training.build_seeded(cnn.build_cnn, config, splits)  # seeds, sets the precision policy
        self.data = cifar10.make_datasets(config, splits)
        with training.scope():
            self.model.compile(optimizer=training.optimizer(config, self.data.steps_per_epoch),
                               loss=registry.loss(config.loss, config.label_smoothing),
                               metrics=[training.accuracy(config.loss, outputs=splits.num_classes)],
                               jit_compile=training.jit_compile(config),
                               steps_per_execution=training.steps_per_call(config, self.data.steps_per_epoch))
        batch = iter(self.data.train)
        self.x, self.y = next(batch)  # one augmented batch of the stream for the compute stages
        del batch
        if keras.backend.backend() != "tensorflow":  # the backend's own tensors, converted once
            self.x, self.y = (keras.ops.convert_to_tensor(t.numpy()) for t in (self.x, self.y))
        self.model.train_on_batch(self.x, self.y)  # builds the optimizer and traces the train function
        self.initial_weights = self.model.get_weights()
        self.variables = self.model.trainable_variables
        jit = bool(self.model.jit_compile)
        model, variables = self.model, self.variables

        @tf.function(jit_compile=jit)
        def forward(x):
            return tf.reduce_sum(tf.cast(model(x, training=True), tf.float32))

        @tf.function(jit_compile=jit)
        def gradients(x, y):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.optimizer.scale_loss(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True))
            return tape.gradient(loss, variables)

        @tf.function(jit_compile=jit)
        def apply(grads):
            model.optimizer.apply_gradients(zip(grads, variables))
            return model.optimizer.iterations

        self._forward, self._gradients, self._apply = forward, gradients, apply

    def input(self):
        # (the iterator, and tf.data's threads with it, goes when this returns, before the twin runs)
        return median_time(iter(self.data.train).__next__, self.steps, self.warmup)

    def forward(self):
        return median_time(lambda: self._forward(self.x).numpy(), self.steps, self.warmup)

    def forward_backward(self):
        def step():
            self.grads = self._gradients(self.x, self.y)
            self.grads[-1].numpy()

        return median_time(step, self.steps, self.warmup)

    def optimizer(self):
        return median_time(lambda: self._apply(self.grads).numpy(), self.steps, self.warmup)

    def full_step(self):
        self.model.set_weights(self.initial_weights)  # as trained from the start, not after stage 4's steps
        return median_time(lambda: self.model.train_on_batch(self.x, self.y), self.steps, self.warmup)

    def lookahead(self):
        """on_train_batch_end after each step: `every` calls per sync, timed apart; the sync's median spread
        over its steps plus the median of the calls that only read the step counter."""
        every = self.config.lookahead_steps
        callback = self.airbench.Lookahead(10**9, 10**9, every=every)  # no epoch end, no final sync in reach
        callback.set_model(self.model)
        callback.on_train_batch_begin(0)
        iterations = self.model.optimizer.iterations
        syncs, reads = [], []
        for call in range((self.warmup + self.steps) * every):
            iterations.assign_add(1)
            before = callback.last_sync
            started = time.perf_counter()
            callback.on_train_batch_end(call)
            seconds = time.perf_counter() - started
            if call >= self.warmup * every:
                (syncs if callback.last_sync != before else reads).append(seconds)
        callback.on_train_end()
        return (statistics.median(syncs) + (every - 1) * (statistics.median(reads) if reads else 0.0)) / every

    def evaluation(self):
        """Seconds per EVAL_UNIT images of the lesson's TTA (`predict_tta`) over the evaluation images."""
        x = self.splits.x_test
        translate = self.config.tta_crops
        self.images.predict_tta(self.model, x[:EVAL_UNIT], translate=translate)  # traces predict
        seconds = median_time(lambda: self.images.predict_tta(self.model, x, translate=translate),
                              self.eval_repeats, 0)
        return seconds * EVAL_UNIT / len(x)

    def flops_per_image(self):
        """Training FLOPs of one image: 3 forward passes, 1 for the frozen stem (cifar10_airbench's count)."""
        from benchmarks.cifar10_airbench import forward_flops

        forward, stem = forward_flops(self.model)
        return 3 * (forward - stem) + stem, forward

    def steps_per_epoch(self, images=EPOCH_IMAGES):
        return -(-images // self.config.batch_size)  # the pipeline keeps the last partial batch


# ------------------------------------------------------------------------------------------------- the twin
def twin_recipe(config):
    """The twin's `Recipe` for the lesson's config: its batch and widths, and bfloat16 autocast where the
    lesson computes in bfloat16."""
    from common import hardware
    from twins import airbench94 as twin

    return twin.Recipe(batch_size=config.batch_size, widths=tuple(config.widths),
                       autocast=hardware.compute_dtype(config) == "bfloat16")


class TwinSide:
    """twins/airbench94.py's net, optimizer, schedule and lookahead, set up as its `run` and `train` do."""

    name = "twin"

    def __init__(self, recipe, splits, steps, warmup, seed=0, eval_repeats=1):
        import torch
        from torch import nn

        from twins import airbench94 as twin

        self.torch, self.twin, self.recipe, self.splits = torch, twin, recipe, splits
        self.steps, self.warmup, self.eval_repeats = steps, warmup, eval_repeats
        torch.manual_seed(seed)
        # the training images' own channel statistics (0..255), as in `twin.run`
        self.mean = torch.tensor(splits.mean / 255, dtype=torch.float32)
        self.std = torch.tensor(np.sqrt(splits.variance) / 255, dtype=torch.float32)
        self.train_images = twin.normalised(splits.x_train, self.mean, self.std).contiguous(
            memory_format=torch.channels_last)
        self.labels = torch.from_numpy(splits.y_train.astype("int64"))
        self.net = twin.AirbenchNet(recipe, num_classes=splits.num_classes).to(
            memory_format=torch.channels_last)
        self.net.whiten_from(self.train_images[:twin.WHITEN_IMAGES])
        self.net.train()
        self.optimizer_ = twin.optimizer_for(self.net, recipe)
        total_steps = max(twin.total_steps_of(len(self.train_images), recipe), 10)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer_, lambda step: twin.triangle(step, total_steps, recipe.warmup))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")
        self.generator = torch.Generator().manual_seed(seed)
        self.first_epoch_flips = torch.rand(len(self.train_images), generator=self.generator) < 0.5
        self.x, self.y = next(self._stream())
        self.initial_state = {k: v.clone() for k, v in self.net.state_dict().items()}

    def _stream(self):
        """The twin's batches, epoch after epoch."""
        epoch = 0
        while True:
            yield from self.twin.batches(self.train_images, self.labels, self.recipe, epoch,
                                         self.first_epoch_flips, self.generator)
            epoch += 1

    def input(self):
        stream = self._stream()
        return median_time(lambda: next(stream), self.steps, self.warmup)

    def forward(self):
        def step():
            with self.torch.no_grad(), self.twin.compute(self.recipe):
                self.net(self.x)

        return median_time(step, self.steps, self.warmup)

    def _loss(self):
        with self.twin.compute(self.recipe):
            logits = self.net(self.x)
            return logits, self.loss_fn(logits.float(), self.y)

    def forward_backward(self):
        def step():
            _, loss = self._loss()
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()

        return median_time(step, self.steps, self.warmup)

    def optimizer(self):
        return median_time(self.optimizer_.step, self.steps, self.warmup)  # on the last backward's gradients

    def full_step(self):
        self.net.load_state_dict(self.initial_state)

        def step():  # the body of `twin.train`'s loop, lookahead apart
            logits, loss = self._loss()
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            self.schedule.step()
            int((logits.argmax(1) == self.y).sum())

        return median_time(step, self.steps, self.warmup)

    def lookahead(self):
        lookahead = self.twin.Lookahead(self.net)
        decay = self.recipe.lookahead_rate ** self.recipe.lookahead_every * 0.5 ** 3  # any value: same work
        return median_time(lambda: lookahead.sync(self.net, decay), self.steps, self.warmup) / (
            self.recipe.lookahead_every)

    def evaluation(self):
        x = self.splits.x_test

        def evaluate():
            self.twin.logits_tta(self.net, self.twin.normalised(x, self.mean, self.std), self.recipe)

        self.twin.logits_tta(self.net, self.twin.normalised(x[:EVAL_UNIT], self.mean, self.std), self.recipe)
        seconds = median_time(evaluate, self.eval_repeats, 0)
        self.net.train()
        return seconds * EVAL_UNIT / len(x)

    def steps_per_epoch(self, images=EPOCH_IMAGES):
        return images // self.recipe.batch_size  # full batches only, as the reference


# --------------------------------------------------------------------------------------------- the profile
def profile(steps=20, warmup=3, images=None, eval_images=10000, float32=False, data_dir=None, overrides=None,
            eval_repeats=1, matmul_size=2048, log=print):
    """Time every stage on both sides; the raw numbers (seconds per step, per EVAL_UNIT images for the
    evaluation) and what the section says about them.

    Args:
        steps, warmup: timed and untimed runs of each stage.
        images: training images the stages draw from (default: 46,000 random ones, or all the real ones).
        eval_images: images the TTA evaluation runs over.
        float32: float32 on both sides (default: bfloat16 where the CPU computes it).
        data_dir: the data root to read the real images from (default: $KERAS_TUTORIALS_DATA, else random).
        overrides: further config settings (a test's small widths and batch).
        eval_repeats: timed runs of the evaluation (after one untimed run on EVAL_UNIT images).
        matmul_size: the side of the matrices of the peak measurement.
    """
    import keras
    import tensorflow as tf
    import torch

    from benchmarks.cifar10_airbench import matmul_peak
    from common import hardware
    from common.config import build_config
    from common.data_root import ENV_DATA
    from common.errors import UserError
    from tasks import cifar10

    load_average = os.getloadavg()[0]  # another busy process on 2 cores shows in every stage
    if load_average > 0.5:
        log(f"load average {load_average:.2f}: something else is running; the times will show it")
    gpus = hardware.accelerators("tensorflow")
    if gpus:  # a CPU profile: the twin runs on the CPU, so Keras does too
        tf.config.set_visible_devices([], "GPU")
    bfloat16 = not float32 and hardware.cpu_computes_bfloat16()
    precision = "bfloat16" if bfloat16 else "float32"
    why = ("--float32" if float32 else "the CPU has AVX-512 BF16 or AMX" if bfloat16
           else "the CPU has no bfloat16 arithmetic")
    settings = dict(overrides or {}, mixed_precision=bfloat16,
                    **({"jit_compile": "false"} if gpus else {}))  # what "auto" gives on a CPU-only machine
    root = data_dir or os.environ.get(ENV_DATA)
    config = build_config(cifar10.Cifar10Config, config_file=RECIPE, overrides=dict(settings, data_dir=root))
    splits = None
    if root:
        try:
            splits = real_splits(config, images, eval_images)
        except UserError as error:
            if data_dir:
                raise
            log(f"{ENV_DATA}: {error} Timing random images instead.")
    splits = splits or random_splits(images or EPOCH_IMAGES, eval_images, config.seed)
    if len(splits.y_train) < config.batch_size:
        raise UserError(f"the stages need at least one batch: {len(splits.y_train)} images for a batch of "
                        f"{config.batch_size}.")
    log(f"{len(splits.y_train):,} training and {len(splits.y_test):,} evaluation images ({splits.note}); "
        f"{precision}; batch {config.batch_size}; widths {','.join(map(str, config.widths))}")
    peaks = {dtype: matmul_peak(dtype, matmul_size) for dtype in ("bfloat16", "float32")}
    keras_side = KerasSide(config, splits, steps, warmup, eval_repeats)
    twin_side = TwinSide(twin_recipe(config), splits, steps, warmup, config.seed, eval_repeats)
    times = {"keras": {}, "twin": {}}
    for stage, label in STAGES:  # side by side, stage by stage: a slower spell of the machine hits both
        for side in (keras_side, twin_side):
            times[side.name][stage] = getattr(side, stage)()
            time.sleep(0.2)  # let the other framework's threads go idle
        log(f"{label}: Keras {times['keras'][stage] * 1e3:.2f} ms, twin {times['twin'][stage] * 1e3:.2f} ms")
    train_flops, forward_flops = keras_side.flops_per_image()
    return {"times": times, "precision": precision, "why_precision": why, "data": splits.note,
            "real_data": splits.source != "random", "images": len(splits.y_train),
            "eval_images": len(splits.y_test), "batch_size": config.batch_size,
            "widths": list(config.widths), "steps": steps, "warmup": warmup, "eval_repeats": eval_repeats,
            "steps_per_epoch": {"keras": keras_side.steps_per_epoch(), "twin": twin_side.steps_per_epoch()},
            "train_flops_per_image": train_flops, "forward_flops_per_image": forward_flops,
            "peaks": peaks, "load_average": load_average, "matmul_size": matmul_size,
            "gpus_hidden": len(gpus),
            "keras_jit": bool(keras_side.model.jit_compile), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "keras": keras.__version__,
            "lookahead_every": config.lookahead_steps, "tta_crops": config.tta_crops}


# ---------------------------------------------------------------------------------------------- the section
def _ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def rows(result):
    """The table: per stage each side's ms per step, the ratio, the share of the Keras full step and the
    seconds per epoch (the evaluation: ms per EVAL_UNIT images, and seconds for the 10,000 test images); a
    last row adds up stages 1, 5 and 6."""
    times, per_epoch = result["times"], result["steps_per_epoch"]
    full = times["keras"]["full_step"]

    def row(label, keras_seconds, twin_seconds, scale, share=True):
        return {"stage": label, "Keras ms/step": _ms(keras_seconds), "twin ms/step": _ms(twin_seconds),
                "Keras / twin": f"{keras_seconds / twin_seconds:.2f}x",
                "of the Keras full step": f"{keras_seconds / full:.0%}" if share else "",
                "Keras s/epoch": f"{keras_seconds * scale['keras']:.1f}",
                "twin s/epoch": f"{twin_seconds * scale['twin']:.1f}"}

    table = []
    for stage, label in STAGES:
        if stage == "evaluation":  # per EVAL_UNIT images; the per-epoch columns: the 10,000 test images once
            table.append(row(label, times["keras"][stage], times["twin"][stage],
                             {"keras": 10000 / EVAL_UNIT, "twin": 10000 / EVAL_UNIT}, share=False))
        else:
            table.append(row(label, times["keras"][stage], times["twin"][stage], per_epoch))
    added = {side: sum(times[side][stage] for stage in TRAINING_STAGES) for side in times}
    table.append(row("1 + 5 + 6: training, the stages added up", added["keras"], added["twin"], per_epoch))
    return table


def targets(result):
    """The two targets of issue 36: the full step's ratio Keras / twin, and the FLOP rate of each side's full
    step as a share of the bfloat16 matmul peak."""
    times, batch = result["times"], result["batch_size"]
    ratio = times["keras"]["full_step"] / times["twin"]["full_step"]
    rate = {side: batch * result["train_flops_per_image"] / times[side]["full_step"] for side in times}
    peak = result["peaks"]["bfloat16"]
    return {"ratio": ratio, "ratio_met": ratio <= TARGET_RATIO, "rate": rate,
            "share": {side: value / peak for side, value in rate.items()},
            "share_met": rate["keras"] / peak >= TARGET_PEAK_SHARE}


def render(result, measured):
    """The stage_profile section: its stamp, what was measured and how, the table and the two targets."""
    goal, peaks, steps = targets(result), result["peaks"], result["steps_per_epoch"]
    met = {True: "met", False: "not met"}
    data = (f"the real images ({result['data']})" if result["real_data"]
            else "random uint8 images of CIFAR's shape with random labels (no stage's time depends on the "
                 "pixels)")
    hidden = (f" The machine's {result['gpus_hidden']} GPU(s) were hidden from TensorFlow: a CPU profile."
              if result["gpus_hidden"] else "")
    warmed = min(EVAL_UNIT, result["eval_images"])
    about = (
        "The airbench94 recipe (`recipes/cifar10_airbench94.json`) as the CIFAR-10 lesson builds and "
        f"compiles it (Keras {result['keras']}, XLA {'on' if result['keras_jit'] else 'off'}, one step per "
        "call) beside its plain-PyTorch twin (`twins/airbench94.py`, PyTorch "
        f"{result['torch']}, {result['torch_threads']} threads): the same network (widths "
        f"{','.join(map(str, result['widths']))}), batch {result['batch_size']:,}, {result['precision']} on "
        f"both sides ({result['why_precision']}), {result['images']:,} training and "
        f"{result['eval_images']:,} evaluation images: {data}.{hidden} Load average at the start: "
        f"{result['load_average']:.2f}.\n\n"
        f"Each stage is timed alone: the median of {result['steps']} steps after {result['warmup']} untimed "
        f"ones (the evaluation: {result['eval_repeats']} timed run(s) over all its images after an untimed "
        f"one over {warmed:,}). s/epoch = ms/step x the steps of an epoch of {EPOCH_IMAGES:,} images: "
        f"{steps['keras']} in Keras, whose pipeline keeps the last partial batch, {steps['twin']} in the "
        f"twin, which drops it (the evaluation: ms per {EVAL_UNIT:,} images, s for 10,000). Stage 4 applies "
        f"the gradients of stage 3; stage 6 is the cost per step of a sync every {result['lookahead_every']} "
        "steps. The last row adds stages 1, 5 and 6: in fit the Keras input pipeline runs ahead on its own "
        "threads, on the same cores, so the Keras sum is an upper bound, while the twin's loop waits for "
        "its input. How each stage is timed: the docstring of `benchmarks/stage_profile.py`.")
    facts = [
        f"- full training step: Keras / twin = {goal['ratio']:.2f}x (target: at most {TARGET_RATIO}x): "
        f"{met[goal['ratio_met']]}",
        f"- achieved by the full step: Keras {goal['rate']['keras'] / 1e9:.0f} GFLOP/s, "
        f"{goal['share']['keras']:.0%} of the bfloat16 matmul peak (target: {TARGET_PEAK_SHARE:.0%}): "
        f"{met[goal['share_met']]}; the twin {goal['rate']['twin'] / 1e9:.0f} GFLOP/s, "
        f"{goal['share']['twin']:.0%}",
        f"- matmul peak here (TensorFlow, {result['matmul_size']:,} x {result['matmul_size']:,}, best of "
        f"10): {peaks['bfloat16'] / 1e9:.0f} GFLOP/s in bfloat16, {peaks['float32'] / 1e9:.0f} GFLOP/s in "
        f"float32; FLOPs per image: {result['forward_flops_per_image'] / 1e6:.0f} M forward, "
        f"{result['train_flops_per_image'] / 1e6:.0f} M per training step (the convolutions and the linear "
        "layer: three forward passes, one for the frozen stem)"]
    return "\n".join(["## Stage profile: one Keras epoch beside one twin epoch (CIFAR-10, airbench94)", "",
                      facts_block(measured, "cifar10"), about, "", format_table(rows(result), COLUMNS), "",
                      *facts]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per stage (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    parser.add_argument("--images", type=int,
                        help=f"training images to draw batches from (default {EPOCH_IMAGES:,})")
    parser.add_argument("--eval-images", type=int, default=10000,
                        help="images of the TTA evaluation (default 10,000)")
    parser.add_argument("--eval-repeats", type=int, default=1, help="timed evaluation runs (default 1)")
    parser.add_argument("--float32", action="store_true", help="float32 on both sides (default: bfloat16 "
                        "where the CPU computes it)")
    parser.add_argument("--data-dir", help="the data root with CIFAR-10 (default: $KERAS_TUTORIALS_DATA; "
                        "neither: random images)")
    args = parser.parse_args(argv)
    for name in ("steps", "eval_images", "eval_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    command = command_line("benchmarks.stage_profile")
    if args.data_dir:  # no path of this machine in the results
        command = command.replace(shlex.quote(args.data_dir), "DIR")
    measured = stamp(command)
    result = profile(steps=args.steps, warmup=max(args.warmup, 0), images=args.images,
                     eval_images=args.eval_images, float32=args.float32, data_dir=args.data_dir,
                     eval_repeats=args.eval_repeats)
    publish(SECTION, render(result, measured))
    return 0


if __name__ == "__main__":
    run(main)
