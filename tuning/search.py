"""Hyperparameter search over a task's config with KerasTuner.

    python -m tuning.search --task phone_price --tuner random --max-trials 30
    python -m tuning.search --task phone_price --tuner bayesian --max-trials 30 --profile quick
    python -m tuning.search --task phone_price --compare activation --seeds 3
    python -m tasks.phone_price --config tuning_runs/phone_price/random-quick/best.json --profile full

A search lives in `tuning_runs/<task>/<name>/` (name: `<tuner>-<profile>`, or `compare-<what>-<profile>`).
Running the same command again resumes it, even after a kill: finished trials are kept, not rerun, and the
trial that was running starts again (grid and `--compare` searches too, see tuning/grid.py; a larger
`--max-trials` adds trials); a search resumes through `python -m tuning.distributed` as well, and the other
way round. A rerun whose settings differ from those in the folder's `search.json` (epochs, objective, space,
config...) is refused, naming them: `--overwrite` starts afresh, another `--name` keeps both. One process at
a time works in a folder (a lock; a second one is refused). A trial that crashes or whose loss becomes NaN
is recorded as failed and the search goes on, up to `--max-failures` failures in a row. At the end the
report (`trials.csv`, `trials.md`, plots, `best.json`) is written; `python -m
tuning.report <dir>` writes it at any time.

Every trial writes TensorBoard logs into `<search folder>/tensorboard/<trial>/` with KerasTuner's HParams
summaries (on the TensorFlow backend; `--no-tensorboard` turns them off, as in the lessons): watch a running
search with `tensorboard --logdir tuning_runs/<task>/<name>` (HParams tab: table, parallel coordinates and
scatter plots of every trial's hyperparameters against its metrics).

`--median-stopping` (random and Bayesian searches) stops a trial after an epoch at which its best objective so
far is worse than the median of the completed trials' running averages at that epoch (Google Vizier's median
stopping rule, tuning/stopping.py), once `--median-min-trials` trials have completed and after
`--median-grace-epochs` epochs.

`--compare NAME` answers the course's "which one works best" questions: a grid over every value of one
hyperparameter (activation, initializer, optimizer, dropout), everything else at the task's defaults, each
value trained with `--seeds` seeds, learning curves side by side.

Scale-out uses KerasTuner's own chief/worker mode (see `python -m tuning.distributed`): one trial per
process. Each trial itself can use every device of its machine: `--distribution mirrored`
(tf.distribute.MirroredStrategy, TensorFlow) or `--distribution data_parallel`
(keras.distribution.DataParallel, JAX), as in the lessons (common/distribution.py).
"""

import argparse
import math
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run
from common.errors import UserError

quiet_tensorflow()

TUNERS = ("random", "hyperband", "bayesian", "grid")
# Said on Ctrl-C: a search resumes from its folder (--directory, --name), not from a lesson's --run-id.
INTERRUPTED = ("interrupted: rerun the same command (same --directory and --name) to resume the search; "
               "finished trials are kept and the trial that was running starts again.")
MEDIAN_MIN_TRIALS = 5  # as Optuna's MedianPruner (n_startup_trials): fewer make the median a coin toss


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
    parser.add_argument("--objective", default="val_accuracy",
                        help="metric to maximise (val_* to minimise loss)")
    parser.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                        help="TensorBoard logs per trial with the HParams dashboard, in <search>/tensorboard "
                        "(TensorFlow backend: KerasTuner adds the HParams there only)")
    parser.add_argument("--median-stopping", action="store_true",
                        help="stop a trial whose best objective so far is worse than the median of the "
                        "completed trials' running averages at the same epoch (random and bayesian)")
    parser.add_argument("--median-min-trials", type=int,
                        help="--median-stopping: completed trials needed first "
                        f"(default {MEDIAN_MIN_TRIALS})")
    parser.add_argument("--median-grace-epochs", type=int,
                        help="--median-stopping: epochs every trial runs (default: a tenth of the epochs)")
    parser.add_argument("--max-failures", type=int, default=3,
                        help="stop after this many failed trials in a row")
    parser.add_argument("--directory", default="tuning_runs", help="root of the searches")
    parser.add_argument("--name", help="name of the search folder (default: <tuner>-<profile>)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--distribution", choices=("none", "mirrored", "multi_worker", "data_parallel"),
                        default="none", help="each trial on every local device: mirrored (all GPUs, "
                        "tf.distribute.MirroredStrategy) or data_parallel (keras.distribution.DataParallel, "
                        "JAX); multi_worker is the lessons' (KerasTuner runs one trial per process: spread "
                        "trials with python -m tuning.distributed); the batch size stays the global batch")
    parser.add_argument("--seed", type=int, default=42, help="seed of the tuner and of the first execution")
    parser.add_argument("--data-dir", help="data root (see the task's --help)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return parser


def check_args(args):
    from common import runs
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
    if args.name is not None:
        runs.check_plain_name(args.name, "--name")
    check_median_args(args)
    if args.distribution == "multi_worker":
        raise UserError("--distribution multi_worker trains one model over several processes, but "
                        "KerasTuner runs one trial per process: spread the trials with python -m "
                        "tuning.distributed, and give each trial its machine's devices with --distribution "
                        "mirrored or data_parallel.")


def check_median_args(args):
    if not args.median_stopping:
        if args.median_min_trials is not None or args.median_grace_epochs is not None:
            raise UserError("--median-min-trials and --median-grace-epochs need --median-stopping.")
        return
    if args.compare or args.tuner in ("hyperband", "grid"):
        raise UserError("--median-stopping works with --tuner random or bayesian (hyperband stops trials "
                        "by its brackets; grids and --compare train every value fully to compare them).")
    if args.median_min_trials is not None and args.median_min_trials < 1:
        raise UserError(f"--median-min-trials must be at least 1, got {args.median_min_trials}.")
    if args.median_grace_epochs is not None and args.median_grace_epochs < 0:
        raise UserError(f"--median-grace-epochs must be 0 or more, got {args.median_grace_epochs}.")


def median_rule(args, base):
    """The median-stopping rule of this search, or None (tuning/stopping.py)."""
    from tuning.stopping import MedianRule

    if not args.median_stopping:
        return None
    grace = args.median_grace_epochs
    return MedianRule(args.objective, "min" if "loss" in args.objective else "max",
                      min_trials=args.median_min_trials or MEDIAN_MIN_TRIALS,
                      grace_epochs=max(1, math.ceil(base.epochs / 10)) if grace is None else grace)


def search_callbacks(args, folder):
    """Callbacks for every trial: KerasTuner copies a TensorBoard callback per trial into
    `tensorboard/<trial>/execution<n>` and adds its HParams callback (TensorFlow backend only; elsewhere all
    trials would write into one folder)."""
    import keras

    if not args.tensorboard or keras.backend.backend() != "tensorflow":
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard"))]


def project_dir(args):
    default = f"compare-{args.compare}-{args.profile}" if args.compare else f"{args.tuner}-{args.profile}"
    name = args.name or default
    return Path(args.directory) / args.task / name


def make_tuner(args, hypermodel, folder):
    import keras_tuner

    from common import distribution
    from tuning import folder as folders
    from tuning.grid import grid_search

    direction = "min" if "loss" in args.objective else "max"
    common = {
        "hypermodel": hypermodel, "objective": keras_tuner.Objective(args.objective, direction),
        "directory": str(folder.parent), "project_name": folder.name, "seed": args.seed,
        "max_consecutive_failed_trials": args.max_failures,
        "executions_per_trial": args.seeds if args.compare else args.executions_per_trial}
    if distribution.active().strategy is not None:  # KerasTuner's own switch: builds each trial in its scope
        common["distribution_strategy"] = distribution.active().strategy
    # KerasTuner 1.4.8 reloads a search only if this process's own `<tuner id>.json` is in the folder: a plain
    # search leaves tuner0.json, a distributed one chief.json (and its workers' tuner<i>.json). Resumed in the
    # other mode, a fresh oracle would train the finished trials again over their files. Those tuner files
    # hold nothing (`{}`): the oracle, reloaded from oracle.json as KerasTuner's own reload does (each kind of
    # oracle with its own state), is the whole search. A worker's oracle is the chief's: nothing to reload.
    tuner_file = folder / f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner0')}.json"
    reload_oracle = (not is_worker() and (folder / folders.ORACLE_NAME).exists()
                     and not tuner_file.exists())
    try:
        if args.compare:
            tuner = grid_search(max_trials=10_000, **common)  # the grid's size decides
        elif args.tuner == "hyperband":
            tuner = keras_tuner.Hyperband(max_epochs=hypermodel.base_config.epochs, factor=3, **common)
        else:
            tuner_cls = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization,
                         "grid": grid_search}[args.tuner]
            tuner = tuner_cls(max_trials=args.max_trials, **common)
        if reload_oracle:
            if args.verbose:
                print(f"Reloading Oracle from {folder / folders.ORACLE_NAME}")
            tuner.oracle.reload()
    except RuntimeError as error:
        # KerasTuner's reload found an oracle.json without a setting its oracle keeps (folders.check_readable
        # checks those all oracles keep).
        if "Error reloading `Oracle`" not in str(error):
            raise
        raise UserError(f"{folder / folders.ORACLE_NAME} is damaged (not KerasTuner's record of this "
                        f"search), so the search cannot resume; {folders.START_AFRESH}.") from None
    recover_interrupted_trials(tuner.oracle)
    return tuner


def recover_interrupted_trials(oracle):
    """Make a reloaded search agree with itself after a kill between KerasTuner's two saves.

    KerasTuner writes a trial's trial.json first and oracle.json (which lists the running trials) second,
    both when a trial starts and when it ends. Killed in between, the two disagree: a trial RUNNING on disk
    that oracle.json never listed would count towards --max-trials and never run; a trial COMPLETED on disk
    that oracle.json still lists would be trained again. The first kind joins the oracle's retry queue, the
    second leaves it. (A worker's oracle is a client of the chief's and holds no trials: nothing to do.)"""
    queue = getattr(oracle, "_retry_queue", None)
    if queue is None:
        return
    from keras_tuner.engine.trial import TrialStatus

    queue[:] = [tid for tid in queue if oracle.trials[tid].status != TrialStatus.COMPLETED]
    queue += [tid for tid, trial in oracle.trials.items()
              if trial.status == TrialStatus.RUNNING and tid not in queue]


def is_worker():
    """True in a KerasTuner worker process (KERASTUNER_TUNER_ID=tuner0, tuner1, ...)."""
    return os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


def search_settings(args, base, space, rule=None):
    """What decides a search's results, as written to `search.json` and compared when it is rerun."""
    from tuning import spaces

    median = None if rule is None else {"min_trials": rule.min_trials, "grace_epochs": rule.grace_epochs}
    return {
        "task": args.task, "tuner": "grid" if args.compare else args.tuner, "profile": args.profile,
        "compare": args.compare, "objective": args.objective,
        "executions_per_trial": args.seeds if args.compare else args.executions_per_trial,
        "space": spaces.describe(space), "base_config": base.to_dict(), "median_stopping": median}


def check_resumable(args, folder, settings):
    """Refuse to resume a search whose settings changed (it would rank unlike trials together)."""
    from common.runs import RESUMABLE_CHANGES
    from tuning import folder as folders

    before = None if args.overwrite else folders.stored_settings(folder)
    if before is None:
        return
    before.setdefault("median_stopping", None)  # searches from before median stopping existed ran without
    changed = folders.differences(before, settings, same_anyway=RESUMABLE_CHANGES)
    if changed:
        raise UserError(f"search {folder} was started with other settings ({'; '.join(changed)}); rerun the "
                        "original command to resume it, add --overwrite to start afresh, or choose another "
                        "--name.")


def check_objective(args, hypermodel):
    logged = hypermodel.logged_metrics()
    if args.objective not in logged:
        raise UserError(f"--objective {args.objective} is not a metric the {args.task} task logs; choose one "
                        f"of: {', '.join(logged)}.")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    try:
        return search(args)
    except PermissionError as error:
        raise UserError(f"cannot write {error.filename or 'the search folder'}: permission denied; make it "
                        "writable or choose another --directory.") from None


def search(args):
    from common import distribution
    from common.config import build_config
    from tuning import folder as folders
    from tuning import report, spaces, tasks
    from tuning.hypermodel import TaskHyperModel

    spec = tasks.get(args.task)
    overrides = {"tensorboard": False, "verbose": 0, "seed": args.seed, "distribution": args.distribution}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    # The model is sampled per trial, so no model's own profile (CIFAR-10's airbench settings for its fast
    # net) is the base of every trial.
    base = build_config(spec.config_cls, profile=args.profile, config_file=args.config, overrides=overrides,
                        model_profiles=False)
    distribution.setup(base)  # refuses a mode this backend cannot run, before any folder is touched
    folder = project_dir(args)
    folders.check_location(folder)
    space = spaces.comparison(args.compare, spec.comparisons[args.compare]) if args.compare else spec.space
    rule = median_rule(args, base)
    settings = folders.normalized(search_settings(args, base, space, rule))
    if not is_worker():
        check_resumable(args, folder, settings)
    hypermodel = TaskHyperModel(args.task, base, space=space, curves_dir=folder / "curves", median_rule=rule)
    check_objective(args, hypermodel)
    folders.write_keras_tuner_files_whole()
    if is_worker():  # the chief holds the lock and owns search.json; workers only run trials
        tuner = make_tuner(args, hypermodel, folder)
        tuner.search(verbose=args.verbose, callbacks=search_callbacks(args, folder))
        return 0
    with folders.lock(folder):
        if args.overwrite:
            folders.clear(folder)
        if folders.stored_settings(folder) is None:
            folders.write_settings(folder, settings)
        folders.check_readable(folder)
        callbacks = search_callbacks(args, folder)
        if callbacks and args.verbose:
            print(report.tensorboard_line(folder))
        stopped = run_search(make_tuner(args, hypermodel, folder), args, callbacks)
        rows = report.write_report(folder)
    print(report.summary_text(folder, rows))
    if stopped or not any(row["status"] == "COMPLETED" for row in rows):
        raise UserError(stopped or f"no trial of {folder} finished (see trials.md for each one's status).")
    return 0


# Ctrl-C seen during a search: module-level, since KerasTuner deep-copies the callbacks for every trial.
INTERRUPTS = []


def note_interrupt(signum, frame):
    """SIGINT during a search: noted, then raised as usual."""
    INTERRUPTS.append(signum)
    raise KeyboardInterrupt


def stop_on_interrupt():
    """A callback that raises KeyboardInterrupt at the next batch or epoch once Ctrl-C was seen: a
    KeyboardInterrupt that lands inside a TensorFlow op can come out as an error that KerasTuner records as
    a failed trial and goes on, so the search would not stop."""
    import keras

    class StopOnInterrupt(keras.callbacks.Callback):
        def check(self, *args, **kwargs):
            if INTERRUPTS:
                raise KeyboardInterrupt

        on_train_begin = on_epoch_end = on_train_batch_end = on_test_batch_end = check

    return StopOnInterrupt()


def run_search(tuner, args, callbacks=()):
    """KerasTuner's search; its "too many failures" error becomes a sentence to say after the report."""
    import signal

    INTERRUPTS.clear()  # a search run in-process after an interrupted one (tests) starts clean
    previous = signal.signal(signal.SIGINT, note_interrupt)
    try:
        tuner.search(verbose=args.verbose, callbacks=[*callbacks, stop_on_interrupt()])
    except Exception as error:
        if INTERRUPTS:  # a Ctrl-C that KerasTuner wrapped (a bare except: in its callback copy)
            raise KeyboardInterrupt from None
        if not isinstance(error, RuntimeError) or "consecutive failures" not in str(error):
            raise
        # KerasTuner raises before it saves the trial that failed last: save it, so the report says FAILED.
        for trial in tuner.oracle.trials.values():
            if trial.status == "FAILED":
                trial.save(str(Path(tuner.project_dir) / f"trial_{trial.trial_id}" / "trial.json"))
        last = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        return (f"the search stopped after {args.max_failures} failed trials in a row (--max-failures); the "
                f"last one ended with: {last[-1] if last else 'no message'}")
    finally:
        signal.signal(signal.SIGINT, previous)
    if INTERRUPTS:  # a Ctrl-C swallowed on the way must not end the search as if it were done
        raise KeyboardInterrupt
    return None


if __name__ == "__main__":
    run(main, interrupted=INTERRUPTED)
