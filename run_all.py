"""Run every task (optionally on several Keras backends) and print one summary table.

    python run_all.py                          # quick profile, every task in tasks/
    python run_all.py --profile smoke          # seconds per task
    python run_all.py --tasks phone_price --backends tensorflow,jax,torch

Each task runs in its own process (a crash or a backend switch cannot leak into the next one), writes its
run folder under `<output-dir>/<task>/<run-id>/` (`--run-id`, or all-<date>-<time>-<backend>), and its
`metrics.json` summary rows are gathered into `<output-dir>/summary.md` and `summary.json`. `--output-dir`
is the repo's `runs/` unless given (a relative one is taken from the current folder, like every other path on
the command line), so the script works from any folder. Every flag it passes on to the tasks is checked
against each task before the first one starts.

A failing task is reported and the others still run; the exit code is 1 if any task failed, and the summary
then goes to `summary-failed.md` / `summary-failed.json` beside the last good `summary.md`, which is kept.
Summaries are written to a temporary name and renamed into place, so an interrupted run_all never leaves half
a table.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import runs
from common.errors import UserError, run_cli
from common.tables import format_table

ROOT = Path(__file__).resolve().parent

COLUMNS = ["task", "backend", "model", "metric", "value", "params", "train_time_s", "run_dir"]
BACKENDS = ("tensorflow", "jax", "torch")


def available_tasks():
    """Every lesson script in tasks/ (a module with a main; launchers such as tasks.distributed are not
    lessons)."""
    from tasks import LAUNCHERS

    return sorted(p.stem for p in (ROOT / "tasks").glob("*.py")
                  if not p.stem.startswith("_") and p.stem not in LAUNCHERS)


def config_class(task):
    module = importlib.import_module(f"tasks.{task}")
    return next(value for value in vars(module).values()
                if isinstance(value, type) and getattr(value, "TASK", None) == task)


def check_task_flags(task, profile, output_dir, extra):
    """Build the task's config from the flags run_all would pass it, so a bad value stops everything before
    the first task starts (instead of failing every task after an hour of the others)."""
    from common.config import add_config_arguments, config_from_namespace

    cls = config_class(task)
    parser = add_config_arguments(argparse.ArgumentParser(add_help=False, exit_on_error=False), cls)
    try:
        namespace, unknown = parser.parse_known_args(["--profile", profile, "--output-dir", str(output_dir),
                                                      *extra])
    except argparse.ArgumentError as error:
        raise UserError(f"{error} (passed on to tasks.{task}); use --tasks to leave out a task without "
                        "that setting.") from None
    if unknown:
        raise UserError(f"tasks.{task} has no setting {' '.join(unknown)}; use --tasks to leave out a task "
                        "without that setting.")
    config_from_namespace(cls, namespace)


def run_task(task, backend, profile, output_dir, run_id, extra_args):
    # The task runs in the caller's folder, so relative paths among the flags mean what the user meant;
    # PYTHONPATH makes `-m tasks.<task>` importable from anywhere.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
    command = [sys.executable, "-m", f"tasks.{task}", "--profile", profile, "--output-dir", str(output_dir),
               "--run-id", run_id, *extra_args]
    print(f"\n=== {task} [{backend}, {profile}]: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, env=env)
    elapsed = round(time.perf_counter() - started, 1)
    run_dir = Path(output_dir) / task / run_id
    summary = _summary_rows(run_dir / "metrics.json") if code == 0 else None
    if summary is None:
        return [{"task": task, "backend": backend, "model": "-", "metric": "FAILED", "value": f"exit {code}",
                 "params": "", "train_time_s": elapsed, "run_dir": str(run_dir)}], False
    return [{"task": task, "backend": backend, **row, "run_dir": str(run_dir)} for row in summary], True


def _summary_rows(metrics_path):
    """The summary rows of a finished run, or None when its metrics.json is missing or unreadable."""
    try:
        rows = json.loads(metrics_path.read_text())["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None


def write_summary(output_dir, profile, stamp, rows, failed):
    """summary.md/.json when every task passed; summary-failed.md/.json otherwise (the last good one
    stays)."""
    table = format_table(rows, COLUMNS)
    name = "summary-failed" if failed else "summary"
    output_dir.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(output_dir / f"{name}.md",
                           f"# run_all.py --profile {profile} ({stamp})\n\n{table}\n")
    runs.atomic_write_text(output_dir / f"{name}.json", json.dumps(
        {"profile": profile, "started": stamp, "rows": rows, "failed": failed}, indent=2) + "\n")
    return table, output_dir / f"{name}.md"


def run_id_for(run_id, stamp, backend, backends):
    """The run folder's name for one backend: run_all's own --run-id (taken here, not passed on, so that the
    summary looks in the folder the task wrote), one per backend when there are several."""
    if run_id is None:
        return f"all-{stamp}-{backend}"
    return run_id if len(backends) == 1 else f"{run_id}-{backend}"


def parse_arguments(argv):
    tasks = available_tasks()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--tasks", default=",".join(tasks), help=f"comma-separated, from: {', '.join(tasks)}")
    parser.add_argument("--backends", default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                        help="comma-separated Keras backends: tensorflow, jax, torch")
    parser.add_argument("--output-dir", default=str(ROOT / "runs"),
                        help="root of the run folders and the summary (default: runs/ of this repo)")
    parser.add_argument("--run-id", help="name of every task's run folder (-<backend> added when there are "
                                         "several backends); default: all-<date>-<time>-<backend>")
    args, extra = parser.parse_known_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in args.tasks if t not in tasks]
    if unknown or not args.tasks:
        raise UserError(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; "
                        f"valid tasks: {', '.join(tasks)}.")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in args.backends if b not in BACKENDS]
    if bad or not args.backends:
        raise UserError(f"--backends: unknown backend(s) {', '.join(bad) or '(none given)'}; "
                        f"valid: {', '.join(BACKENDS)}.")
    if args.run_id is not None:
        runs.check_plain_name(args.run_id)
    args.output_dir = Path(args.output_dir).expanduser().resolve()
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UserError(f"--output-dir {args.output_dir} is a file; expected a folder for the runs and the "
                        "summary.")
    return args, extra


def main(argv=None):
    args, extra = parse_arguments(argv)
    for task in args.tasks:
        check_task_flags(task, args.profile, args.output_dir, extra)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows, failed = [], []
    for backend in args.backends:
        run_id = run_id_for(args.run_id, stamp, backend, args.backends)
        for task in args.tasks:
            task_rows, ok = run_task(task, backend, args.profile, args.output_dir, run_id, extra)
            rows += task_rows
            if not ok:
                failed.append(f"{task} [{backend}]")
    table, summary_path = write_summary(args.output_dir, args.profile, stamp, rows, failed)
    print(f"\n{table}\n\nsummary: {summary_path}")
    if failed:
        print(f"failed: {', '.join(failed)} (the last complete summary, if any, is still "
              f"{args.output_dir / 'summary.md'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
