"""Framework comparison: each lesson's quick model on Keras' TensorFlow, JAX and PyTorch backends and as a
plain PyTorch model, measured side by side on this machine.

    python -m benchmarks.frameworks  # every lesson, every backend + PyTorch native (requirements-compare.txt)
    python -m benchmarks.frameworks --steps 10 --models cifar10,imdb --backends tensorflow,jax

Each model is the one the lesson's default run trains: the lesson's quick config
(`build_config(<Lesson>Config, "quick")`, with its per-model profile: airbench94 for CIFAR-10's fast net)
built by the lesson's factory in models/ the way the lesson builds it (`training.build_seeded`: its seed,
precision policy and TensorFlow's deterministic ops), compiled with its loss and optimizer. The
PyTorch-native model is its twin: the nets of twins/torch_models.py, and for CIFAR-10 `twins/airbench94.py:
AirbenchNet` with that module's optimizer, summed loss and bfloat16 autocast where the lesson computes in
bfloat16. Inputs are synthetic, of the lesson's shape; batch sizes are the lessons'.

For each model: training throughput (examples/s over timed steps, after warm-up steps that compile the
step function) and inference latency (median time of one forward pass on one example and on one batch).
Each Keras backend runs in its own process (a backend is fixed at import). A model that cannot be built or
run on one backend gets a row that says why, in one line, and the others go on. Also writes the Keras vs
PyTorch parameter-count table of every twin. Results: the frameworks section of RESULTS.md.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402
from common.errors import UserError  # noqa: E402

quiet_tensorflow()

ROOT = Path(__file__).resolve().parents[1]
CAPTION_POSITIONS, CAPTION_FEATURES = 49, 1280  # EfficientNet-Lite0's 7x7 grid of 1280 features
# Flickr8k: 2,529 training-caption words seen 5 times or more, padding, [UNK], <start>, <end>
CAPTION_VOCABULARY = 2533
PHONE_FEATURES, PHONE_CLASSES = 20, 4
# Channel means and variances of CIFAR-10's training images (0..255): the Normalization layer's, the twin's.
CIFAR_MEAN, CIFAR_VARIANCE = (125.0, 123.0, 114.0), (3900.0, 3800.0, 4400.0)
LESSONS = ("phone_price", "cifar10", "imdb", "captioning")
CONFIGS = {"phone_price": "PhonePriceConfig", "cifar10": "Cifar10Config", "imdb": "ImdbConfig",
           "captioning": "CaptioningConfig"}
BACKENDS = ("tensorflow", "jax", "torch")
NATIVE = "PyTorch native"
COLUMNS = ["model", "implementation", "train examples/s", "vs PyTorch", "latency 1 example (ms)",
           "latency 1 batch (ms)", "params", "batch", "note"]


# ---------------------------------------------------------------------------------------------- the models
def lesson_config(lesson, overrides=None):
    """The config of `lesson`'s default run: its quick profile (and the profile for the model it trains),
    then `overrides` (a test's small widths and batches)."""
    import importlib

    from common.config import build_config

    module = importlib.import_module(f"tasks.{lesson}")
    return build_config(getattr(module, CONFIGS[lesson]), profile="quick", overrides=overrides)


def models_to_compare(lessons=LESSONS, overrides=None):
    """One spec per lesson (a dict): name, lesson, config, batch, classes, inputs (an array or a tuple of
    them), targets (optional), native_inputs (optional: the inputs as the twin reads them), fit_repeats (a
    fit call covers the timed batches this many times: a tiny model needs more), compile (what the lesson
    compiles with besides its config), keras (factory, data) for `training.build_seeded`, native (the
    PyTorch model's name)."""
    import numpy as np

    rng = np.random.default_rng(0)
    overrides = overrides or {}
    return [SPECS[lesson](lesson_config(lesson, overrides.get(lesson)), rng) for lesson in lessons]


def is_airbench94(config):
    """The CIFAR-10 config builds airbench94's net: the fast net with the whitening stem."""
    return config.model == "fast" and config.whiten


def _phone_spec(config, rng):
    from types import SimpleNamespace

    from models import fnn

    x = rng.normal(1000, 500, (config.batch_size, PHONE_FEATURES)).astype("float32")
    data = SimpleNamespace(num_features=PHONE_FEATURES, num_classes=PHONE_CLASSES, x_train=x)
    return dict(name="phone_price fnn", lesson="phone_price", config=config, batch=config.batch_size,
                classes=PHONE_CLASSES, inputs=x, fit_repeats=20,
                keras=(fnn.build_fnn, data), native="twins/torch_models.py: FNN")


def _cifar_spec(config, rng):
    from types import SimpleNamespace

    import numpy as np

    from models import cnn

    x = rng.uniform(0, 255, (config.batch_size, 32, 32, 3)).astype("float32")
    # The whitening stem is computed from the training images: here the random batch.
    data = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.array(CIFAR_MEAN),
                           variance=np.array(CIFAR_VARIANCE), x_train=x)
    return dict(name="cifar10 airbench94" if is_airbench94(config) else f"cifar10 {config.model}",
                lesson="cifar10", config=config, batch=config.batch_size,
                classes=10, inputs=x, native_inputs=_airbench_inputs, keras=(cnn.build_cnn, data),
                native="twins/airbench94.py: AirbenchNet")


def _imdb_spec(config, rng):
    from models import text

    def factory(c, _):  # the lesson's network on token ids: TextVectorization needs TensorFlow
        return text.build_token_classifier(c, c.vocabulary_size, c.sequence_length)

    return dict(name=f"imdb {config.model}", lesson="imdb", config=config, batch=config.batch_size, classes=1,
                inputs=_token_ids(rng, config.batch_size, config.sequence_length, config.vocabulary_size),
                keras=(factory, None), native="twins/torch_models.py: TextRNN")


def _captioning_spec(config, rng):
    from models import captioning

    # The decoder on cached EfficientNet-Lite0 features (7x7 positions of 1280), captions of <start> +
    # max_words + <end> token ids, padded at the end.
    features = rng.normal(0, 1, (config.batch_size, CAPTION_POSITIONS, CAPTION_FEATURES)).astype("float32")
    captions = _token_ids(rng, config.batch_size, config.max_words + 2, CAPTION_VOCABULARY)
    captions[:, 0] = 2  # <start>

    def factory(c, _):
        return captioning.build_captioner(c, CAPTION_VOCABULARY, (CAPTION_POSITIONS, CAPTION_FEATURES))

    decoder = config.cell if config.decoder == "rnn" else config.decoder
    return dict(name=f"captioning {decoder} decoder", lesson="captioning", config=config,
                batch=config.batch_size, classes=CAPTION_VOCABULARY, inputs=(features, captions[:, :-1]),
                targets=captions[:, 1:], keras=(factory, None),
                compile=dict(loss=captioning.MaskedCrossentropy(label_smoothing=config.label_smoothing),
                             metrics=(captioning.masked_accuracy,)),
                native="twins/torch_models.py: Captioner")


SPECS = {"phone_price": _phone_spec, "cifar10": _cifar_spec, "imdb": _imdb_spec,
         "captioning": _captioning_spec}


def _token_ids(rng, batch, length, vocabulary):
    ids = rng.integers(2, vocabulary, (batch, length))
    for row, keep in enumerate(rng.integers(length // 3, length + 1, batch)):
        ids[row, keep:] = 0  # reviews of different lengths, padded at the end
    return ids.astype("int32")


def keras_model(spec):
    """The lesson's model, built as the lesson builds it (seed, precision policy, distribution scope)."""
    from common import training

    factory, data = spec["keras"]
    return training.build_seeded(factory, spec["config"], data)


def torch_model(spec):
    """The PyTorch-native model of `spec`: the lesson's twin."""
    from twins import torch_models

    config = spec["config"]
    if spec["lesson"] == "cifar10":
        return _airbench_twin(spec)
    if spec["lesson"] == "captioning":
        if config.decoder != "rnn":
            raise UserError(f"twins/torch_models.py: Captioner has the rnn decoder only, not "
                            f"{config.decoder}.")
        return torch_models.Captioner(config, CAPTION_VOCABULARY, CAPTION_FEATURES)
    if spec["lesson"] == "phone_price":
        return torch_models.FNN(config, PHONE_FEATURES, PHONE_CLASSES)
    return torch_models.TextRNN(config, config.vocabulary_size)


def _airbench_twin(spec):
    """twins/airbench94.py's net for the lesson's config (its widths, batch, bfloat16 autocast where the
    lesson computes in bfloat16), its whitening stem computed from the batch, channels-last as the twin
    trains."""
    import torch

    from benchmarks import stage_profile
    from twins import airbench94

    if not is_airbench94(spec["config"]):
        raise UserError(f"twins/airbench94.py is airbench94's net; the lesson's quick run trains "
                        f"'{spec['config'].model}' without its whitening stem.")
    recipe = stage_profile.twin_recipe(spec["config"])
    net = airbench94.AirbenchNet(recipe, num_classes=spec["classes"]).to(memory_format=torch.channels_last)
    net.whiten_from(_airbench_inputs(spec["inputs"])[:airbench94.WHITEN_IMAGES])
    net.recipe = recipe
    return net


def _airbench_inputs(x):
    """NHWC pixels (0..255) as the twin reads them: normalised by the channel statistics, NCHW,
    channels-last in memory."""
    import numpy as np
    import torch

    normalised = (x - np.array(CIFAR_MEAN, "float32")) / np.sqrt(np.array(CIFAR_VARIANCE, "float32"))
    return torch.as_tensor(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last)


def labels(spec):
    import numpy as np

    if "targets" in spec:
        return spec["targets"]
    y = np.arange(spec["batch"]) % max(2, spec["classes"])
    return y.astype("float32")[:, None] if spec["classes"] == 1 else y


# ------------------------------------------------------------------------------------------------- workers
def keras_worker(steps, warmup, lessons=LESSONS, overrides=None):
    """Every model on this process's Keras backend: its `train_on_batch` row and its `fit` row."""
    import keras

    return _each_model(lessons, overrides, f"Keras {keras.backend.backend()}",
                       lambda spec: _keras_rows(spec, steps, warmup))


def torch_worker(steps, warmup, lessons=LESSONS, overrides=None):
    """Every lesson's PyTorch-native model (its twin)."""
    import torch

    torch.manual_seed(0)
    return _each_model(lessons, overrides, NATIVE, lambda spec: [_torch_row(spec, steps, warmup)])


def _each_model(lessons, overrides, implementation, rows_of):
    """`rows_of(spec)` for each lesson's model; a model that cannot be built, compiled or run on this
    backend gives one row that says why, in one line, and the others go on."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for lesson in lessons:
        spec = {"name": lesson, "batch": ""}
        try:
            spec = SPECS[lesson](lesson_config(lesson, (overrides or {}).get(lesson)), rng)
            rows += rows_of(spec)
        except Exception as error:  # noqa: BLE001 - one model's failure is its row; the others go on
            rows.append(_failed(spec, implementation, error))
    return rows


def _keras_rows(spec, steps, warmup):
    import keras
    import numpy as np

    from common import registry, training

    model = keras_model(spec)
    config = spec["config"]
    training.compile_model(model, config, steps_per_epoch=100, **spec.get("compile", {}))
    y = labels(spec)
    one_hot = (registry.loss_target(registry.check_name("loss", getattr(config, "loss", "ce")))
               == "one_hot")
    if spec["classes"] > 1 and one_hot and "targets" not in spec:  # the CIFAR recipe's loss: one-hot rows
        y = np.eye(spec["classes"], dtype="float32")[y]
    x = spec["inputs"]
    row = _measure(spec, f"Keras {keras.backend.backend()}", lambda: model.train_on_batch(x, y),
                   lambda batch: model.predict_on_batch(batch), x, steps, warmup,
                   (model.count_params(), trainable_count(model)))
    return [row, _measure_fit(spec, model, config, x, y, steps)]


def _failed(spec, implementation, error):
    """The row of a model that could not be built or run: the error in one line."""
    from benchmarks.keras_speed import reason

    row = {"model": spec["name"], "implementation": implementation, "batch": spec["batch"],
           "note": f"not run: {reason(error)}"}
    print(json.dumps(row), flush=True)
    return row


def _measure_fit(spec, model, config, x, y, steps):
    """What a lesson does: `fit` over many batches with `steps_per_execution` = `steps`, so the Python loop
    runs once per `steps` batches instead of once per batch (Keras' own feature; the PyTorch backend
    allows only 1). A tiny model's fit covers more batches, so the per-call set-up does not dominate."""
    import dataclasses

    import keras
    import numpy as np

    from common import training

    training.compile_model(model, dataclasses.replace(config, steps_per_execution=steps), steps_per_epoch=100,
                           **spec.get("compile", {}))
    batches = steps * spec.get("fit_repeats", 1)
    xs, ys = _map(lambda a: np.concatenate([a] * batches), x), np.concatenate([y] * batches)
    model.fit(xs, ys, batch_size=spec["batch"], epochs=1, shuffle=False, verbose=0)  # compiles
    times = []
    for _ in range(3):
        started = time.perf_counter()
        model.fit(xs, ys, batch_size=spec["batch"], epochs=1, shuffle=False, verbose=0)
        times.append(time.perf_counter() - started)
    row = {"model": spec["name"],
           "implementation": f"Keras {keras.backend.backend()} fit, "
                             f"{model.steps_per_execution} step(s) per execution",
           "train examples/s": round(batches * spec["batch"] / statistics.median(times), 1),
           "batch": spec["batch"], "params": int(model.count_params())}
    print(json.dumps(row), flush=True)
    return row


def _map(function, x):
    """Apply to an input array, or to each array of a multi-input tuple."""
    return tuple(function(a) for a in x) if isinstance(x, tuple) else function(x)


def _torch_row(spec, steps, warmup):
    import contextlib

    import torch

    model = torch_model(spec)
    x = spec.get("native_inputs", lambda a: a)(spec["inputs"])  # the twin's layout, where it differs
    x_t = _map(torch.as_tensor, x)
    y_t = torch.as_tensor(labels(spec))
    optimizer, loss_fn = _torch_training(spec, model, x_t)
    recipe = getattr(model, "recipe", None)  # the airbench twin computes in its recipe's precision
    compute = (lambda: _autocast(recipe)) if recipe else contextlib.nullcontext

    def call(inputs):
        return model(*inputs) if isinstance(inputs, tuple) else model(inputs)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with compute():
            outputs = call(x_t)
        loss_fn(outputs, y_t).backward()
        optimizer.step()

    def forward(batch):
        model.eval()
        with torch.no_grad(), compute():
            return call(_map(torch.as_tensor, batch))

    return _measure(spec, NATIVE, step, forward, x, steps, warmup,
                    (sum(p.numel() for p in model.parameters()), trainable_count(model)))


def _autocast(recipe):
    from twins import airbench94

    return airbench94.compute(recipe)


def _torch_training(spec, model, x_t):
    """(optimizer, loss function of (outputs, targets)) as the twin trains: airbench94's own for CIFAR-10;
    else the lesson's optimizer (Nesterov SGD or Adam) and loss."""
    import torch

    config = spec["config"]
    if spec["lesson"] == "cifar10":
        from twins import airbench94

        summed = torch.nn.CrossEntropyLoss(label_smoothing=model.recipe.label_smoothing, reduction="sum")
        return airbench94.optimizer_for(model, model.recipe), lambda logits, y: summed(logits.float(), y)
    if spec["lesson"] == "captioning":
        def loss_fn(outputs, targets):
            return model.loss(outputs, targets, x_t[1], config.attention_penalty)
    elif spec["classes"] == 1:
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=getattr(config, "label_smoothing", 0.0))
    return _torch_optimizer(model, config), loss_fn


def _torch_optimizer(model, config):
    import torch

    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "nesterov":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.learning_rate)


def _measure(spec, implementation, train_step, forward, x, steps, warmup, params):
    """The row of one implementation: throughput of `train_step`, latency of `forward` on one example and on
    the batch `x`; `params`: (all weights, trainable ones)."""
    for _ in range(warmup):
        train_step()
    started = time.perf_counter()
    for _ in range(steps):
        train_step()
    throughput = steps * spec["batch"] / (time.perf_counter() - started)
    one, batch = [], []
    first = _map(lambda a: a[:1], x)
    for _ in range(3):
        forward(first), forward(x)  # warm-up, and tracing for each shape
    for _ in range(20):
        started = time.perf_counter()
        forward(first)
        one.append(time.perf_counter() - started)
        started = time.perf_counter()
        forward(x)
        batch.append(time.perf_counter() - started)
    row = {"model": spec["name"], "implementation": implementation, "train examples/s": round(throughput, 1),
           "latency 1 example (ms)": round(1000 * statistics.median(one), 2),
           "latency 1 batch (ms)": round(1000 * statistics.median(batch), 1), "batch": spec["batch"],
           "params": int(params[0]), "trainable": int(params[1])}
    print(json.dumps(row), flush=True)
    return row


# ----------------------------------------------------------------------------------------- parameter counts
def parameter_counts(lessons=LESSONS, overrides=None):
    """[(spec, Keras model, twin, parameter rows)] of every lesson's model: the Keras model as the lesson
    builds it beside its PyTorch twin, a row per pair of layers with the reason for each difference; where
    the lesson's model has no twin, twin None and the reason instead of the rows."""
    from twins import transfer

    found = []
    for spec in models_to_compare(lessons, overrides):
        model = keras_model(spec)
        try:
            twin = torch_model(spec)
        except (UserError, ValueError) as error:  # a model the twins do not cover
            found.append((spec, model, None, str(error)))
            continue
        rows = (airbench_parameter_rows(model, twin) if spec["lesson"] == "cifar10"
                else transfer.parameter_rows(model, twin))
        found.append((spec, model, twin, rows))
    return found


# Keras layers of models/cnn.py's airbench94 net for each module of twins/airbench94.py's AirbenchNet.
AIRBENCH_PAIRS = (
    ("whiten", ("stem_whiten",)),
    *((f"groups.{i - 1}.{module}", layers) for i in (1, 2, 3) for module, layers in (
        ("conv1", (f"block{i}_conv_1",)),
        ("norm1", (f"block{i}_bn_1", f"block{i}_bn_1_shift")),
        ("conv2", (f"block{i}_2_conv",)),
        ("norm2", (f"block{i}_2_bn", f"block{i}_2_bn_shift")))),
    ("head", ("logits",)),
)
AIRBENCH_WHY = {
    "whiten": "Keras also keeps a frozen copy of the bias and a flag, so that the bias can stop training "
              "mid-fit (models/airbench.py: PatchWhitening); both keep the frozen filters",
    "norm": "Keras: moving mean and variance (non-trainable) + the shift (ScaledBias); PyTorch: the frozen "
            "scale + the shift (its running statistics are buffers)",
}


def airbench_parameter_rows(keras_model, twin):
    """`transfer.parameter_rows` for the airbench94 net and `AirbenchNet`, paired by name (the twin has no
    normalisation layer: it reads normalised images); refuses a Keras layer with weights left unpaired."""
    modules = dict(twin.named_modules())
    rows, paired = [], set()
    for module_name, layer_names in AIRBENCH_PAIRS:
        layers = [keras_model.get_layer(name) for name in layer_names if name in _names(keras_model)]
        keras_count = sum(layer.count_params() for layer in layers)
        torch_count = sum(p.numel() for p in modules[module_name].parameters())
        why = "" if keras_count == torch_count else AIRBENCH_WHY["norm" if ".norm" in module_name else
                                                                  "whiten"]
        rows.append({"keras layer": ", ".join(layer_names), "keras params": keras_count,
                     "torch module": module_name, "torch params": torch_count, "why they differ": why})
        paired.update(layer_names)
    left = [layer.name for layer in keras_model.layers if layer.count_params() and layer.name not in paired]
    if left:
        raise UserError(f"airbench94 layers without a partner in AirbenchNet: {', '.join(left)}.")
    return rows


def _names(model):
    return {layer.name for layer in model.layers}


def parameter_tables(lessons=LESSONS, overrides=None):
    """Keras vs PyTorch parameter counts of every twin, with the reason for each difference."""
    from common.tables import format_table

    sections = []
    for spec, model, twin, rows in parameter_counts(lessons, overrides):
        head = f"**{spec['name']}** (Keras {model.count_params():,} weights"
        if twin is None:
            sections.append(f"{head}; no PyTorch twin: {rows})")
            continue
        sections.append(f"{head}, {spec['native']} {sum(p.numel() for p in twin.parameters()):,} "
                        f"parameters; trainable: Keras {trainable_count(model):,}, PyTorch "
                        f"{trainable_count(twin):,})\n\n"
                        + format_table(rows, ["keras layer", "keras params", "torch module", "torch params",
                                              "why they differ"]))
    return "\n\n".join(sections)


def trainable_count(model):
    """The trainable weights of a Keras model or a PyTorch module."""
    if hasattr(model, "trainable_weights"):
        return sum(math.prod(variable.shape) for variable in model.trainable_weights)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------- the report
def measure(steps, warmup, lessons=LESSONS, backends=BACKENDS, overrides=None):
    """Run each Keras backend's worker and the PyTorch-native one, each in its own process; returns (rows,
    failures: one line per worker that stopped)."""
    rows, failures = [], []
    jobs = [("keras", backend) for backend in backends] + [("torch", "torch")]
    for worker, backend in jobs:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-m", "benchmarks.frameworks", "--worker", worker,
                   "--steps", str(steps), "--warmup", str(warmup), "--models", ",".join(lessons),
                   "--overrides", json.dumps(overrides or {})]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        rows += [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            failures.append(f"{worker} worker on {backend} (exit {result.returncode}): {last}")
    return rows, failures


def table(rows):
    """The rows sorted by model and implementation, each with its speed relative to PyTorch native and, on
    the native row, how its parameter count compares with Keras'."""
    native = {r["model"]: r for r in rows if r["implementation"] == NATIVE and r.get("train examples/s")}
    keras = {r["model"]: r for r in rows if r.get("trainable") and r["implementation"] != NATIVE}
    for row in rows:
        reference = native.get(row["model"])
        if reference and row.get("train examples/s"):
            row["vs PyTorch"] = f"{row['train examples/s'] / reference['train examples/s']:.2f}x"
    for model, row in native.items():
        other = keras.get(model, row)
        if row["params"] != other["params"]:
            same = "the same" if row["trainable"] == other["trainable"] else f"{row['trainable']:,}"
            row["note"] = (f"{row['params'] - other['params']:+,} weights against Keras (trainable: {same}): "
                           "see the parameter counts below")
    return sorted(rows, key=lambda r: (r["model"], r["implementation"]))


def render(rows, failures, measured, steps, warmup, tables):
    """The frameworks section of RESULTS.md."""
    from benchmarks.common import facts_block
    from common.tables import format_table

    return ("## Frameworks: Keras backends vs PyTorch native\n\n" + facts_block(measured)
            + f"- comparison libraries: {_versions()}\n"
            + "- each model is what its lesson's default run trains: the quick config, built by the lesson's "
              "factory with its precision policy (CIFAR-10: airbench94's net and recipe, `tasks/cifar10.py: "
              "AIRBENCH94_METHODS`, in bfloat16 where the CPU computes it, beside `twins/airbench94.py` in "
              "the same precision); synthetic inputs of the lesson's shape, in batches of the lesson's size "
              "(the batch column); params: every weight Keras holds, trainable or not, and PyTorch's "
              "`parameters()` (running statistics are buffers)\n"
            + f"- {steps} timed training steps after {warmup} warm-up steps (`train_on_batch`, one Python "
              f"call per step; the *fit* rows: the median of 3 `fit` calls over {steps} batches, 20 times "
              f"that for the phone-price FNN, {steps} steps per compiled call); latency: median of 20 "
              "forward passes in inference mode (compiled predict step for Keras, `torch.no_grad` for "
              "PyTorch)\n\n"
            + format_table(table(rows), COLUMNS) + "\n\n"
            + ("Failed: " + "; ".join(failures) + "\n\n" if failures else "")
            + "### Parameter counts, Keras vs PyTorch\n\n" + tables + "\n")


def _versions():
    from importlib import metadata

    found = []
    for name in ("torch", "jax", "jaxlib"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def _names_list(text, valid, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise UserError(f"unknown {what} '{','.join(unknown)}'; valid: {', '.join(valid)}.")
    return names


def _overrides(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"--overrides is not JSON: {error}.") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UserError("--overrides takes a JSON object of lessons, each an object of config settings.")
    unknown = [name for name in value if name not in LESSONS]
    if unknown:
        raise UserError(f"--overrides: unknown lesson '{unknown[0]}'; valid: {', '.join(LESSONS)}.")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    parser.add_argument("--models", default=",".join(LESSONS),
                        help="the lessons whose models to compare, comma-separated; the section this run "
                             "writes holds only these (default: %(default)s)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="the Keras backends, comma-separated; PyTorch native always runs (default: "
                             "%(default)s)")
    parser.add_argument("--overrides", default="{}",
                        help="JSON settings over each lesson's quick config, e.g. "
                             "'{\"cifar10\": {\"batch_size\": 256}}' (tests: small widths and batches; the "
                             "command in the stamp says so)")
    parser.add_argument("--worker", choices=("keras", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lessons = _names_list(args.models, LESSONS, "model")
    backends = _names_list(args.backends, BACKENDS, "backend")
    overrides = _overrides(args.overrides)
    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be at least 1 and --warmup at least 0.")
    if not args.worker:
        for lesson in lessons:  # a bad override is refused here, not once per model and backend
            lesson_config(lesson, overrides.get(lesson))
    if args.worker:
        worker = keras_worker if args.worker == "keras" else torch_worker
        worker(args.steps, args.warmup, lessons, overrides)
        return 0

    from benchmarks.common import command_line, publish, stamp

    measured = stamp(command_line("benchmarks.frameworks"))
    rows, failures = measure(args.steps, args.warmup, lessons, backends, overrides)
    publish("frameworks", render(rows, failures, measured, args.steps, args.warmup,
                                 parameter_tables(lessons, overrides)))
    return 0


if __name__ == "__main__":
    run(main)
