"""IMDB benchmark: test accuracy, parameters, training time and time per epoch of each text model, on the
lesson's split (25,000 test reviews), measured in one run.

    python -m benchmarks.imdb                                   # the quick profile's model (GRU) + n-gram reference
    python -m benchmarks.imdb --models lstm,gru,bilstm_attention --profile full
    python -m benchmarks.imdb --config recipes/imdb_bigru_bigrams.json    # a recipe's model, one row
    python -m benchmarks.imdb --config recipes/imdb_bigru_bigrams.json --set bigram_buckets=0   # an ablation
    python -m benchmarks.imdb --config recipes/imdb_bigru_selftrained.json   # n-gram teacher, then the BiGRU

Writes the imdb section of RESULTS.md (one row per model; rows of earlier runs of other models are kept).
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

from benchmarks.common import command_line, facts_block, measured, publish  # noqa: E402
from common.config import build_config  # noqa: E402
from common.tables import format_table  # noqa: E402
from common.training import read_json  # noqa: E402
from tasks import imdb  # noqa: E402

COLUMNS = ["model", "profile", "test accuracy", "params", "epochs", "train time (s)", "time per epoch (s)",
           "sequence length", "measured", "command"]
ROWS_FILE = Path(__file__).resolve().parent / "imdb_rows.json"
PLOTS = Path(__file__).resolve().parent / "plots"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--models", help="comma-separated (default: the profile's model and the n-gram reference)")
    parser.add_argument("--config", help="a recipe (JSON settings) applied to every model; default: its model only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a further setting for every model, e.g. bigram_buckets=0 (repeatable)")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    settings = dict(parse_setting(item) for item in args.set)
    overrides = dict(tensorboard=False, verbose=2, **settings,
                     **({"data_dir": args.data_dir} if args.data_dir else {}))
    base = build_config(imdb.ImdbConfig, profile=args.profile, config_file=args.config, overrides=overrides)
    models = args.models.split(",") if args.models else [base.model] if args.config else [base.model, "ngram"]
    variant = ([Path(args.config).stem] if args.config else []) + [f"{k}={v}" for k, v in settings.items()]
    suffix = f" ({', '.join(variant)})" if variant else ""
    recipe = (f" --config {Path(args.config).as_posix()}" if args.config else "") + "".join(
        f" --{key.replace('_', '-')} {value}" for key, value in settings.items())

    rows = json.loads(ROWS_FILE.read_text()) if ROWS_FILE.exists() else {}
    stamp = measured()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        for name in models:
            config = build_config(imdb.ImdbConfig, profile=args.profile, config_file=args.config, overrides=dict(
                overrides, model=name, baseline=False, output_dir=output_dir, run_id=name))
            imdb.train(config)  # the n-gram model uses its own size and epochs (imdb.ngram_config)
            run_dir = Path(output_dir) / "imdb" / name
            results = read_json(run_dir / "metrics.json")["results"]
            result = results[name]
            # With --unlabelled the run trains the n-gram teacher first (baseline=False otherwise skips it).
            teacher = results.get("ngram") if name != "ngram" else None
            train_time = f"{result['train_time_s']:.0f}" + (
                f" + {teacher['train_time_s']:.0f} (n-gram teacher: test {teacher['test_accuracy']:.4f})"
                if teacher else "")
            if (run_dir / "attention.png").exists():
                PLOTS.mkdir(exist_ok=True)
                shutil.copy(run_dir / "attention.png", PLOTS / f"imdb_attention_{args.profile}.png")
            length = config.ngram_sequence_length if name == "ngram" else config.sequence_length
            label = name + suffix
            rows[f"{label}/{args.profile}"] = {
                "model": label, "profile": args.profile, "test accuracy": round(result["test_accuracy"], 4),
                "params": result["params"], "epochs": result["epochs"],
                "train time (s)": train_time,
                "time per epoch (s)": f"{result['time_per_epoch_s']:.1f}", "sequence length": length,
                "measured": stamp,
                "command": f"`python -m tasks.imdb --profile {args.profile}{recipe} --model {name}`"}
            print(rows[f"{label}/{args.profile}"], flush=True)
    total = time.perf_counter() - started
    ROWS_FILE.write_text(json.dumps(rows, indent=2) + "\n")
    ordered = sorted(rows.values(), key=lambda r: -r["test accuracy"])
    body = ("## IMDB (`tasks/imdb.py`)\n\n" + facts_block(command_line("benchmarks.imdb"))
            + f"- test split: all 25,000 test reviews; validation: 2,500 of the training reviews (seed 42)\n"
            + f"- this run: {', '.join(models)}{suffix} on the {args.profile} profile in {total / 60:.1f} min "
              "(each model's own time below; the rest is loading and adapting the vocabulary); rows of earlier "
              "runs are kept, with their date, machine and commit\n\n"
            + format_table(ordered, COLUMNS) + "\n")
    publish("imdb", body)
    return 0


def parse_setting(item):
    """'bigram_buckets=0' -> ('bigram_buckets', 0): the value is read as JSON when it is JSON, else a string."""
    key, separator, value = item.partition("=")
    if not separator:
        raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


if __name__ == "__main__":
    run(main)
