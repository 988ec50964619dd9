"""Run every task (optionally on several Keras backends) and print one summary table.

    python run_all.py                          # quick profile, every task in tasks/
    python run_all.py --profile smoke          # seconds per task
    python run_all.py --tasks phone_price --backends tensorflow,jax,torch

Each task runs in its own process (a crash or a backend switch cannot leak into the next one), writes its
run folder under `<output-dir>/<task>/<run-id>/`, and its `metrics.json` summary rows are gathered into
`<output-dir>/summary.md` and `summary.json`. A failing task is reported and the others still run; the exit
code is 1 if any task failed.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common.tables import format_table

ROOT = Path(__file__).resolve().parent
COLUMNS = ["task", "backend", "model", "metric", "value", "params", "train_time_s", "run_dir"]


def available_tasks():
    """Every lesson script in tasks/ (a module with a main)."""
    return sorted(p.stem for p in (ROOT / "tasks").glob("*.py") if not p.stem.startswith("_"))


def run_task(task, backend, profile, output_dir, run_id, extra_args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", f"tasks.{task}", "--profile", profile, "--output-dir", str(output_dir),
               "--run-id", run_id, *extra_args]
    print(f"\n=== {task} [{backend}, {profile}]: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    elapsed = round(time.perf_counter() - started, 1)
    run_dir = Path(output_dir) / task / run_id
    metrics_path = run_dir / "metrics.json"
    if code != 0 or not metrics_path.exists():
        return [{"task": task, "backend": backend, "model": "-", "metric": "FAILED", "value": f"exit {code}",
                 "params": "", "train_time_s": elapsed, "run_dir": str(run_dir)}], False
    summary = json.loads(metrics_path.read_text())["summary"]
    return [{"task": task, "backend": backend, **row, "run_dir": str(run_dir)} for row in summary], True


def main(argv=None):
    tasks = available_tasks()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--tasks", default=",".join(tasks), help=f"comma-separated, from: {', '.join(tasks)}")
    parser.add_argument("--backends", default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                        help="comma-separated Keras backends: tensorflow, jax, torch")
    parser.add_argument("--output-dir", default="runs", help="root of the run folders and the summary")
    args, extra = parser.parse_known_args(argv)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in tasks]
    if unknown or not chosen:
        parser.error(f"unknown task(s) {', '.join(unknown) or '(none given)'}; valid tasks: {', '.join(tasks)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("tensorflow", "jax", "torch")]
    if bad or not backends:
        parser.error(f"unknown backend(s) {', '.join(bad) or '(none given)'}; valid: tensorflow, jax, torch")

    output_dir = Path(args.output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows, failed = [], []
    for backend in backends:
        for task in chosen:
            task_rows, ok = run_task(task, backend, args.profile, output_dir, f"all-{stamp}-{backend}", extra)
            rows += task_rows
            if not ok:
                failed.append(f"{task} [{backend}]")
    table = format_table(rows, COLUMNS)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.md").write_text(f"# run_all.py --profile {args.profile} ({stamp})\n\n{table}\n")
    (output_dir / "summary.json").write_text(json.dumps(
        {"profile": args.profile, "started": stamp, "rows": rows, "failed": failed}, indent=2) + "\n")
    print(f"\n{table}\n\nsummary: {output_dir / 'summary.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
