"""What distributed training costs on this machine: the CIFAR-10 fast net and ResNet-20, trained by one
process and by 2 loopback workers (`--distribution multi_worker` through `python -m tasks.distributed`), with
the same global batch, the same images and the same epochs.

    python -m benchmarks.distribution                           # fast and resnet20, 3 epochs of 10,000 images
    python -m benchmarks.distribution --models resnet20 --max-images 45000 --epochs 2 --workers 1,2,4
    python -m benchmarks.distribution --workers 1,mirrored                    # a GPU machine: all its GPUs

On a machine without GPUs every worker trains on the same CPU cores as the others, so these numbers measure
the overhead of distribution (a second process with its own input pipeline, an all-reduce of every gradient
per step over loopback gRPC, synchronised batch norm), not a speed-up: a speed-up needs one GPU, or one
machine, per worker. On a machine with GPUs, `mirrored` in --workers adds the row that matters there: one
process over every local GPU (`--distribution mirrored`); loopback workers would each take every GPU. The time
per epoch is the chief's training time divided by the epochs (the first epoch's tracing included); images/s
counts the training images of every epoch; the wall time runs from the command's start (TensorFlow import and
data loading included) to its end. Writes the "distribution" section of RESULTS.md.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command_line, facts_block, publish, stamp  # noqa: E402
from common.tables import format_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["model", "workers", "global batch", "epochs", "s per epoch", "images/s", "vs 1 worker",
           "test accuracy", "wall time (s)", "command"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="fast,resnet20", help="comma-separated CIFAR-10 architectures")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (1: no distribution), "
                        "or 'mirrored' (one process over every local GPU)")
    parser.add_argument("--epochs", type=int, default=3)
    # --limit: the old name, still accepted (it was the lesson's name too).
    parser.add_argument("--max-images", "--limit", type=int, default=10000,
                        help="images per split read (--max-images of the lesson)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    measured = stamp(command_line("benchmarks.distribution"))
    rows = []
    for model in args.models.split(","):
        measured_rows = [measure(args, model, workers if workers == "mirrored" else int(workers))
                         for workers in args.workers.split(",")]
        one = next((row["_per_epoch"] for row in measured_rows if row["workers"] == 1), None)
        for row in measured_rows:
            per_epoch = row.pop("_per_epoch")
            row["vs 1 worker"] = f"{per_epoch / one:.2f}x" if one else ""
        rows += measured_rows
    cpu_only = "no GPU" in measured["machine"]
    body = ("## Distributed training on this machine" + (": overhead, not speed-up" if cpu_only else "")
            + "\n\n" + facts_block(measured, "cifar10")
            + "\nThe same CIFAR-10 run trained by one process and distributed (loopback workers: "
            "`--distribution multi_worker` through `python -m tasks.distributed`; `mirrored`: one process "
            "over every local GPU), same global batch. \"vs 1 worker\" is the time per epoch relative to one "
            "process. "
            + ("On this CPU machine the workers share the same cores: the times show what distribution "
               "costs, not what it gains (that needs one GPU or one machine per worker).\n\n" if cpu_only
               else "\n\n")
            + format_table(rows, COLUMNS))
    publish("distribution", body)
    return 0


def measure(args, model, workers):
    """One lesson run (via the launcher for several workers); its numbers from the chief's metrics.json."""
    lesson = ["python", "-m", "tasks.cifar10", "--profile", args.profile, "--model", model, "--epochs",
              str(args.epochs), "--max-images", str(args.max_images), "--verbose", "2", "--no-export",
              "--no-tta"]
    if workers == "mirrored":
        command = lesson + ["--distribution", "mirrored"]
    else:
        command = (["python", "-m", "tasks.distributed", "--workers", str(workers), "--"] if workers > 1
                   else []) + lesson
    with tempfile.TemporaryDirectory() as output_dir:
        where = ["--output-dir", output_dir, "--run-id", "bench"] + (["--data-dir", args.data_dir]
                                                                    if args.data_dir else [])
        started = time.perf_counter()
        subprocess.run([sys.executable if part == "python" else part for part in command + where], cwd=ROOT,
                       check=True)
        wall = time.perf_counter() - started
        run_dir = Path(output_dir) / "cifar10" / "bench"
        result = json.loads((run_dir / "metrics.json").read_text())["results"][model]
        config = json.loads((run_dir / "config.json").read_text())
    per_epoch = result["time_per_epoch_s"]
    print(f"{model}, {workers} worker(s): {per_epoch:.1f} s per epoch", flush=True)
    return {"model": model, "workers": workers, "global batch": config["batch_size"],
            "epochs": result["epochs"], "s per epoch": f"{per_epoch:.1f}",
            "images/s": f"{result['images_per_s']:.0f}", "test accuracy": f"{result['test_accuracy']:.4f}",
            "wall time (s)": f"{wall:.0f}", "command": "`" + " ".join(command) + "`", "_per_epoch": per_epoch}


if __name__ == "__main__":
    sys.exit(main())
