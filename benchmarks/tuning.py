"""Tuning benchmark on phone price: a 30-trial random search timed on this machine, its best configuration
retrained on the lesson's split against the hand-set default, and the `--compare activation` and
`--compare initializer` answers with their plots.

    python -m benchmarks.tuning            # writes the tuning section of RESULTS.md and benchmarks/plots/
    python -m benchmarks.tuning --median-stopping   # and the same search again with --median-stopping
    python -m benchmarks.tuning --compare-task imdb --compare initializer --seeds 2 --compare-epochs 1
    python -m benchmarks.tuning --compare-task cifar10 --compare activation,initializer --seeds 2 \
        --compare-epochs 3 --compare-config recipes/cifar10_course_cnn.json

Searches go to tuning_runs/benchmarks/phone_price/ (kept, so `python -m tuning.report` can reread them).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

import numpy as np  # noqa: E402

from benchmarks.common import command_line, facts_block, publish, stamp  # noqa: E402
from common.config import build_config  # noqa: E402
from common.tables import format_table  # noqa: E402
from common.runs import read_json  # noqa: E402
from tasks import phone_price  # noqa: E402
from tuning import report, search  # noqa: E402
from tuning.stopping import completed_curves  # noqa: E402

PLOTS = Path(__file__).resolve().parent / "plots"
DIRECTORY = Path("tuning_runs") / "benchmarks"


def run_search(task, *args):
    started = time.perf_counter()
    code = search.main(["--task", task, "--directory", str(DIRECTORY), "--overwrite", "--verbose", "0",
                        *args])
    assert code == 0
    return time.perf_counter() - started


def test_accuracy(config_file, seeds, output_dir):
    """Held-out test accuracy of the quick recipe (optionally with a --config file) over seeds, and the best
    validation accuracy of the same runs."""
    accuracies, validation = [], []
    for seed in range(seeds):
        run_id = f"{'best' if config_file else 'default'}-{seed}"
        config = build_config(phone_price.PhonePriceConfig, profile="quick", config_file=config_file,
                              overrides=dict(seed=seed, run_id=run_id, output_dir=str(output_dir),
                                             linear_baseline=False, verbose=0))
        phone_price.train(config)
        metrics = read_json(Path(output_dir) / "phone_price" / run_id / "metrics.json")
        accuracies.append(metrics["results"]["fnn"]["test_accuracy"])
        validation.append(metrics["results"]["fnn"]["best_val_accuracy"])
    return accuracies, validation


def search_row(label, elapsed, folder):
    """Wall time, epochs trained, trials stopped early and best validation accuracy of one search."""
    epochs = sum(len(curve) for curve in completed_curves(folder / "curves", "val_accuracy"))
    best = read_json(folder / "best.json")
    return {"search": label, "wall time": f"{elapsed / 60:.1f} min", "epochs trained": epochs,
            "trials stopped early": len(report.stopped_early(folder)),
            "best val accuracy": f"{best['_val_accuracy']:.4f}"}


def median_stopping_section(trials, epochs_flag, plain_time):
    """The random search again, same seed (so the same configurations in the same order), with
    --median-stopping: what the rule saves and what it costs in best validation accuracy."""
    median_time = run_search("phone_price", "--tuner", "random", "--max-trials", str(trials), *epochs_flag,
                             "--name", "random-median", "--median-stopping")
    folder = DIRECTORY / "phone_price"
    rows = [search_row("random search", plain_time, folder / "random"),
            search_row("random search, --median-stopping", median_time, folder / "random-median")]
    return (f"### Median stopping on the same {trials}-trial random search\n\n"
            "The same command with `--median-stopping` (default minimum of completed trials and grace "
            "epochs; same seed, so the same configurations are sampled):\n\n"
            + format_table(rows, list(rows[0])) + "\n\n")


def compare_sections(task, names, seeds, epochs=None, config=None):
    """Run `--compare NAME` for each name (quick profile); Markdown sections with tables and plots."""
    sections = []
    extra = (["--epochs", str(epochs)] if epochs else []) + (["--config", str(config)] if config else [])
    for name in names:
        elapsed = run_search(task, "--compare", name, "--seeds", str(seeds), "--profile", "quick", *extra)
        compare_dir = DIRECTORY / task / f"compare-{name}-quick"
        shutil.copy(compare_dir / "compare_curves.png", PLOTS / f"{task}_compare_{name}.png")
        table = (compare_dir / "compare.md").read_text().split("\n", 2)[2].strip()
        sections.append(f"### {task}: `--compare {name}` ({seeds} seeds each, quick profile"
                        + (f", {epochs} epoch(s)" if epochs else "")
                        + (f", `--config {config}`" if config else "")
                        + f", {elapsed / 60:.1f} min)\n\n"
                        f"{table}\n\n![{name}](plots/{task}_compare_{name}.png)\n")
    return sections


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, help="epochs per search trial (default: the quick recipe's, "
                        "so the search ranks the recipe that is retrained)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--compare-task", help="only run comparisons, for this task (e.g. imdb)")
    parser.add_argument("--compare", default="initializer", help="with --compare-task: comma-separated names")
    parser.add_argument("--compare-epochs", type=int, help="with --compare-task: epochs per run")
    parser.add_argument("--compare-config", help="with --compare-task: a --config file fixed for every run")
    parser.add_argument("--median-stopping", action="store_true",
                        help="also run the phone-price search with --median-stopping and compare the two")
    args = parser.parse_args(argv)
    PLOTS.mkdir(exist_ok=True)
    measured = stamp(command_line("benchmarks.tuning"))
    if args.compare_task:
        sections = compare_sections(args.compare_task, args.compare.split(","), args.seeds,
                                    args.compare_epochs, args.compare_config)
        body = (f"## Comparisons: {args.compare_task}\n\n" + facts_block(measured, args.compare_task)
                + "\n" + "\n".join(sections))
        publish(f"tuning_{args.compare_task}", body)
        return 0

    epochs_flag = ["--epochs", str(args.epochs)] if args.epochs else []
    search_time = run_search("phone_price", "--tuner", "random", "--max-trials", str(args.trials),
                             *epochs_flag, "--name", "random")
    recipe = build_config(phone_price.PhonePriceConfig, profile="quick")
    trial_epochs = args.epochs or recipe.epochs
    folder = DIRECTORY / "phone_price" / "random"
    best = read_json(folder / "best.json")
    shutil.copy(folder / "objective_vs_hyperparameters.png", PLOTS / "phone_price_random_search.png")
    median = median_stopping_section(args.trials, epochs_flag, search_time) if args.median_stopping else ""
    with tempfile.TemporaryDirectory() as output_dir:
        tuned, tuned_val = test_accuracy(folder / "best.json", args.seeds, output_dir)
        default, default_val = test_accuracy(None, args.seeds, output_dir)

    sections = compare_sections("phone_price", ("activation", "initializer"), args.seeds)

    shown = {k: v for k, v in best.items() if not k.startswith("_") and k != "task"}
    rows = [{"configuration": "hand-set default (quick profile)",
             "test accuracy": f"{np.mean(default):.4f} +- {np.std(default):.4f}",
             "best val accuracy": f"{np.mean(default_val):.4f} +- {np.std(default_val):.4f}"},
            {"configuration": "best of the search, retrained (quick profile + best.json)",
             "test accuracy": f"{np.mean(tuned):.4f} +- {np.std(tuned):.4f}",
             "best val accuracy": f"{np.mean(tuned_val):.4f} +- {np.std(tuned_val):.4f}"}]
    body = ("## Tuning: phone price\n\n" + facts_block(measured, "phone_price")
            + f"\n### Random search, {args.trials} trials of {trial_epochs} epochs: "
              f"{search_time / 60:.1f} min wall time\n\n"
            + "Search command: `python -m tuning.search --task phone_price --tuner random --max-trials "
              f"{' '.join([str(args.trials), *epochs_flag])} --name random --directory {DIRECTORY}`. "
              f"Best trial (validation accuracy {best['_val_accuracy']:.4f}): `{shown}`\n\n"
            + f"Retrained with the quick profile's {recipe.epochs} epochs on the lesson's split, seeds "
              f"0..{args.seeds - 1}:\n\n"
            + format_table(rows, ["configuration", "test accuracy", "best val accuracy"])
            + "\n\n![objective vs hyperparameters](plots/phone_price_random_search.png)\n\n" + median
            + "\n".join(sections))
    publish("tuning_phone_price", body)
    return 0


if __name__ == "__main__":
    run(main)
