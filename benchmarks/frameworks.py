"""Framework comparison: each lesson's quick model on Keras' TensorFlow, JAX and PyTorch backends and as a
plain PyTorch twin, measured side by side on this machine.

    python -m benchmarks.frameworks  # every backend + PyTorch native (needs requirements-compare.txt)
    python -m benchmarks.frameworks --steps 40

For each model: training throughput (examples/s over timed steps, after warm-up steps that compile the
step function) and inference latency (median time of one forward pass on one example and on one batch).
The same architecture and batch size everywhere, synthetic inputs of the lesson's shape, the optimizer of
the lesson's recipe. Each Keras backend runs in its own process (a backend is fixed at import).
Also writes the Keras vs PyTorch parameter-count table of every twin. Results: the frameworks section of
RESULTS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

ROOT = Path(__file__).resolve().parents[1]
CAPTION_POSITIONS, CAPTION_FEATURES = 49, 1280  # EfficientNet-Lite0's 7x7 grid of 1280 features
# Flickr8k: 2,529 training-caption words seen 5 times or more, padding, [UNK], <start>, <end>
CAPTION_VOCABULARY = 2533
BACKENDS = ("tensorflow", "jax", "torch")
COLUMNS = ["model", "implementation", "train examples/s", "vs PyTorch", "latency 1 example (ms)",
           "latency 1 batch (ms)", "params"]


def models_to_compare():
    """(name, keras builder, torch builder, input maker, label maker, batch size, optimizer, loss kind)."""
    import numpy as np

    from common.config import build_config
    from models.captioning import masked_crossentropy
    from tasks.captioning import CaptioningConfig
    from tasks.cifar10 import Cifar10Config
    from tasks.imdb import ImdbConfig
    from tasks.phone_price import PhonePriceConfig

    rng = np.random.default_rng(0)
    phone = build_config(PhonePriceConfig, profile="quick")
    cifar = build_config(Cifar10Config, profile="quick", model_profiles=False)  # the twin is the plain net
    imdb = build_config(ImdbConfig, profile="quick")
    caption = build_config(CaptioningConfig, profile="quick")
    x_phone = rng.normal(1000, 500, (phone.batch_size, 20)).astype("float32")
    # The captioning decoder on cached EfficientNet-Lite0 features (7x7 positions of 1280), captions of
    # <start> + max_words + <end> token ids, padded at the end.
    features = rng.normal(0, 1, (caption.batch_size, CAPTION_POSITIONS, CAPTION_FEATURES)).astype("float32")
    captions = _token_ids(rng, caption.batch_size, caption.max_words + 2, CAPTION_VOCABULARY)
    captions[:, 0] = 2  # <start>
    # fit_repeats: a fit call covers the timed batches this many times (a tiny model needs more);
    # compile: what the lesson compiles with besides its config (the captioner's masked loss).
    specs = [
        dict(name="phone_price fnn", config=phone, batch=phone.batch_size, classes=4,
             inputs=lambda: x_phone, channels_first=False, fit_repeats=20),
        dict(name="cifar10 fast", config=cifar, batch=cifar.batch_size, classes=10,
             inputs=lambda: rng.uniform(0, 255, (cifar.batch_size, 32, 32, 3)).astype("float32"),
             channels_first=True),
        dict(name="imdb gru", config=imdb, batch=imdb.batch_size, classes=1,
             inputs=lambda: _token_ids(rng, imdb.batch_size, imdb.sequence_length, imdb.vocabulary_size),
             channels_first=False),
        dict(name="captioning lstm decoder", config=caption, batch=caption.batch_size,
             classes=CAPTION_VOCABULARY, inputs=lambda: (features, captions[:, :-1]),
             targets=lambda: captions[:, 1:], channels_first=False,
             compile=dict(loss=masked_crossentropy, metrics=())),
    ]
    return specs


def _token_ids(rng, batch, length, vocabulary):
    ids = rng.integers(2, vocabulary, (batch, length))
    for row, keep in enumerate(rng.integers(length // 3, length + 1, batch)):
        ids[row, keep:] = 0  # reviews of different lengths, padded at the end
    return ids.astype("int32")


def keras_model(spec):
    from types import SimpleNamespace

    import numpy as np

    from models import captioning, cnn, fnn
    from models import text as text_models

    config = spec["config"]
    if spec["name"].startswith("captioning"):
        return captioning.build_captioner(config, CAPTION_VOCABULARY, (CAPTION_POSITIONS, CAPTION_FEATURES))
    if spec["name"].startswith("phone"):
        return fnn.build_fnn(config, SimpleNamespace(num_features=20, num_classes=4,
                                                     x_train=spec["inputs"]()))
    if spec["name"].startswith("cifar"):
        data = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.array([125.0, 123, 114]),
                               variance=np.array([3900.0, 3800, 4400]))
        return cnn.build_cnn(config, data)
    return text_models.build_token_classifier(config, config.vocabulary_size, config.sequence_length)


def torch_model(spec):
    from twins import torch_models

    config = spec["config"]
    if spec["name"].startswith("captioning"):
        return torch_models.Captioner(config, CAPTION_VOCABULARY, CAPTION_FEATURES)
    if spec["name"].startswith("phone"):
        return torch_models.FNN(config, 20, 4)
    if spec["name"].startswith("cifar"):
        return torch_models.FastNet(config)
    return torch_models.TextRNN(config, config.vocabulary_size)


def labels(spec):
    import numpy as np

    if "targets" in spec:
        return spec["targets"]()
    y = np.arange(spec["batch"]) % max(2, spec["classes"])
    return y.astype("float32")[:, None] if spec["classes"] == 1 else y


# ------------------------------------------------------------------------------------------------- workers
def keras_worker(steps, warmup):
    import keras
    import numpy as np

    from common import training
    from common import registry

    rows = []
    for spec in models_to_compare():
        keras.utils.set_random_seed(0)
        model = keras_model(spec)
        config = spec["config"]
        training.compile_model(model, config, steps_per_epoch=100, **spec.get("compile", {}))
        y = labels(spec)
        one_hot = (registry.loss_target(registry.check_name("loss", getattr(config, "loss", "ce")))
                   == "one_hot")
        if spec["classes"] > 1 and one_hot:  # the CIFAR recipe's loss takes one-hot rows
            y = np.eye(spec["classes"], dtype="float32")[y]
        x = spec["inputs"]()
        rows.append(_measure(spec, f"Keras {keras.backend.backend()}", lambda: model.train_on_batch(x, y),
                             lambda batch: model.predict_on_batch(batch), x, steps, warmup,
                             model.count_params()))
        rows.append(_measure_fit(spec, model, config, x, y, steps))
    return rows


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


def torch_worker(steps, warmup):
    import numpy as np
    import torch

    rows = []
    torch.manual_seed(0)
    for spec in models_to_compare():
        model = torch_model(spec)
        config = spec["config"]
        optimizer = _torch_optimizer(model, config)
        x = spec["inputs"]()
        if spec["channels_first"]:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        x_t = _map(torch.as_tensor, x)
        y_t = torch.as_tensor(labels(spec))
        if spec["name"].startswith("captioning"):
            def loss_fn(outputs, targets):
                return model.loss(outputs, targets, x_t[1], config.attention_penalty)
        elif spec["classes"] == 1:
            loss_fn = torch.nn.BCEWithLogitsLoss()
        else:
            loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=getattr(config, "label_smoothing", 0.0))

        def call(inputs):
            return model(*inputs) if isinstance(inputs, tuple) else model(inputs)

        def step():
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(call(x_t), y_t)
            loss.backward()
            optimizer.step()

        def forward(batch):
            model.eval()
            with torch.no_grad():
                return call(_map(torch.as_tensor, batch))

        rows.append(_measure(spec, "PyTorch native", step, forward, x, steps, warmup,
                             sum(p.numel() for p in model.parameters())))
    return rows


def _torch_optimizer(model, config):
    import torch

    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "nesterov":
        return torch.optim.SGD(parameters, lr=config.learning_rate, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.learning_rate)


def _measure(spec, implementation, train_step, forward, x, steps, warmup, params):
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
           "params": int(params)}
    print(json.dumps(row), flush=True)
    return row


# ----------------------------------------------------------------------------------------------- the report
def parameter_tables():
    """Keras vs PyTorch parameter counts of every twin, with the reason for each difference."""
    from common.tables import format_table
    from twins import transfer

    sections = []
    for spec in models_to_compare():
        model, twin = keras_model(spec), torch_model(spec)
        rows = transfer.parameter_rows(model, twin)
        sections.append(f"**{spec['name']}** (Keras {model.count_params():,} weights, PyTorch "
                        f"{sum(p.numel() for p in twin.parameters()):,} parameters)\n\n"
                        + format_table(rows, ["keras layer", "keras params", "torch module", "torch params",
                                              "why they differ"]))
    return "\n\n".join(sections)


def _versions():
    from importlib import metadata

    found = []
    for name in ("torch", "jax", "jaxlib"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", choices=("keras", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        (keras_worker if args.worker == "keras" else torch_worker)(args.steps, args.warmup)
        return 0

    rows, failures = [], []
    jobs = [("keras", backend) for backend in BACKENDS] + [("torch", "torch")]
    for worker, backend in jobs:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-m", "benchmarks.frameworks", "--worker", worker,
                   "--steps", str(args.steps), "--warmup", str(args.warmup)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        rows += found
        if result.returncode != 0:
            failures.append(f"{worker} on {backend}: {result.stderr.strip().splitlines()[-1:]}")
    native = {r["model"]: r["train examples/s"] for r in rows if r["implementation"] == "PyTorch native"}
    for row in rows:
        if row["model"] in native:
            row["vs PyTorch"] = f"{row['train examples/s'] / native[row['model']]:.2f}x"
    rows.sort(key=lambda r: (r["model"], r["implementation"]))

    from benchmarks.common import command_line, facts_block, publish, stamp
    from common.tables import format_table

    measured = stamp(command_line("benchmarks.frameworks"))
    body = ("## Frameworks: Keras backends vs PyTorch native\n\n" + facts_block(measured)
            + f"- comparison libraries: {_versions()}\n"
            + f"- {args.steps} timed training steps after {args.warmup} warm-up steps (`train_on_batch`, one "
              f"Python call per step; the *fit* rows: the median of 3 `fit` calls over {args.steps} batches, "
              f"20 times that for the phone-price FNN, {args.steps} steps per compiled call); latency: "
              "median of 20 forward passes in inference mode (compiled predict step for Keras, "
              "`torch.no_grad` for PyTorch); batch sizes are the lessons': phone price 64, CIFAR-10 256, "
              "IMDB 64, captioning 128\n\n"
            + format_table(rows, COLUMNS) + "\n\n"
            + ("Failed: " + "; ".join(failures) + "\n\n" if failures else "")
            + "### Parameter counts, Keras vs PyTorch\n\n" + parameter_tables() + "\n")
    publish("frameworks", body)
    return 0


if __name__ == "__main__":
    run(main)
