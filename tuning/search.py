"""Hyperparameter search over a task's config with KerasTuner.

    python -m tuning.search --task phone_price --tuner random --max-trials 30
    python -m tuning.search --task phone_price --tuner bayesian --max-trials 30 --profile quick
    python -m tuning.search --task phone_price --compare activation --seeds 3
    python -m tasks.phone_price --config tuning_runs/phone_price/random-quick/best.json --profile full

A search lives in `tuning_runs/<task>/<name>/` (name: `<tuner>-<profile>`, or `compare-<what>-<profile>`).
Running the same command again resumes it: finished trials are kept, not rerun (`--overwrite` starts
afresh). A trial that crashes or whose loss becomes NaN is recorded as failed and the search goes on, up to
`--max-failures` failures in a row. At the end the report (`trials.csv`, `trials.md`, plots, `best.json`) is
written; `python -m tuning.report <dir>` writes it at any time.

`--compare NAME` answers the course's "which one works best" questions: a grid over every value of one
hyperparameter (activation, initializer, optimizer, dropout), everything else at the task's defaults, each
value trained with `--seeds` seeds, learning curves side by side.

Scale-out uses KerasTuner's own chief/worker mode (see `python -m tuning.distributed`); on one machine with
several GPUs, `--distribution mirrored` trains each trial with tf.distribute.MirroredStrategy.
"""

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402
from common.errors import UserError  # noqa: E402

quiet_tensorflow()

TUNERS = ("random", "hyperband", "bayesian", "grid")


def build_parser():
    from tuning import tasks

    parser = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help=f"one of: {', '.join(tasks.TASKS)}")
    parser.add_argument("--tuner", default="random", help=f"one of: {', '.join(TUNERS)}")
    parser.add_argument("--max-trials", type=int, default=30,
                        help="number of trials (hyperband: its brackets decide; this caps nothing)")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--config", help="JSON of fixed settings for every trial (task config format)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the profile's)")
    parser.add_argument("--compare", help="grid over every value of one hyperparameter, several seeds each: "
                        "activation, initializer, optimizer, dropout (imdb: model, not activation)")
    parser.add_argument("--seeds", type=int, default=3, help="--compare: seeds per value")
    parser.add_argument("--executions-per-trial", type=int, default=1,
                        help="train each configuration this many times (next seed each) and average")
    parser.add_argument("--objective", default="val_accuracy", help="metric to maximise (val_* to minimise loss)")
    parser.add_argument("--max-failures", type=int, default=3, help="stop after this many failed trials in a row")
    parser.add_argument("--directory", default="tuning_runs", help="root of the searches")
    parser.add_argument("--name", help="name of the search folder (default: <tuner>-<profile>)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--distribution", choices=("none", "mirrored"), default="none",
                        help="mirrored: each trial on all local GPUs (tf.distribute.MirroredStrategy)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the tuner and of the first execution")
    parser.add_argument("--data-dir", help="data root (see the task's --help)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return parser


def check_args(args):
    from tuning import tasks

    spec = tasks.get(args.task)
    if args.compare and args.compare not in spec.comparisons:
        raise UserError(f"--compare {args.compare} is not offered for {args.task}; "
                        f"choose one of: {', '.join(spec.comparisons)}.")
    if args.tuner not in TUNERS:
        raise UserError(f"unknown tuner '{args.tuner}'; valid tuners: {', '.join(TUNERS)}.")
    if args.max_trials < 1:
        raise UserError(f"--max-trials must be at least 1, got {args.max_trials}.")
    if args.seeds < 1 or args.executions_per_trial < 1:
        raise UserError("--seeds and --executions-per-trial must be at least 1.")
    if args.max_failures < 1:
        raise UserError(f"--max-failures must be at least 1, got {args.max_failures}.")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}.")


def project_dir(args):
    name = args.name or (f"compare-{args.compare}-{args.profile}" if args.compare else f"{args.tuner}-{args.profile}")
    return Path(args.directory) / args.task / name


def make_tuner(args, hypermodel, folder):
    import keras_tuner

    direction = "min" if "loss" in args.objective else "max"
    common = dict(
        hypermodel=hypermodel, objective=keras_tuner.Objective(args.objective, direction),
        directory=str(folder.parent), project_name=folder.name, overwrite=args.overwrite, seed=args.seed,
        max_consecutive_failed_trials=args.max_failures,
        executions_per_trial=args.seeds if args.compare else args.executions_per_trial)
    if args.distribution == "mirrored":
        import tensorflow as tf

        common["distribution_strategy"] = tf.distribute.MirroredStrategy()
    if args.compare:
        return keras_tuner.GridSearch(max_trials=10_000, **common)  # the grid's size decides
    if args.tuner == "hyperband":
        return keras_tuner.Hyperband(max_epochs=hypermodel.base_config.epochs, factor=3, **common)
    tuner_cls = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization,
                 "grid": keras_tuner.GridSearch}[args.tuner]
    return tuner_cls(max_trials=args.max_trials, **common)


def is_worker():
    """True in a KerasTuner worker process (KERASTUNER_TUNER_ID=tuner0, tuner1, ...)."""
    return os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    from common.config import build_config
    from tuning import report, spaces, tasks
    from tuning.hypermodel import TaskHyperModel

    spec = tasks.get(args.task)
    overrides = dict(tensorboard=False, verbose=0, seed=args.seed)
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    base = build_config(spec.config_cls, profile=args.profile, config_file=args.config, overrides=overrides)
    folder = project_dir(args)
    space = spaces.comparison(args.compare, spec.comparisons[args.compare]) if args.compare else None
    hypermodel = TaskHyperModel(args.task, base, space=space, curves_dir=folder / "curves")
    tuner = make_tuner(args, hypermodel, folder)  # with --overwrite this empties the folder
    folder.mkdir(parents=True, exist_ok=True)
    if not is_worker():
        (folder / "search.json").write_text(json.dumps({
            "task": args.task, "tuner": "grid" if args.compare else args.tuner, "profile": args.profile,
            "compare": args.compare, "objective": args.objective, "base_config": base.to_dict()}, indent=2))
    tuner.search(verbose=args.verbose)
    if is_worker():
        return 0
    rows = report.write_report(folder)
    print(report.summary_text(folder, rows))
    return 0


if __name__ == "__main__":
    run(main)
