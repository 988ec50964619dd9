"""The same lesson, recipe and seed on Keras' TensorFlow, JAX and PyTorch backends: the accuracy each reaches
and its training time, measured in one run (`run_all.py --backends`, one process per task and backend).

    python -m benchmarks.backends --task phone_price
    python -m benchmarks.backends --task cifar10 -- --config recipes/cifar10_course_cnn.json --epochs 5

Arguments after `--` go to the lesson. Rows of earlier runs (other tasks) are kept in
benchmarks/backends_rows.json, each with the stamp of the run that measured it; writes the backends section
of RESULTS.md. The lessons run with the user's defaults (TensorBoard logs included).

    python -m benchmarks.backends --render     # the section again from backends_rows.json, measuring nothing
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

import run_all  # noqa: E402
from benchmarks.common import command_line, labelled, publish, read_rows, stamp  # noqa: E402
from common.tables import format_table  # noqa: E402

ROWS_FILE = Path(__file__).resolve().parent / "backends_rows.json"
COLUMNS = ["task", "backend", "model", "metric", "value", "best val accuracy", "train time (s)", "stamp",
           "command"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=run_all.available_tasks(), help="required unless --render")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--render", action="store_true",
                        help="write the section from backends_rows.json only")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.render:
        return render_recorded()
    if not args.task:
        parser.error("--task is required")
    with tempfile.TemporaryDirectory() as output_dir:
        code = run_all.main(["--tasks", args.task, "--backends", args.backends, "--profile", args.profile,
                             "--output-dir", output_dir, *extra])
        summary = json.loads((Path(output_dir) / "summary.json").read_text())
        validation = [best_validation(r) for r in summary["rows"]]
    measured = stamp(command_line("benchmarks.backends"))
    command = " ".join(["python -m tasks." + args.task, "--profile", args.profile, *extra])
    rows = [{"task": r["task"], "backend": r["backend"], "model": r["model"], "metric": r["metric"],
             "value": f"{r['value']:.4f}" if isinstance(r["value"], float) else r["value"],
             "best val accuracy": val, "stamp": measured,
             "train time (s)": f"{float(r['train_time_s']):.0f}" if r["train_time_s"] != "" else "",
             "command": f"`KERAS_BACKEND={r['backend']} {command}`"}
            for r, val in zip(summary["rows"], validation, strict=True)]
    state = load_state()
    state[args.task] = rows
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("backends", render(state))
    return code


def best_validation(row):
    """The best validation accuracy of the model a summary row reports, from its run's metrics.json."""
    try:
        results = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())["results"]
    except (KeyError, OSError, ValueError):
        return ""
    value = results.get(row["model"], {}).get("best_val_accuracy")
    return f"{value:.4f}" if isinstance(value, float) else ""


def load_state():
    return read_rows(ROWS_FILE, {})


def render(state):
    rows = [row for task in sorted(state) for row in state[task]]
    shown, notes = labelled(rows, [row["task"] for row in rows])
    return ("## Backends: one recipe and seed on TensorFlow, JAX and PyTorch\n\n"
            "The same lesson command under each `KERAS_BACKEND`, in its own process, with the same seed and "
            "the same tf.data pipeline. Each backend's random generator turns the seed into its own initial "
            "weights and dropout masks, so the accuracies differ by about the spread between seeds, not by "
            "a fixed amount. Rows of earlier runs are kept; each row's stamp (date, machine, versions, "
            "commit, the benchmark command that measured it) is spelled out below the table.\n\n"
            + format_table(shown, COLUMNS) + "\n\nStamps:\n\n" + notes + "\n")


def render_recorded():
    state = load_state()
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("backends", render(state))
    return 0


if __name__ == "__main__":
    run(main)
