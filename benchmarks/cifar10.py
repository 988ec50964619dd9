r"""CIFAR-10 benchmark: time to accuracy of the lesson's models, exported-file accuracy, and CPU time per
epoch of the GPU-profile models.

    python -m benchmarks.cifar10                # the quick profile (fast net), wall time included
    python -m benchmarks.cifar10 --models course_cnn --epochs 10 \
        --extra "--optimizer adam --learning-rate 1e-3 --schedule constant --label-smoothing 0"
    python -m benchmarks.cifar10 --epoch-times  # seconds per epoch here for every full-profile model

Writes the cifar10 section of RESULTS.md. Rows of earlier runs (other models, profiles) are kept in
benchmarks/cifar10_rows.json, each with the stamp of the run that measured it; the wall time of a row runs
from the start of the lesson (data loading included) to its final test number, exports excluded. The lesson
runs with the user's defaults (TensorBoard logs included); the command column shows the flags the benchmark
adds.

    python -m benchmarks.cifar10 --render       # the section again from cifar10_rows.json, measuring nothing

airbench94's recipe and its ablations (benchmarks/cifar10_airbench.py, which says what each measures):

    python -m benchmarks.cifar10 --airbench     # recipes/cifar10_airbench94.json, seeds 0,1,2
    python -m benchmarks.cifar10 --ablations    # each method removed in turn, seed 0
    python -m benchmarks.cifar10 --jpeg-cost    # what training on the JPEG copy costs, 4 folds of 1,000
    python -m benchmarks.cifar10 --twin         # the same recipe in plain PyTorch (twins/airbench94.py)
"""

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

from benchmarks import cifar10_airbench as airbench  # noqa: E402
from benchmarks.common import command_line, labelled, publish, read_rows, stamp  # noqa: E402
from common.config import build_config  # noqa: E402
from common.tables import format_table  # noqa: E402
from common.runs import read_json  # noqa: E402
from models import cnn  # noqa: E402
from tasks import cifar10  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS_FILE = HERE / "cifar10_rows.json"
PLOTS = HERE / "plots"
COLUMNS = ["model", "profile", "test accuracy", "held-out lossless / JPEG", "best val accuracy", "params",
           "epochs", "wall time (min)", "time per epoch (s)", "images/s", "stamp", "command"]
EXPORT_COLUMNS = ["format", "file", "size_mb", "test_accuracy", "stamp"]
EPOCH_COLUMNS = ["model", "params", "batch size", "s per epoch (CPU here)", "stamp"]
# `--epoch-times`: the full-profile recipes whose epochs are too slow to run to the end here, timed for a few
# steps instead: every model of models/cnn.py's BUILDERS with the full profile's settings, changed by these,
# except ResNet-32 (ResNet-20 and ResNet-56 bracket it).
FULL_SETTINGS = {"fast": dict(widths=(64, 256, 256), batch_size=512), "resnet20": dict(batch_size=128),
                 "resnet56": dict(batch_size=128), "vgg": dict(widths=(64, 128, 256), batch_size=128),
                 "course_cnn": dict(batch_size=64)}
NOT_TIMED = ("resnet32",)


def full_models():
    """{row label: config overrides} of the models `--epoch-times` times; a label names the widths it sets."""
    models = {}
    for name in cnn.BUILDERS:
        if name not in NOT_TIMED:
            settings = FULL_SETTINGS.get(name, {})
            widths = f" ({','.join(map(str, settings['widths']))})" if "widths" in settings else ""
            models[name + widths] = dict(settings, model=name)
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--models", help="comma-separated, of: " + ", ".join(cnn.BUILDERS)
                        + " (default: the profile's model)")
    parser.add_argument("--epochs", type=int, help="override the profile's epochs (--twin: the recipe's 9.9)")
    parser.add_argument("--extra", default="", help="further task flags, e.g. \"--cutout 8\"")
    parser.add_argument("--epoch-times", action="store_true",
                        help="time a few steps of every full-profile model")
    parser.add_argument("--data-dir")
    parser.add_argument("--render", action="store_true", help="write the section from cifar10_rows.json only")
    parser.add_argument("--airbench", action="store_true",
                        help="the airbench94 recipe's row (--seeds, default 0,1,2)")
    parser.add_argument("--ablations", action="store_true",
                        help="the recipe with each method removed (--seeds, default 0)")
    parser.add_argument("--jpeg-cost", action="store_true",
                        help="what training on the JPEG copy costs: the recipe trained on the held-out "
                             "images' lossless originals and on their JPEG versions, fold by fold")
    parser.add_argument("--twin", action="store_true",
                        help="the airbench94 recipe in plain PyTorch (twins/airbench94.py) on the same "
                             "images (--seeds, default 0,1,2; needs requirements-compare.txt)")
    parser.add_argument("--float32", action="store_true",
                        help="--twin without bfloat16 autocast (what the CPU's half precision costs)")
    parser.add_argument("--seeds", help="comma-separated seeds for --airbench / --ablations / --twin "
                                        "(--jpeg-cost: the first)")
    parser.add_argument("--only", help="comma-separated ablations to run: " + ", ".join(airbench.ABLATIONS))
    args = parser.parse_args(argv)
    state = load_state()
    if args.render:
        pass
    elif args.epoch_times:
        measured = stamp(command_line("benchmarks.cifar10"))
        state["epochs"] = [dict(row, stamp=measured) for row in epoch_times()]
    elif args.airbench or args.ablations or args.jpeg_cost or args.twin:
        airbench.measure(args, state, stamp(command_line("benchmarks.cifar10")))
    else:
        run_models(args, state)
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("cifar10", render(state))
    return 0


def run_models(args, state):
    base = build_config(cifar10.Cifar10Config, profile=args.profile)
    measured = stamp(command_line("benchmarks.cifar10"))
    for name in (args.models.split(",") if args.models else [base.model]):
        flags = ["--profile", args.profile, "--model", name, "--verbose", "2"]
        flags += (["--epochs", str(args.epochs)] if args.epochs else []) + shlex.split(args.extra)
        with tempfile.TemporaryDirectory() as output_dir:
            started = time.perf_counter()
            code = cifar10.main(flags + ["--output-dir", output_dir, "--run-id", "bench"]
                                + (["--data-dir", args.data_dir] if args.data_dir else []))
            run_dir = Path(output_dir) / "cifar10" / "bench"
            result = read_json(run_dir / "metrics.json")["results"][name]
            config = read_json(run_dir / "config.json")
            wall = time.perf_counter() - started - result.get("export_time_s", 0)
            PLOTS.mkdir(exist_ok=True)
            for plot in ("misclassified.png", "learning_curves.png", "confusion_matrix.png"):
                shutil.copy(run_dir / plot, PLOTS / f"cifar10_{name}_{args.profile}_{plot}")
        assert code == 0
        accuracy = f"{result['test_accuracy']:.4f}" + (
            f" ({result['test_accuracy_tta']:.4f} with "
            f"{'multi-crop' if config.get('tta_crops') else 'flip'} TTA)"
            if "test_accuracy_tta" in result else "")
        key = f"{name}/{args.profile}" + (f"/{args.epochs}ep" if args.epochs else "") + (
            f"/{args.extra}" if args.extra else "")
        state["rows"][key] = {
            "model": name + (f" ({','.join(map(str, config['widths']))})" if name in ("fast", "vgg") else ""),
            "profile": args.profile, "test accuracy": accuracy, "held-out lossless / JPEG": held_out(result),
            "best val accuracy": round(result["best_val_accuracy"] or 0, 4), "params": result["params"],
            "epochs": result["epochs"], "wall time (min)": f"{wall / 60:.1f}",
            "time per epoch (s)": f"{result['time_per_epoch_s']:.0f}",
            "images/s": f"{result['images_per_s']:.0f}",
            "stamp": measured, "command": "`" + " ".join(["python -m tasks.cifar10", *flags]) + "`"}
        if result.get("exports"):
            state["exports"] = [dict(row, model=key, stamp=measured) for row in result["exports"]]
        state["data"] = result.get("data", "")
        print(state["rows"][key], flush=True)


def held_out(result):
    """Accuracy on the 4,000 held-out originals and on their JPEG versions (with the run's TTA when on)."""
    values = [result.get(f"heldout_{name}_accuracy_tta", result.get(f"heldout_{name}_accuracy"))
              for name in ("lossless", "jpeg")]
    return " / ".join(f"{v:.4f}" for v in values if v is not None)


def epoch_times(steps=12):
    """Seconds per epoch (45,000 training images) on this machine, from `steps` timed training steps."""
    import numpy as np

    from common import training

    rows = []
    for name, overrides in full_models().items():
        config = build_config(cifar10.Cifar10Config, profile="full", overrides=overrides)
        data = _FakeData()
        model = training.build_seeded(cnn.build_cnn, config, data)
        training.compile_model(model, config, steps_per_epoch=100)
        x = np.random.default_rng(0).uniform(0, 255, (config.batch_size, 32, 32, 3)).astype("float32")
        y = np.eye(10, dtype="float32")[np.arange(config.batch_size) % 10]
        model.train_on_batch(x, y)  # compile the step function first
        started = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        per_step = (time.perf_counter() - started) / steps
        rows.append({"model": name, "params": model.count_params(), "batch size": config.batch_size,
                     "s per epoch (CPU here)": f"{per_step * np.ceil(45000 / config.batch_size):.0f}"})
        print(rows[-1], flush=True)
    return rows


class _FakeData:
    image_shape, num_classes = (32, 32, 3), 10
    mean, variance = [125.0, 123.0, 114.0], [3900.0, 3800.0, 4400.0]


def load_state():
    return read_rows(ROWS_FILE, {"rows": {}, "exports": [], "epochs": []})


def render(state):
    """The section from the recorded rows alone: each table's stamps are spelled out below it."""
    body = ("## CIFAR-10 (`tasks/cifar10.py`)\n\n"
            + "- data: " + (state.get("data") or "CIFAR-10") + "; the 50,000 training images less 5,000 "
              "held out for validation (seed 42) and, where a row has held-out numbers, less the first "
              "4,000, held out as their lossless originals and scored on them and on their JPEG versions "
              "(held-out lossless / JPEG: the difference is what the JPEG copy costs); all 10,000 test "
              "images for the test accuracy; best val accuracy: the highest validation accuracy over the "
              "run's epochs\n\n")
    tables = [(list(state["rows"].values()), COLUMNS, "cifar10", ""),
              (state.get("exports", []), EXPORT_COLUMNS, "cifar10",
               f"Exported files of `{state['exports'][0]['model']}`, each loaded back from disk and run on "
               "the 10,000 test images:\n\n" if state.get("exports") else ""),
              (state.get("epochs", []), EPOCH_COLUMNS, None,
               "CPU time per epoch here of the full-profile recipes (timed training steps on random images, "
               "`python -m benchmarks.cifar10 --epoch-times`):\n\n")]
    for rows, columns, lesson, title in tables:
        if rows:
            shown, notes = labelled(rows, [lesson] * len(rows))
            body += title + format_table(shown, columns) + "\n\nStamps:\n\n" + notes + "\n\n"
    return body + airbench.render(state, labelled, format_table)


def render_recorded():
    state = load_state()
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("cifar10", render(state))
    return 0


if __name__ == "__main__":
    run(main)
