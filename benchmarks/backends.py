"""The same lesson, recipe and seed on Keras' TensorFlow, JAX and PyTorch backends: the accuracy each reaches
and its training time, measured in one run (`run_all.py --backends`, one process per task and backend).

    python -m benchmarks.backends --task phone_price
    python -m benchmarks.backends --task cifar10 -- --config recipes/cifar10_course_cnn.json --epochs 5

Arguments after `--` go to the lesson. Rows of earlier runs (other tasks) are kept in
benchmarks/backends_rows.json; writes the backends section of RESULTS.md.
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
from benchmarks.common import command_line, facts_block, measured, publish  # noqa: E402
from common.tables import format_table  # noqa: E402

ROWS_FILE = Path(__file__).resolve().parent / "backends_rows.json"
COLUMNS = ["task", "backend", "model", "metric", "value", "train time (s)", "measured", "command"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=run_all.available_tasks())
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory() as output_dir:
        code = run_all.main(["--tasks", args.task, "--backends", args.backends, "--profile", args.profile,
                             "--output-dir", output_dir, "--no-tensorboard", *extra])
        summary = json.loads((Path(output_dir) / "summary.json").read_text())
    stamp = measured()
    command = " ".join(["python -m tasks." + args.task, "--profile", args.profile, *extra])
    rows = [{"task": r["task"], "backend": r["backend"], "model": r["model"], "metric": r["metric"],
             "value": f"{r['value']:.4f}" if isinstance(r["value"], float) else r["value"],
             "train time (s)": f"{float(r['train_time_s']):.0f}" if r["train_time_s"] != "" else "",
             "measured": stamp,
             "command": f"`KERAS_BACKEND={r['backend']} {command}`"} for r in summary["rows"]]
    state = json.loads(ROWS_FILE.read_text()) if ROWS_FILE.exists() else {}
    state[args.task] = rows
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    body = ("## Backends: one recipe and seed on TensorFlow, JAX and PyTorch\n\n"
            + facts_block(command_line("benchmarks.backends"))
            + "\nThe same lesson command under each `KERAS_BACKEND`, in its own process, with the same seed and "
              "the same tf.data pipeline. Each backend's random generator turns the seed into its own initial "
              "weights and dropout masks, so the accuracies differ by about the spread between seeds, not by "
              "a fixed amount. Rows of earlier runs are kept.\n\n"
            + format_table([row for task in sorted(state) for row in state[task]], COLUMNS) + "\n")
    publish("backends", body)
    return code


if __name__ == "__main__":
    run(main)
