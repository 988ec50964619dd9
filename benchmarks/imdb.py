"""IMDB benchmark: test accuracy, parameters, training time and time per epoch of each text model, on the
lesson's split (25,000 test reviews), measured in one run.

    python -m benchmarks.imdb                    # the quick profile's model (GRU) + n-gram reference
    python -m benchmarks.imdb --models lstm,gru,bilstm_attention --profile full
    python -m benchmarks.imdb --config recipes/imdb_bigru_bigrams.json    # a recipe's model, one row
    python -m benchmarks.imdb --config recipes/imdb_bigru_bigrams.json --set bigram_buckets=0   # an ablation
    python -m benchmarks.imdb --config recipes/imdb_bigru_selftrained.json   # n-gram teacher, then the BiGRU
    python -m benchmarks.imdb --config recipes/imdb_nbsvm.json   # NBSVM and the scikit-learn TF-IDF anchor
    python -m benchmarks.imdb --config recipes/imdb_nbsvm.json --set nb_scaling=false   # no NB ratios

Writes the imdb section of RESULTS.md (one row per model; rows of earlier runs of other models are kept in
benchmarks/imdb_rows.json, each with the stamp of the run that measured it). The lesson runs with the user's
defaults (TensorBoard logs included); the command column shows the flags the benchmark adds.

A run that trains `nbsvm` also measures, in the same process and on the same 22,500 training reviews, the
classic linear anchor it has to beat: scikit-learn's TF-IDF (word 1- and 2-grams, sublinear tf, min_df 2)
with logistic regression (C=10). Both training times count everything from the texts in memory to the
trained model: for nbsvm the n-gram counting, vectorising and ratios as well as the epochs, for the anchor
`fit_transform` and the solver.

    python -m benchmarks.imdb --render      # the section again from imdb_rows.json, measuring nothing
"""

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

import numpy as np  # noqa: E402

from benchmarks.common import command_line, labelled, publish, read_rows, stamp  # noqa: E402
from common.config import build_config  # noqa: E402
from common.tables import format_table  # noqa: E402
from common.runs import read_json  # noqa: E402
from datasets import imdb as imdb_data  # noqa: E402
from tasks import imdb  # noqa: E402

COLUMNS = ["model", "profile", "test accuracy", "best val accuracy", "params", "epochs", "train time (s)",
           "time per epoch (s)", "sequence length", "stamp", "command"]
ANCHOR = "tf-idf 1-2-grams + logistic regression (scikit-learn, C=10)"
WHOLE = "whole review"  # the bag-of-n-gram linear models read every token
ROWS_FILE = Path(__file__).resolve().parent / "imdb_rows.json"
# Settings that change none of a row's numbers: kept out of its label (a row measured with --set export=false
# is the recipe's row), shown in its command.
NO_NUMBER_SETTINGS = {"export", "tensorboard", "verbose"}
PLOTS = Path(__file__).resolve().parent / "plots"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--models",
                        help="comma-separated (default: the profile's model and the n-gram reference)")
    parser.add_argument("--config",
                        help="a recipe (JSON settings) applied to every model; default: its model only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a further setting for every model, e.g. bigram_buckets=0 (repeatable)")
    parser.add_argument("--data-dir")
    parser.add_argument("--render", action="store_true", help="write the section from imdb_rows.json only")
    args = parser.parse_args(argv)
    if args.render:
        return render_recorded()
    settings = dict(parse_setting(item) for item in args.set)
    overrides = dict(verbose=2, **settings,
                     **({"data_dir": args.data_dir} if args.data_dir else {}))
    base = build_config(imdb.ImdbConfig, profile=args.profile, config_file=args.config, overrides=overrides)
    models = args.models.split(",") if args.models else [base.model] if args.config else [base.model, "ngram"]
    variant = ([Path(args.config).stem] if args.config else []) + [
        f"{k}={v}" for k, v in settings.items() if k not in NO_NUMBER_SETTINGS]
    suffix = f" ({', '.join(variant)})" if variant else ""
    recipe = (f" --config {Path(args.config).as_posix()}" if args.config else "") + "".join(
        map(lesson_flag, settings.items()))

    rows = load_rows()
    measured = stamp(command_line("benchmarks.imdb"))
    with tempfile.TemporaryDirectory() as output_dir:
        for name in models:
            config = build_config(imdb.ImdbConfig, profile=args.profile, config_file=args.config,
                                  overrides=dict(overrides, model=name, ngram_reference=False,
                                                 output_dir=output_dir, run_id=name))
            imdb.train(config)  # the n-gram model uses its own size and epochs (imdb.ngram_config)
            run_dir = Path(output_dir) / "imdb" / name
            results = read_json(run_dir / "metrics.json")["results"]
            result = results[name]
            # With --unlabelled the run trains the teacher first (the n-gram model or NBSVM, --teacher);
            # ngram_reference=False skips the n-gram model otherwise.
            teacher = results.get(config.teacher) if name not in ("ngram", "nbsvm") else None
            train_time = f"{result['train_time_s']:.0f}" + (
                f" + {teacher['train_time_s']:.0f} ({imdb.TEACHERS[config.teacher]} teacher: test "
                f"{teacher['test_accuracy']:.4f}, best val {teacher['best_val_accuracy']:.4f})"
                if teacher else "") + "".join(
                f" + {student['train_time_s'] + student['labelling_time_s']:.0f} (round-{round_} student, "
                f"then a teacher: test {student['test_accuracy']:.4f}, best val "
                f"{student['best_val_accuracy']:.4f}; round-{round_ + 1} teacher val "
                f"{student['next_teacher_val_accuracy']:.4f})"
                for round_, student in earlier_students(results)) + (
                f" + {result['pretrain_time_s']:.0f} (language-model pretraining, loss "
                f"{result['pretrain_loss'][0]:.2f} -> {result['pretrain_loss'][-1]:.2f})"
                if "pretrain_time_s" in result else "") + (
                f" (of which {result['prepare_time_s']:.0f} counting and vectorising)"
                if name == "nbsvm" else "")
            if (run_dir / "attention.png").exists():
                PLOTS.mkdir(exist_ok=True)
                shutil.copy(run_dir / "attention.png", PLOTS / f"imdb_attention_{args.profile}.png")
            length = {"ngram": config.ngram_sequence_length, "nbsvm": WHOLE}.get(name, config.sequence_length)
            label = name + suffix
            rows[f"{label}/{args.profile}"] = {
                "model": label, "profile": args.profile, "test accuracy": round(result["test_accuracy"], 4),
                "best val accuracy": round(result["best_val_accuracy"], 4),
                "params": result["params"], "epochs": result["epochs"],
                "train time (s)": train_time,
                "time per epoch (s)": f"{result['time_per_epoch_s']:.1f}", "sequence length": length,
                "stamp": measured,
                "command": f"`python -m tasks.imdb --profile {args.profile}{recipe} --model {name} "
                           "--no-ngram-reference --verbose 2`"}
            print(rows[f"{label}/{args.profile}"], flush=True)
            if name == "nbsvm":
                rows[f"{ANCHOR}/{args.profile}"] = anchor_row(config, measured)
                print(rows[f"{ANCHOR}/{args.profile}"], flush=True)
    ROWS_FILE.write_text(json.dumps(rows, indent=2) + "\n")
    publish("imdb", render(rows))
    return 0


def earlier_students(results):
    """(round, result) of the students before the last (`--self-training-rounds`), in order."""
    rounds = (re.fullmatch(r"student round (\d+)", name) for name in results)
    return sorted((int(found[1]), results[found[0]]) for found in rounds if found)


def anchor_row(config, measured):
    """The scikit-learn TF-IDF + logistic regression anchor, trained on the lesson's training split of
    `config` (the same 22,500 reviews as the lesson's models), scored on its validation and test splits."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = imdb_data.load(config)
    (train, y_train), (val, y_val), (test, y_test) = (texts_and_labels(split)
                                                      for split in (data.train, data.val, data.test))
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    model = LogisticRegression(C=10).fit(vectorizer.fit_transform(train), y_train)  # (lbfgs converges)
    train_time = time.perf_counter() - started
    return {"model": ANCHOR, "profile": config.profile,
            "test accuracy": round(model.score(vectorizer.transform(test), y_test), 4),
            "best val accuracy": round(model.score(vectorizer.transform(val), y_val), 4),
            "params": int(model.coef_.size + model.intercept_.size), "epochs": "",
            "train time (s)": f"{train_time:.0f}", "time per epoch (s)": "", "sequence length": WHOLE,
            "stamp": measured, "command": f"`{measured['command']}`"}


def texts_and_labels(dataset):
    """A split's reviews as Python strings (undecodable bytes replaced, as the lesson does) and labels."""
    texts, labels = [], []
    for batch, batch_labels in dataset:
        texts += [review.decode("utf-8", "replace") for review in batch.numpy()]
        labels.append(batch_labels.numpy())
    return texts, np.concatenate(labels)


def load_rows():
    return read_rows(ROWS_FILE, {})


# The BiGRU with bigram vectors (imdb_bigru_bigrams.json) and each way the recipes give it the 50,000
# unlabelled reviews: the ablation table of issue 19, one line per recipe, its seeds averaged.
UNLABELLED_ABLATION = {
    "imdb_bigru_bigrams": "not at all (the 22,500 labelled reviews only)",
    "imdb_bigru_selftrained": "soft labels from the n-gram model",
    "imdb_bigru_nbsvm_teacher": "soft labels from NBSVM",
    "imdb_bigru_nbsvm_two_rounds": "soft labels from NBSVM, then from NBSVM and that first student",
    "imdb_bigru_pretrained": "language-model pretraining",
    "imdb_bigru_pretrained_nbsvm_teacher": "language-model pretraining, then soft labels from NBSVM",
}
# Settings a recipe may be run with and still be a line of the ablation table (as a variant of its recipe).
ABLATION_VARIANTS = {"epochs"}
ABLATION_COLUMNS = ["unlabelled reviews used as", "recipe", "seeds", "test accuracy (mean)",
                    "best val accuracy (mean)", "classifier (min)", "teachers (min)", "pretraining (min)",
                    "all training (min)", "rows"]


def stage_seconds(train_time):
    """A row's train time, '990 + 27 (NBSVM teacher: ...) + 1403 (language-model pretraining, ...)', as
    seconds per stage: classifier, teachers (the first teacher and any earlier round's student, '+ 1000
    (round-1 student, then a teacher: ...)'), pretraining (0 where the row has none)."""
    classifier = int(re.match(r"\d+", train_time)[0])
    teachers = re.findall(r"\+ (\d+) \([^)]*teacher", train_time)
    pretraining = re.search(r"\+ (\d+) \(language-model pretraining", train_time)
    return classifier, sum(map(int, teachers)), int(pretraining[1]) if pretraining else 0


def render(rows):
    ordered = sorted(rows.values(), key=lambda r: -r["test accuracy"])
    shown, notes = labelled(ordered, ["imdb"] * len(ordered))
    return ("## IMDB (`tasks/imdb.py`)\n\n"
            "- test split: all 25,000 test reviews; validation: 2,500 of the training reviews (seed 42); "
            "best val accuracy: the highest validation accuracy over the run's epochs\n"
            "- rows of earlier runs are kept; each row's stamp (date, machine, versions, commit, the "
            "benchmark command that measured it) is spelled out below the table\n\n"
            + format_table(shown, COLUMNS)
            + "\n\n" + ablation_table(shown)
            + "\n\nStamps:\n\n" + notes + "\n")


def recipe_variant(label):
    """A row label `bigru_pool (<recipe>, key=value, ...)` as (recipe, its settings other than the seed as
    sorted pairs), or None for any other label."""
    found = re.fullmatch(r"bigru_pool \((\w+)((?:, \w+=[^,)]+)*)\)", label)
    if not found:
        return None
    settings = dict(item.split("=", 1) for item in found[2].split(", ")[1:])
    settings.pop("seed", None)
    return found[1], tuple(sorted(settings.items()))


def ablation_line(recipe, variant, runs):
    """One line of the ablation table: a recipe (run with the settings of `variant`), its seeds averaged."""
    val = [row["best val accuracy"] for row in runs if row.get("best val accuracy", "") != ""]
    stages = np.mean([stage_seconds(row["train time (s)"]) for row in runs], axis=0) / 60
    return {
        "unlabelled reviews used as": UNLABELLED_ABLATION[recipe] + "".join(
            f", {value} {key}" for key, value in variant),
        "recipe": f"`recipes/{recipe}.json`" + "".join(f" `--{key} {value}`" for key, value in variant),
        "seeds": len(runs),
        "test accuracy (mean)": f"{np.mean([row['test accuracy'] for row in runs]):.4f}",
        "best val accuracy (mean)": f"{np.mean(val):.4f}" + (
            f" (of {len(val)})" if len(val) < len(runs) else "") if val else "",
        **{column: f"{value:.1f}" if value else "" for column, value in zip(
            ["classifier (min)", "teachers (min)", "pretraining (min)"], stages, strict=True)},
        "all training (min)": f"{stages.sum():.1f}",
        "rows": ", ".join(row["stamp"] for row in runs)}


def ablation_table(shown):
    """What the unlabelled reviews add to the BiGRU, one line per recipe of UNLABELLED_ABLATION from the
    rows above (their seeds averaged), with the time of each stage of the row's train time (classifier,
    teacher, pretraining) and their sum. A recipe run for another number of epochs gets a line of its own;
    rows with any other setting changed are left out (they are not the recipe)."""
    groups = {}
    for row in shown:
        parsed = recipe_variant(row["model"])
        if parsed and parsed[0] in UNLABELLED_ABLATION and {key for key, _ in parsed[1]} <= ABLATION_VARIANTS:
            groups.setdefault(parsed, []).append(row)
    order = list(UNLABELLED_ABLATION)
    lines = [ablation_line(recipe, variant, runs) for (recipe, variant), runs in
             sorted(groups.items(), key=lambda group: (order.index(group[0][0]), group[0][1]))]
    if not lines:
        return ""
    return ("### What the 50,000 unlabelled reviews add to the BiGRU\n\n"
            "The BiGRU with bigram vectors (`recipes/imdb_bigru_bigrams.json`) and each way a recipe gives "
            "it the unlabelled reviews, from the rows above (rows: their stamps; the seeds' mean). Rows "
            "stamped before commit 7eddb2f trained their NBSVM teacher with the student's schedule rather "
            "than by recipes/imdb_nbsvm.json (each row's train time names its teacher's test accuracy):\n\n"
            + format_table(lines, ABLATION_COLUMNS) + "\n")


def render_recorded():
    rows = load_rows()
    ROWS_FILE.write_text(json.dumps(rows, indent=2) + "\n")
    publish("imdb", render(rows))
    return 0


def lesson_flag(setting):
    """('bigram_buckets', 0) -> ' --bigram-buckets 0'; ('export', False) -> ' --no-export' (the lesson's
    boolean flags are --name / --no-name)."""
    key, value = setting
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f" --{flag}" if value else f" --no-{flag}"
    return f" --{flag} {value}"


def parse_setting(item):
    """'bigram_buckets=0' -> ('bigram_buckets', 0): the value is read as JSON when it is JSON, else a
    string."""
    key, separator, value = item.partition("=")
    if not separator:
        raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


if __name__ == "__main__":
    run(main)
