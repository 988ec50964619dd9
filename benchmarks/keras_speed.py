r"""Keras at PyTorch speed on the CPU? The CIFAR-10 lesson's full training step under one change at a time,
beside its plain-PyTorch twin (issue 36, item 2).

    python -m benchmarks.keras_speed                               # every variant, 20 timed steps each
    python -m benchmarks.keras_speed --variants baseline,xla,jax   # some of them
    python -m benchmarks.keras_speed --steps 10 --warmup 2

Run it alone on the machine: on 2 cores a second busy process stalls every multi-threaded op (the section
records the load average at the start). It takes about half an hour with every variant.

Each variant runs in a process of its own, one after the other, so that what it changes is set before
TensorFlow, JAX or PyTorch is imported (environment variables, thread pools, op determinism, the image data
format): the process builds the airbench94 recipe (`recipes/cifar10_airbench94.json`) as the lesson does and
compiles it the lesson's way (`benchmarks/stage_profile.py: KerasSide`, the same code as stage 5 of the
stage profile), on random uint8 images of CIFAR's shape (46,000, an epoch's worth; no step's time depends on
the pixels), batch 1,024. Its time is stage 5's: the median of `--steps` calls of `train_on_batch` (one step
per call: loss, gradients, update, accuracy) on one augmented batch, after `--warmup` untimed calls.

    baseline             what the lesson does: TensorFlow, bfloat16 compute with float32 weights where the
                         CPU computes bfloat16 (AVX-512 BF16, AMX; else float32), batch norm by
                         TensorFlow's fused kernel (`--fused-batch-norm`), GELU with its derivative
                         written out (`common/registry.py: GELU`), XLA off (`--jit-compile
                         auto` on a CPU), TensorFlow's deterministic ops (`--deterministic`), 1 step per call
    keras_layers         keras_batch_norm and keras_gelu together: the lesson's layers before issue 36
    keras_gelu           Keras' own GELU layer (`Activation("gelu")`: `tf.nn.gelu` and its autodiff)
                         instead of `common/registry.py: GELU` (the same function, derivative written out)
    keras_batch_norm     Keras' own BatchNormalization (`--no-fused-batch-norm`) instead of the lesson's
                         `models/fused_batch_norm.py` (the same layer by TensorFlow's fused kernel)
    gelu_tanh            GELU's tanh approximation (`--activation gelu_tanh`) instead of the exact GELU
    relu                 ReLU (`--activation relu`) instead of GELU: what the activation costs a step
    no_deterministic     TensorFlow's default ops (`--no-deterministic`)
    xla                  XLA (`--jit-compile true`), with `--no-deterministic`: Keras turns XLA off under
                         deterministic ops, so set this row against no_deterministic for XLA alone
    steps_per_execution  9 steps per compiled call (`--steps-per-execution 9`, a divisor of the 45-step
                         epoch): the compiled train function that fit calls, on an iterator over the batch;
                         a call's time / 9 per step, over ceil(steps / 9) calls after ceil(warmup / 9)
    float32              float32 compute (`--no-mixed-precision`)
    threads_2_1          2 intra-op threads and 1 inter-op thread (`tf.config.threading`; TensorFlow's
                         default is one pool of each as wide as the machine)
    onednn_off           TensorFlow without its oneDNN kernels (TF_ENABLE_ONEDNN_OPTS=0)
    channels_first       `keras.config.set_image_data_format("channels_first")` before the model is built
    jax, torch           the same model and compile on Keras' JAX and PyTorch backends (KERAS_BACKEND;
                         `--jit-compile auto`: XLA on JAX, eager on PyTorch)

The twin (`twins/airbench94.py`, in a process of its own, as the stage profile sets it up:
`stage_profile.py: TwinSide`) is timed the same way, on the body of its training loop, in bfloat16 autocast
where the baseline computes in bfloat16; every ratio is to it. A variant that cannot build, compile or run the
model gives its row the reason (the error's message, one line) instead of a time; one that runs past
`--timeout` is stopped. The baseline's process also measures the bfloat16 matmul peak
(`cifar10_airbench.matmul_peak`) for the FLOP-rate target. Writes the "keras_speed" section of RESULTS.md.
"""

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

from benchmarks import stage_profile  # noqa: E402
from benchmarks.common import command_line, facts_block, publish, stamp  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "keras_speed"
EVAL_IMAGES = 100  # the splits need evaluation images; no step reads them
TIMEOUT = 1800  # seconds a variant may take, start-up included (a slow one: some 20 s a step)
MARK = "keras_speed result: "  # the line of a worker's stdout that carries its result
# Set by the variants, so the caller's environment does not leak into the baseline.
CONTROLLED = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# A CPU benchmark: the GPUs hidden from every framework, as stage_profile hides them from TensorFlow.
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One change to the lesson's run: config settings over the recipe, the worker's environment (set before
    any framework is imported), TensorFlow's (intra, inter) op threads, the Keras image data format."""

    name: str
    what: str
    settings: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    threads: tuple = None
    data_format: str = None
    keras_gelu: bool = False  # the "gelu" activation as Keras' own layer, not common/registry.py's GELU
    other_network: bool = False  # computes another function (an activation swapped): not a target candidate


VARIANTS = {variant.name: variant for variant in (
    Variant("baseline", "nothing: TensorFlow, bfloat16 where the CPU computes it, XLA off, deterministic "
            "ops, 1 step per call"),
    Variant("keras_layers", "Keras' own BatchNormalization and GELU (--no-fused-batch-norm and "
            "Activation('gelu')): the lesson before models/fused_batch_norm.py and registry.GELU",
            {"fused_batch_norm": False}, keras_gelu=True),
    Variant("keras_gelu", "Keras' own GELU layer (Activation('gelu'): tf.nn.gelu and its autodiff) instead "
            "of common/registry.py's GELU", keras_gelu=True),
    Variant("keras_batch_norm", "Keras' own batch norm (--no-fused-batch-norm), as the lesson had it before "
            "models/fused_batch_norm.py", {"fused_batch_norm": False}),
    Variant("gelu_tanh", "GELU's tanh approximation (--activation gelu_tanh) instead of the exact GELU",
            {"activation": "gelu_tanh"}, other_network=True),
    Variant("relu", "ReLU (--activation relu) instead of GELU: what the activation costs",
            {"activation": "relu"}, other_network=True),
    Variant("no_deterministic", "TensorFlow's default ops (--no-deterministic)", {"deterministic": False}),
    Variant("xla", "XLA (--jit-compile true), with --no-deterministic (Keras turns XLA off under "
            "deterministic ops)", {"jit_compile": "true", "deterministic": False}),
    Variant("steps_per_execution", "9 steps per compiled call (--steps-per-execution 9), as fit calls them",
            {"steps_per_execution": 9}),
    Variant("float32", "float32 compute (--no-mixed-precision)", {"mixed_precision": False}),
    Variant("threads_2_1", "2 intra-op threads, 1 inter-op thread (tf.config.threading)", threads=(2, 1)),
    Variant("onednn_off", "no oneDNN kernels (TF_ENABLE_ONEDNN_OPTS=0)", env={"TF_ENABLE_ONEDNN_OPTS": "0"}),
    Variant("channels_first", "channels-first layout (keras.config.set_image_data_format)",
            data_format="channels_first"),
    Variant("jax", "Keras on JAX (KERAS_BACKEND=jax; XLA, as --jit-compile auto gives)",
            env={"KERAS_BACKEND": "jax"}),
    Variant("torch", "Keras on PyTorch (KERAS_BACKEND=torch; eager, as --jit-compile auto gives)",
            env={"KERAS_BACKEND": "torch"}),
)}
TWIN = "twin"  # the worker that times the twin


# ------------------------------------------------------------------------------------------------- a worker
def variant_config(variant, overrides=None):
    """The lesson's config of the recipe for `variant`: bfloat16 where the CPU computes it, then the caller's
    `overrides` (a test's small widths and batch), then the variant's own settings."""
    from common import hardware
    from common.config import build_config
    from tasks import cifar10

    settings = {"mixed_precision": hardware.cpu_computes_bfloat16(), **(overrides or {}), **variant.settings}
    return build_config(cifar10.Cifar10Config, config_file=stage_profile.RECIPE, overrides=settings)


def keras_worker(variant, steps, warmup, images, overrides, matmul_size):
    """Build and compile the lesson's model as `variant` says, in this process, and time its full step."""
    import keras
    import tensorflow as tf

    if variant.threads:  # before TensorFlow's runtime starts
        tf.config.threading.set_intra_op_parallelism_threads(variant.threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(variant.threads[1])
    if variant.data_format:
        keras.config.set_image_data_format(variant.data_format)
    if variant.keras_gelu:
        from common import registry

        registry.ACTIVATIONS["gelu"] = lambda: keras.layers.Activation("gelu")  # this process only
    config = variant_config(variant, overrides)
    splits = stage_profile.random_splits(images, EVAL_IMAGES, config.seed)
    side = stage_profile.KerasSide(config, splits, steps, warmup)
    per_call = side.model.steps_per_execution
    seconds = side.full_step() if per_call == 1 else fit_step(side)
    result = {"seconds": seconds, "backend": keras.backend.backend(), "steps_per_call": per_call,
              "jit": bool(side.model.jit_compile), "policy": keras.config.dtype_policy().name,
              "data_format": keras.config.image_data_format(),
              "train_flops_per_image": side.flops_per_image()[0]}
    if variant.name == "baseline" and matmul_size:
        from benchmarks.cifar10_airbench import matmul_peak

        result["bfloat16_peak"] = matmul_peak("bfloat16", matmul_size)
    return result


def fit_step(side):
    """Seconds per step of the compiled train function that fit calls (`steps_per_execution` steps a call)
    on an iterator over the side's batch: the median call over ceil(steps / per call) calls, after
    ceil(warmup / per call) untimed ones, divided by the steps of a call."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("this timing calls TensorFlow's train function on a tf.data iterator")
    model, per_call = side.model, side.model.steps_per_execution
    model.set_weights(side.initial_weights)
    iterator = iter(tf.data.Dataset.from_tensors((side.x, side.y)).repeat())
    model.make_train_function()

    def call():
        float(model.train_function(iterator)["loss"])  # waits for the call's last step

    calls, untimed = math.ceil(side.steps / per_call), math.ceil(side.warmup / per_call)
    seconds = stage_profile.median_time(call, calls, untimed)
    return seconds / per_call


def twin_worker(steps, warmup, images, overrides):
    """The twin's full step, set up for the baseline's config (its batch, widths and precision)."""
    import torch

    config = variant_config(VARIANTS["baseline"], overrides)
    splits = stage_profile.random_splits(images, EVAL_IMAGES, config.seed)
    recipe = stage_profile.twin_recipe(config)
    side = stage_profile.TwinSide(recipe, splits, steps, warmup, config.seed)
    return {"seconds": side.full_step(), "epoch_steps": side.steps_per_epoch(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "autocast": recipe.autocast}


def reason(error):
    """An exception as one line: the innermost "SomeError: message" that Keras or TensorFlow wrapped into it,
    else its type and the first line of its message that says something (not a traceback line, a graph node
    or TensorFlow's "Graph execution error" heading); graph nodes shown by their op."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras' bold
    text = re.sub(r"'?\{\{node [^}]*\}\}( = (\w+)\[.*?\]\(.*?\))?'?", lambda m: m.group(2) or "", text)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    inner = re.findall(r"^\s*(\w+(?:Error|Exception)): (.+)$", text, re.M)
    if inner:
        name, message = inner[-1]
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line[:1].isspace()]
        lines = [line for line in lines if not line.startswith(
            ("Graph execution error", "Detected at node", "Traceback", "[[", "File "))]
        name, message = type(error).__name__, (lines[0] if lines else "")
    line = f"{name}: {message.strip()}".rstrip(": ")
    return line if len(line) <= 200 else line[:199] + "…"


def worker(name, steps, warmup, images, overrides, matmul_size):
    """Measure `name` (a variant or the twin) in this process and print its result on one marked line."""
    try:
        if name == TWIN:
            result = twin_worker(steps, warmup, images, overrides)
        else:
            result = keras_worker(VARIANTS[name], steps, warmup, images, overrides, matmul_size)
    except Exception as error:  # the row says why, and the other variants still run
        result = {"seconds": None, "note": reason(error)}
    print(MARK + json.dumps(result), flush=True)
    return 0


# -------------------------------------------------------------------------------------------- the variants
def worker_env(name):
    """The environment of `name`'s process: the caller's, less what the variants control, CPU only, then
    the variant's own."""
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    env.update(CPU_ONLY, KERAS_BACKEND="tensorflow")
    return env if name == TWIN else dict(env, **VARIANTS[name].env)


def run_worker(name, steps, warmup, images, overrides, matmul_size, timeout):
    """`name`'s result from a process of its own: its marked line, or why there is none."""
    command = [sys.executable, "-m", "benchmarks.keras_speed", "--worker", name, "--steps", str(steps),
               "--warmup", str(warmup), "--images", str(images), "--overrides", json.dumps(overrides or {}),
               "--matmul-size", str(matmul_size)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=worker_env(name),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "note": f"stopped after the {timeout:.0f} s limit (--timeout)"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    last = (done.stderr.strip().splitlines() or [""])[-1].strip()
    return {"seconds": None, "note": f"the process ended with exit code {done.returncode}: {last}"[:200]}


def checked(names, images, overrides):
    """The variants named (in the order given) and the baseline's config, or a UserError before anything
    runs: a name that is no variant, a setting the config refuses, fewer images than a batch."""
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise UserError(f"unknown variant '{(unknown or [''])[0]}'; the variants are {', '.join(VARIANTS)}.")
    config = variant_config(VARIANTS["baseline"], overrides)
    if images < config.batch_size:
        raise UserError(f"a step needs a whole batch: {images} images for a batch of {config.batch_size}.")
    return list(dict.fromkeys(names)), config


def measure(names=tuple(VARIANTS), steps=20, warmup=3, images=stage_profile.EPOCH_IMAGES, overrides=None,
            matmul_size=2048, timeout=TIMEOUT, log=print):
    """Time the twin and every variant named, one process after the other; the rows and the facts of the
    section.

    Args:
        names: the variants, in the order they run.
        steps, warmup: timed and untimed full steps of each.
        images: random training images each process builds its pipeline (and the whitening) from.
        overrides: config settings over the recipe for every variant and the twin (a test's tiny widths).
        matmul_size: the side of the matrices of the peak measurement (0: none).
        timeout: seconds a variant's process may take.
    """
    names, config = checked(list(names), images, overrides)
    load_average = os.getloadavg()[0]
    if load_average > 0.5:
        log(f"load average {load_average:.2f}: something else is running; the times will show it")
    common = dict(steps=steps, warmup=warmup, images=images, overrides=overrides, matmul_size=matmul_size,
                  timeout=timeout)
    started = time.perf_counter()
    twin = run_worker(TWIN, **common)
    log(f"twin: {_shown(twin)} ({time.perf_counter() - started:.0f} s)")
    rows = []
    for name in names:
        started = time.perf_counter()
        rows.append({"name": name, "what": VARIANTS[name].what, **run_worker(name, **common)})
        log(f"{name}: {_shown(rows[-1])} ({time.perf_counter() - started:.0f} s)")
    return {"variants": rows, "twin": twin, "steps": steps, "warmup": warmup, "images": images,
            "batch_size": config.batch_size, "widths": list(config.widths),
            "epoch_steps": -(-stage_profile.EPOCH_IMAGES // config.batch_size),  # KerasSide.steps_per_epoch
            "load_average": load_average, "matmul_size": matmul_size}


def _shown(row):
    return f"{row['seconds'] * 1e3:.1f} ms/step" if row.get("seconds") else row.get("note", "")


# ---------------------------------------------------------------------------------------------- the section
def _ratio(value, reference):
    return f"{value / reference:.2f}x" if value and reference else ""


def columns(result):
    """The table's columns; the seconds per epoch name the steps of a Keras epoch."""
    return ["variant", "what it changes", "Keras ms/step", "vs baseline", "vs twin",
            f"s/epoch ({result['epoch_steps']} steps)", "note"]


def rows(result):
    """The table: each variant's ms per step, its ratios to the baseline and to the twin, its seconds per
    epoch, and the reason where it has no time."""
    twin = result["twin"].get("seconds")
    baseline = next((row.get("seconds") for row in result["variants"] if row["name"] == "baseline"), None)
    table = []
    for row in result["variants"]:
        seconds = row.get("seconds")
        table.append({"variant": row["name"], "what it changes": row["what"],
                      "Keras ms/step": stage_profile._ms(seconds) if seconds else "",
                      "vs baseline": _ratio(seconds, baseline), "vs twin": _ratio(seconds, twin),
                      columns(result)[5]: f"{seconds * result['epoch_steps']:.0f}" if seconds else "",
                      "note": row.get("note", "")})
    return table


def targets(result):
    """Issue 36's two targets for the fastest variant that trains the recipe's network (not one that swaps
    its activation): its step at most TARGET_RATIO x the twin's, and its FLOP rate at least
    TARGET_PEAK_SHARE of the bfloat16 matmul peak (None where not measured)."""
    timed = [row for row in result["variants"] if row.get("seconds") and not (
        row["name"] in VARIANTS and VARIANTS[row["name"]].other_network)]
    if not timed:
        return None
    best = min(timed, key=lambda row: row["seconds"])
    twin = result["twin"].get("seconds")
    ratio = best["seconds"] / twin if twin else None
    peak = next((row["bfloat16_peak"] for row in timed if row.get("bfloat16_peak")), None)
    rate = result["batch_size"] * best["train_flops_per_image"] / best["seconds"]
    share = rate / peak if peak else None
    return {"best": best["name"], "ratio": ratio, "ratio_met": ratio is not None and ratio <= (
        stage_profile.TARGET_RATIO), "rate": rate, "peak": peak, "share": share,
        "share_met": share is not None and share >= stage_profile.TARGET_PEAK_SHARE}


def _built(row):
    """How a variant's model was compiled, as its process saw it."""
    if not row.get("seconds"):
        return f"{row['name']}: no time"
    return (f"{row['name']}: {row['backend']}, {row['policy']}, XLA {'on' if row['jit'] else 'off'}, "
            f"{row['steps_per_call']} step(s) per call, {row['data_format']}")


def target_lines(result):
    """One line per target of issue 36, for the fastest variant."""
    goal, met = targets(result), {True: "met", False: "not met"}
    if goal is None:
        return ["- targets: no variant has a time"]
    ratio = (f"{goal['ratio']:.2f}x" if goal["ratio"] is not None else "no twin time")
    lines = [f"- Keras / twin for the fastest variant of the recipe's network ({goal['best']}): {ratio} "
             f"(target: at most {stage_profile.TARGET_RATIO}x): {met[goal['ratio_met']]}"]
    if goal["peak"]:
        lines.append(f"- FLOP rate of the fastest variant's step: {goal['rate'] / 1e9:.0f} GFLOP/s, "
                     f"{goal['share']:.0%} of the bfloat16 matmul peak ({goal['peak'] / 1e9:.0f} GFLOP/s, "
                     f"{result['matmul_size']:,} x {result['matmul_size']:,}, measured in the baseline's "
                     f"process; target: {stage_profile.TARGET_PEAK_SHARE:.0%}): {met[goal['share_met']]}")
    else:
        lines.append("- FLOP rate against the bfloat16 matmul peak: not measured (the baseline's process "
                     "measures the peak)")
    return lines


def render(result, measured):
    """The keras_speed section: its stamp, what was measured and how, the table, the twin and the targets."""
    twin, steps = result["twin"], result["epoch_steps"]
    twin_line = (f"- the twin (`twins/airbench94.py`, PyTorch {twin['torch']}, {twin['threads']} threads, "
                 f"{'bfloat16 autocast' if twin['autocast'] else 'float32'}): "
                 f"{stage_profile._ms(twin['seconds'])} ms/step, "
                 f"{twin['seconds'] * twin['epoch_steps']:.0f} s/epoch ({twin['epoch_steps']} steps)"
                 if twin.get("seconds") else f"- the twin: no time ({twin.get('note', '')})")
    about = (
        "The airbench94 recipe (`recipes/cifar10_airbench94.json`) as the CIFAR-10 lesson builds and "
        f"compiles it (widths {','.join(map(str, result['widths']))}, batch {result['batch_size']:,}), one "
        "change at a time, each variant in a process of its own, one after the other, on "
        f"{result['images']:,} random uint8 images of CIFAR's shape (no step's time depends on the pixels). "
        f"Keras ms/step: the median full training step (`train_on_batch`) of {result['steps']} after "
        f"{result['warmup']} untimed ones; steps_per_execution: a compiled call's time / its steps. vs "
        "twin: against the twin's full step (the body of its training loop) measured in the same run, "
        "bfloat16 autocast where the baseline computes in bfloat16 (the float32 row too). s/epoch = "
        f"ms/step x the {steps} steps of a Keras epoch of {stage_profile.EPOCH_IMAGES:,} images. How each "
        "variant is set up and timed: the docstring of `benchmarks/keras_speed.py`.")
    facts = [twin_line, f"- load average at the start: {result['load_average']:.2f}",
             *target_lines(result),
             "- as compiled: " + "; ".join(_built(row) for row in result["variants"])]
    table = format_table(rows(result), columns(result))
    return "\n".join(["## Keras speed: one change at a time against the PyTorch twin (CIFAR-10, airbench94)",
                      "", facts_block(measured, "cifar10"), about, "", table, "", *facts]) + "\n"


def parse_overrides(text):
    """--overrides: a JSON object of config settings."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UserError(f"--overrides takes a JSON object of config settings, such as "
                        f"'{{\"widths\": [8, 16, 16], \"batch_size\": 32}}', not {text!r}.")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="the variants to run, comma-separated, in that order (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    parser.add_argument("--images", type=int, default=stage_profile.EPOCH_IMAGES,
                        help=f"random training images (default {stage_profile.EPOCH_IMAGES:,})")
    parser.add_argument("--overrides", default="{}", help="config settings over the recipe for every "
                        "variant, as JSON (tests: '{\"widths\": [8, 16, 16], \"batch_size\": 32}')")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds a variant's process may take (default {TIMEOUT})")
    parser.add_argument("--matmul-size", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=[*VARIANTS, TWIN], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.timeout <= 0:
        parser.error("--steps must be at least 1 and --timeout above 0")
    overrides = parse_overrides(args.overrides)
    if args.worker:
        return worker(args.worker, args.steps, max(args.warmup, 0), args.images, overrides, args.matmul_size)
    names, _ = checked([name.strip() for name in args.variants.split(",") if name.strip()], args.images,
                       overrides)  # before the stamp
    measured = stamp(command_line("benchmarks.keras_speed"))
    result = measure(names, steps=args.steps, warmup=max(args.warmup, 0), images=args.images,
                     overrides=overrides, matmul_size=args.matmul_size, timeout=args.timeout)
    publish(SECTION, render(result, measured))
    return 0


if __name__ == "__main__":
    run(main)
