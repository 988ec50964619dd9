"""Captioning benchmark: the test split's corpus BLEU-1..4, CIDEr-D, ROUGE-L and METEOR, repetition and
diversity of every decoding (greedy and beam search; the one validation chose marked), time per epoch and
feature-cache time, for the quick profile on Flickr8k and the shapes recipe.

    python -m benchmarks.captioning                                            # Flickr8k, quick profile
    python -m benchmarks.captioning --name shapes --extra "--config recipes/captioning_shapes.json"

Writes the captioning section of RESULTS.md; rows of earlier runs are kept in benchmarks/captioning_rows.json,
each run with its stamp; the sample and attention figures go to benchmarks/plots/. The lesson runs with the
user's defaults (TensorBoard logs included); the command column shows the flags the benchmark adds.

    python -m benchmarks.captioning --render  # the section again from captioning_rows.json, measuring nothing
"""

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run  # noqa: E402

quiet_tensorflow()

from benchmarks.common import command_line, labelled, publish, read_rows, stamp  # noqa: E402
from common.tables import format_table  # noqa: E402
from common.runs import read_json  # noqa: E402
from common.training import read_history  # noqa: E402
from tasks import captioning  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS_FILE = HERE / "captioning_rows.json"
PLOTS = HERE / "plots"
COLUMNS = ["run", "data", "encoder", "decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L",
           "METEOR", "repeated bigrams", "distinct-2", "val CIDEr-D", "best val word accuracy", "params",
           "epochs", "time per epoch (s)", "features (s)", "wall time (min)", "stamp", "command"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="flickr8k", help="row name (also names the figures)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--extra", default="", help="further task flags, e.g. \"--epochs 12 --units 384\"")
    parser.add_argument("--keep", help="copy the run folder here (to caption more images with it later)")
    parser.add_argument("--from-run",
                        help="report a finished run folder instead of training (its wall time is unknown)")
    parser.add_argument("--render", action="store_true",
                        help="write the section from captioning_rows.json only")
    args = parser.parse_args(argv)
    if args.render:
        return render_recorded()
    state = load_state()
    measured = stamp(command_line("benchmarks.captioning"))
    if args.from_run:  # the numbers were measured when that run ran, not now
        measured["command"] += f" (reporting a run finished earlier: {Path(args.from_run).name})"
    flags = ["--profile", args.profile, "--verbose", "2"] + shlex.split(args.extra)
    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        if args.from_run:
            run_dir, wall = Path(args.from_run), None
        else:
            code = captioning.main(flags + ["--output-dir", output_dir, "--run-id", "bench"])
            assert code == 0
            run_dir, wall = Path(output_dir) / "captioning" / "bench", time.perf_counter() - started
        metrics = read_json(run_dir / "metrics.json")
        word_accuracy = read_history(run_dir / "history.csv").get("val_masked_accuracy")
        result = list(metrics["results"].values())[0]
        config = read_json(run_dir / "config.json")
        PLOTS.mkdir(exist_ok=True)
        for plot in (["samples.png", "learning_curves.png"]
                     + sorted(p.name for p in run_dir.glob("attention_*.png"))):
            shutil.copy(run_dir / plot, PLOTS / f"captioning_{args.name}_{plot}")
        if args.keep:
            shutil.copytree(run_dir, Path(args.keep) / args.name, dirs_exist_ok=True)
    command = " ".join(["python -m tasks.captioning", *flags])
    rows = []
    for decoding in [k for k in result if k == "greedy" or k.startswith("beam")]:
        rows.append({"run": args.name, "data": f"{config['dataset']} ({result['data']})",
                     "encoder": result["encoder"], **score_cells(result, decoding),
                     "best val word accuracy": f"{max(word_accuracy):.4f}" if word_accuracy else "",
                     "params": result["params"], "epochs": result["epochs"],
                     "time per epoch (s)": f"{result['time_per_epoch_s']:.0f}",
                     "features (s)": _feature_time(result),
                     "wall time (min)": f"{wall / 60:.1f}" if wall else "(not timed)",
                     "command": f"`{command}`"})
    state["rows"][args.name] = {"rows": rows, "examples": result.get("examples", [])[:4],
                                "attention_on_named_shape": result.get("attention_on_named_shape"),
                                "stamp": measured}
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("captioning", render(state))
    return 0


def load_state():
    return read_rows(ROWS_FILE, {"rows": {}})


def render_recorded():
    state = load_state()
    ROWS_FILE.write_text(json.dumps(state, indent=2) + "\n")
    publish("captioning", render(state))
    return 0


# Columns from the COCO caption toolkit and the diversity measures: the result's key and its format.
TOOLKIT_COLUMNS = {"CIDEr-D": ("cider_d", "{:.4f}"), "ROUGE-L": ("rouge_l", "{:.4f}"),
                   "METEOR": ("meteor", "{:.4f}"), "repeated bigrams": ("repeated_bigram_share", "{:.1%}"),
                   "distinct-2": ("distinct_2", "{:.4f}")}


def score_cells(result, decoding):
    """The decoding and score columns of one decoding of a run's result: NLTK corpus BLEU (as the rows before
    the COCO toolkit), its CIDEr-D, ROUGE-L and METEOR ('n/a' without Java), repetition and diversity, and
    the validation CIDEr-D that chose the decoding (marked). Older results lack the newer scores: blank."""
    scores, validation = result[decoding], result.get("validation", {}).get(decoding, {})
    chosen = scores.get("chosen")
    cells = {"decoding": decoding + {True: " (chosen on val)", False: " (not chosen)"}.get(chosen, ""),
             **{f"BLEU-{n}": f"{scores[f'nltk_bleu{n}' if f'nltk_bleu{n}' in scores else f'bleu{n}']:.4f}"
                for n in range(1, 5)}}
    for column, (key, form) in TOOLKIT_COLUMNS.items():
        if key in scores:
            cells[column] = "n/a" if scores[key] is None else form.format(scores[key])
    if "cider_d" in validation:
        cells["val CIDEr-D"] = f"{validation['cider_d']:.4f}"
    return cells


def _feature_time(result):
    if "feature_time_s" not in result:
        return "- (trained with the decoder)"
    return f"{result['feature_time_s']:.0f}" + (" (read from the cache)" if result["features_from_cache"]
                                                else " (computed)")


def render(state):
    rows = [dict(row, stamp=entry["stamp"]) for entry in state["rows"].values() for row in entry["rows"]]
    shown, notes = labelled(rows, ["captioning"] * len(rows))
    body = ["## Captioning (tasks/captioning.py)", "",
            "Rows of earlier runs are kept; each run's stamp (date, machine, versions, commit, the benchmark "
            "command that measured it) is spelled out below the table. Best val word accuracy: the share of "
            "the validation captions' words predicted exactly from the words before them (teacher forcing), "
            "at the best epoch.", "",
            "Corpus BLEU (NLTK `corpus_bleu`, no smoothing) on the test split against every reference "
            "caption; captions are lower-cased words without punctuation. CIDEr-D (on the toolkit's scale; "
            "papers often quote it x100), ROUGE-L and METEOR 1.5 come from the COCO caption toolkit "
            "(pycocoevalcap 1.2, its PTB tokenizer; METEOR needs Java: n/a without it; SPICE is not "
            "computed, its models are a download); metrics.json also holds the toolkit's BLEU. Repeated "
            "bigrams: the share of generated captions with some bigram twice; distinct-2: distinct bigrams "
            "over all bigrams of the generated captions. Each decoding is scored on the validation split "
            "first; the best val CIDEr-D is the run's chosen decoding, the others' test scores are shown "
            "for information (rows before the toolkit chose nothing and leave those columns blank). "
            "Flickr8k: the official 1,000 test images, 224x224 JPEG re-encodings (see "
            "../shared/datasets/flickr8k/SOURCE.txt), so numbers are comparable with, not identical to, "
            "published ones (Xu et al. 2015 soft attention: BLEU-1 0.67, BLEU-4 0.195). Wall time includes "
            "loading, the encoder features (computed once and then read from the cache; the features column "
            "says which) and evaluation.", "",
            format_table(shown, COLUMNS), "", "Stamps:", "", notes, ""]
    for name, entry in state["rows"].items():
        hits = entry.get("attention_on_named_shape")
        if hits:
            shares = ", ".join(f"{group.replace('_', ' ')} {share:.0%}" for group, share in hits.items()
                               if share is not None)
            body.append(f"- {name}: share of generated words whose attention peak lies on the shape they "
                        f"name: {shares} (a 64-position grid: a shape covers 2-9 of its cells).")
        for example in entry["examples"][:3]:
            generated = "; ".join(f"{k}: {v}" for k, v in example.items() if k not in ("image", "references"))
            body.append(f"- {name} `{example['image']}`: {generated} (reference: {example['references'][0]})")
    body.append("\nFigures: benchmarks/plots/captioning_<run>_samples.png, _attention_<n>.png.")
    return "\n".join(body)


if __name__ == "__main__":
    run(main)
