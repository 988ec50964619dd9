"""airbench94 in Keras (issue 23): the recipe's row over several seeds, and its ablations. Run through
`benchmarks/cifar10.py`, which keeps the rows in cifar10_rows.json and writes them into RESULTS.md:

    python -m benchmarks.cifar10 --airbench                # recipes/cifar10_airbench94.json, seeds 0, 1, 2
    python -m benchmarks.cifar10 --ablations               # each method removed in turn, seed 0
    python -m benchmarks.cifar10 --ablations --seeds 0,1,2 --only lookahead,alternating_flip
    python -m benchmarks.cifar10 --jpeg-cost               # what training on the JPEG copy costs
    python -m benchmarks.cifar10 --twin                    # the reference's recipe in plain PyTorch

The recipe row: mean accuracy over the seeds on the 4,000 lossless held-out originals (multi-crop TTA, the
reference's number; the target is 94.0 %), their JPEG versions and the 10,000 JPEG test images beside it,
seconds per epoch, wall time per run (data loading included, export excluded), and the achieved training
FLOP rate against a float32 matmul peak measured in the same process. The first seed also exports the model:
its int8 TFLite file's accuracy against the float model's (target: within 0.5 point).
"""

import json
import shlex
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common.runs import read_json

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cifar10_airbench94.json"
SEEDS = (0, 1, 2)
# Each method of the recipe and the flags that take it away, the rest of the recipe unchanged. (TTA needs no
# run of its own: every recipe run reports the held-out accuracy without TTA, with the mirror and multi-crop.)
ABLATIONS = {
    "whiten": ("frozen patch-whitening stem (a trained 2x2 stem instead)", ["--no-whiten"]),
    "bn_scale": ("batch norm without a learned scale", ["--bn-scale"]),
    "bn_bias_lr": ("64x learning rate of the batch-norm shifts", ["--bn-bias-lr", "1"]),
    "dirac": ("identity init of the 3x3 convs", ["--no-dirac"]),
    "logit_scale": ("logits scaled by 1/9", ["--logit-scale", "1"]),
    "label_smoothing": ("label smoothing 0.2", ["--label-smoothing", "0"]),
    "nesterov": ("Nesterov momentum (heavy ball instead)", ["--optimizer", "momentum"]),
    "triangular": ("triangular schedule 0.2 -> 1 -> 0.07 (one cycle 0 -> 1 -> 0 instead)",
                   ["--schedule", "onecycle"]),
    "lookahead": ("lookahead", ["--no-lookahead"]),
    "alternating_flip": ("alternating flip (random flips instead)", ["--no-alternating-flip"]),
    "translate": ("random translation by 2 pixels", ["--crop-padding", "0"]),
}
RECIPE_COLUMNS = ["recipe", "seeds", "lossless held-out (TTA)", "lossless, no TTA", "JPEG held-out (TTA)",
                  "JPEG test (TTA)", "time per epoch (s)", "wall time per run (min)", "training TFLOP",
                  "achieved GFLOP/s", "matmul peak GFLOP/s", "of peak", "int8 TFLite vs float (test)",
                  "stamp"]
TWIN_COLUMNS = ["implementation", "seeds", "epochs", "lossless held-out (TTA)", "lossless, no TTA",
                "JPEG held-out (TTA)", "JPEG test (TTA)", "steps", "time per epoch (s)",
                "wall time per run (min)", "stamp"]
ABLATION_COLUMNS = ["removed", "flags", "seeds", "lossless held-out (TTA)", "change", "JPEG test (TTA)",
                    "time per epoch (s)", "stamp"]


def run_recipe(seed, extra=(), export=False, data_dir=None):
    """Train the recipe once with `seed` (plus `extra` flags) in a temporary folder; its numbers and FLOPs."""
    from tasks import cifar10

    flags = ["--config", str(RECIPE), "--seed", str(seed), "--verbose", "2",
             *(["--export"] if export else ["--no-export"]), *extra]
    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        code = cifar10.main(flags + ["--output-dir", output_dir, "--run-id", "bench"]
                            + (["--data-dir", data_dir] if data_dir else []))
        wall = time.perf_counter() - started
        assert code == 0, f"the run with {flags} failed"
        run_dir = Path(output_dir) / "cifar10" / "bench"
        result = read_json(run_dir / "metrics.json")["results"]["fast"]
        config = read_json(run_dir / "config.json")
        mirror = mirror_only_accuracy(run_dir, config)
        flops = training_flops(run_dir / "model.keras", result["train_images"] * result["epochs"])
    return dict(result, wall_s=wall - result.get("export_time_s", 0), mirror_tta=mirror, train_flops=flops,
                command=" ".join(["python -m tasks.cifar10", *map(shlex.quote, flags)]).replace(
                    str(RECIPE), str(RECIPE.relative_to(ROOT))))  # no path of this machine in the results


def mirror_only_accuracy(run_dir, config):
    """Lossless held-out accuracy with the mirror-image TTA only (the recipe's runs report multi-crop)."""
    import keras

    from common import images
    from datasets import cifar10 as cifar10_data
    from tasks import cifar10

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    settings = cifar10.Cifar10Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                                        if k != "task"})
    held_out = cifar10_data.load(settings).held_out
    if "lossless" not in held_out:
        return None
    x, y = held_out["lossless"]
    return float(np.mean(images.predict_tta(model, x).argmax(-1) == y))


def forward_flops(model):
    """Multiply-adds x 2 of one image's forward pass through the convolutions and dense layers (batch norm,
    activations and pooling are a few % more and not counted); the stem's share separately."""
    total = stem = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        per_output = 2 * int(np.prod(kernel.shape[:-1]))  # one multiply and one add per kernel weight
        outputs = int(np.prod(layer.output.shape[1:]))
        flops = per_output * outputs
        total += flops
        if layer.name.startswith("stem"):
            stem += flops
    return total, stem


def training_flops(model_path, images):
    """FLOPs of a whole training on `images` images (all epochs), counted once by formula: each image costs
    its forward pass and twice that backwards (gradients of inputs and of weights), except the stem, which
    needs neither (the first layer; frozen when whitened). airbench94 counts 0.36 PFLOPs for its run."""
    import keras

    forward, stem = forward_flops(keras.saving.load_model(model_path, compile=False))
    return images * (3 * (forward - stem) + stem)


def matmul_peak(dtype="float32", size=2048, repeats=10):
    """FLOP/s of the best of `repeats` matmuls of two size x size `dtype` matrices on this backend/device."""
    import keras

    a = keras.ops.cast(keras.random.normal((size, size), seed=0), dtype)
    b = keras.ops.cast(keras.random.normal((size, size), seed=1), dtype)
    keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.matmul(a, b), "float32"))  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.matmul(a, b)[0, 0], "float32"))
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def _mean(values, digits=4):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    text = f"{statistics.mean(values):.{digits}f}"
    return text + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def seed_means(runs):
    """The columns a recipe row and a twin row share: accuracies and times, mean (± sd) over the runs."""
    return {"lossless held-out (TTA)": _mean(r.get("heldout_lossless_accuracy_tta") for r in runs),
            "lossless, no TTA": _mean(r.get("heldout_lossless_accuracy") for r in runs),
            "JPEG held-out (TTA)": _mean(r.get("heldout_jpeg_accuracy_tta") for r in runs),
            "JPEG test (TTA)": _mean(r["test_accuracy_tta"] for r in runs),
            "time per epoch (s)": f"{statistics.mean(r['time_per_epoch_s'] for r in runs):.0f}",
            "wall time per run (min)": f"{statistics.mean(r['wall_s'] for r in runs) / 60:.1f}"}


def recipe_row(seeds, data_dir, measured):
    """Train the recipe once per seed; the row: mean ± standard deviation over the seeds."""
    runs = [run_recipe(seed, export=i == 0, data_dir=data_dir) for i, seed in enumerate(seeds)]
    recipe = read_json(RECIPE)
    # Against the peak of the dtype the convolutions compute in (the recipe's mixed precision: bfloat16).
    compute = recipe.get("mixed_dtype", "float16") if recipe.get("mixed_precision") else "float32"
    peak, peak_float32 = matmul_peak(compute), matmul_peak("float32")
    exports = {row["format"]: row["test_accuracy"] for row in runs[0].get("exports", [])}
    rate = statistics.mean(r["train_flops"] / r["train_time_s"] for r in runs)
    row = {"recipe": "`recipes/cifar10_airbench94.json`", "seeds": ",".join(map(str, seeds)),
           **seed_means(runs),
           "training TFLOP": f"{runs[0]['train_flops'] / 1e12:.0f}",
           "achieved GFLOP/s": f"{rate / 1e9:.0f}",
           "matmul peak GFLOP/s": (f"{peak / 1e9:.0f} {compute}" + (f" ({peak_float32 / 1e9:.0f} float32)"
                                                                   if compute != "float32" else "")),
           "of peak": f"{rate / peak:.0%}",
           "int8 TFLite vs float (test)": (f"{exports['tflite_int8']:.4f} vs {exports['keras']:.4f}"
                                           if {"tflite_int8", "keras"} <= set(exports) else ""),
           "per seed": [{k: r.get(k) for k in ("heldout_lossless_accuracy_tta", "heldout_lossless_accuracy",
                                                "heldout_jpeg_accuracy_tta", "test_accuracy_tta",
                                                "test_accuracy", "time_per_epoch_s", "wall_s", "mirror_tta")}
                        for r in runs],
           "mirror TTA only": _mean(r["mirror_tta"] for r in runs),
           "stamp": measured, "command": runs[0]["command"]}
    return row


def twin_row(seeds, data_dir, measured, epochs=None, float32=False):
    """airbench94 in plain PyTorch (twins/airbench94.py) on the same images, once per seed: is the Keras port
    what stands between the recipe and 94 %, or the data? `epochs` instead of the reference's 9.9: what
    longer training would add; `float32`: no bfloat16 autocast, what the CPU's half precision costs."""
    from twins import airbench94 as twin

    recipe = twin.Recipe(autocast=not float32, **({"epochs": epochs} if epochs else {}))
    runs = [twin.run(seed, data_dir, recipe) for seed in seeds]
    first = runs[0]
    precision = "float32" if first["autocast"] == "float32" else f"{first['autocast']} autocast"
    return {"implementation": f"PyTorch {first['torch']} (`twins/airbench94.py`), {precision}",
            "seeds": ",".join(map(str, seeds)), "epochs": f"{recipe.epochs:g}",
            **seed_means(runs), "steps": f"{first['steps']} x {twin.Recipe.batch_size:,} images",
            "per seed": runs, "stamp": measured}


def ablation_rows(names, seeds, data_dir, measured, baseline):
    """The recipe with each named method removed, `seeds` runs each; `baseline` is the recipe row's mean."""
    rows = []
    for name in names:
        what, flags = ABLATIONS[name]
        runs = [run_recipe(seed, flags, data_dir=data_dir) for seed in seeds]
        values = [r.get("heldout_lossless_accuracy_tta") for r in runs]
        change = (f"{(statistics.mean(values) - baseline) * 100:+.2f} points"
                  if baseline is not None and None not in values else "")
        rows.append({"removed": what, "flags": "`" + " ".join(flags) + "`",
                     "seeds": ",".join(map(str, seeds)), "lossless held-out (TTA)": _mean(values),
                     "change": change,
                     "JPEG test (TTA)": _mean(r["test_accuracy_tta"] for r in runs),
                     "time per epoch (s)": f"{statistics.mean(r['time_per_epoch_s'] for r in runs):.0f}",
                     "key": name, "stamp": measured})
        print(rows[-1], flush=True)
    return rows


def tta_rows(recipe):
    """The TTA ablations, read from the recipe's own runs: no TTA, and the mirror image only."""
    return [{"removed": "multi-crop TTA (no TTA)", "flags": "(the recipe's runs)", "seeds": recipe["seeds"],
             "lossless held-out (TTA)": recipe["lossless, no TTA"], "change": "", "JPEG test (TTA)": "",
             "time per epoch (s)": "", "key": "tta", "stamp": recipe["stamp"]},
            {"removed": "the translated views of multi-crop TTA (mirror only)",
             "flags": "(the recipe's runs)", "seeds": recipe["seeds"],
             "lossless held-out (TTA)": recipe["mirror TTA only"], "change": "", "JPEG test (TTA)": "",
             "time per epoch (s)": "", "key": "tta_crops", "stamp": recipe["stamp"]}]


# What training on the JPEG copy costs. The 4,000 held-out images are split into folds; the recipe, scaled to
# 3,000 images, trains on all folds but one twice: once on their lossless originals, once on their JPEG
# versions, with the same seed (the same initial weights, batches and augmentation), and both runs are scored
# on the remaining fold's lossless originals and JPEGs; each fold in turn. Only the training pixels differ
# within a pair, so the paired difference is what the copy's JPEG artefacts cost a model trained on them.
JPEG_COST_FOLDS = 4
# The recipe at a quarter of its batch (12 steps per epoch of 3,000 images rather than 3): the reference's
# rate per example (1.5 per batch of 1,024 is 0.375 per 256), its weight decay per example (Keras' decoupled
# decay is rate x decay per step, which the smaller rate already quarters), and its warm-up (23 %) and
# whitening-bias (30 %) fractions of 20 epochs: 240 steps.
JPEG_COST_SETTINGS = dict(batch_size=256, learning_rate=0.375, epochs=20, warmup_epochs=4.6,
                          whiten_bias_epochs=6)
JPEG_COST_COLUMNS = ["trained on", "folds", "lossless held-out (TTA)", "JPEG held-out (TTA)",
                     "time per run (s)", "stamp"]


def fold_numbers(labels, folds):
    """Each image's fold: its rank within its class modulo `folds`, so every fold holds every class evenly."""
    fold = np.empty(len(labels), dtype="int64")
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fold[members] = np.arange(len(members)) % folds
    return fold


def jpeg_cost_runs(data_dir, seed=0, folds=JPEG_COST_FOLDS, settings=JPEG_COST_SETTINGS):
    """The paired runs of the JPEG-cost experiment: per fold, the recipe trained on the other folds' lossless
    originals and on their JPEG versions; each run's held-out accuracies on the fold."""
    from common.config import build_config
    from common.errors import UserError
    from datasets import cifar10 as cifar10_data
    from tasks import cifar10

    located = dict(data_dir=data_dir) if data_dir else {}
    everything = cifar10_data.load(build_config(cifar10.Cifar10Config, config_file=RECIPE, overrides=located))
    if {"lossless", "jpeg"} - set(everything.held_out):
        raise UserError("the JPEG-cost experiment needs the lossless originals of the first 4,000 training "
                        f"images ({cifar10_data.LOSSLESS_FILE}) beside a JPEG copy of CIFAR-10.")
    (lossless, labels), (jpeg, _) = everything.held_out["lossless"], everything.held_out["jpeg"]
    fold_of = fold_numbers(labels, folds)
    runs = []
    for fold in range(folds):
        scored, kept = fold_of == fold, fold_of != fold
        for source, pixels in (("lossless", lossless), ("jpeg", jpeg)):
            splits = cifar10_data.Splits(
                pixels[kept], labels[kept], pixels[:0], labels[:0], jpeg[scored], labels[scored],
                everything.class_names, source=everything.source,
                note=f"fold {fold} of {folds}: trained on the {source} versions of the others",
                held_out={name: (versions[scored], labels[scored])
                          for name, versions in (("lossless", lossless), ("jpeg", jpeg))})
            with tempfile.TemporaryDirectory() as output_dir:
                config = build_config(cifar10.Cifar10Config, config_file=RECIPE, overrides=dict(
                    settings, **located, seed=seed, export=False, output_dir=output_dir, run_id="bench",
                    verbose=2))
                started = time.perf_counter()
                assert cifar10.train(config, splits) == 0, f"the {source} run of fold {fold} failed"
                result = read_json(Path(output_dir) / "cifar10" / "bench" / "metrics.json")["results"]["fast"]
            runs.append({"fold": fold, "trained on": source, "seconds": round(time.perf_counter() - started),
                         **{key: result[key] for key in ("heldout_lossless_accuracy_tta",
                                                         "heldout_jpeg_accuracy_tta", "train_images")}})
            print(runs[-1], flush=True)
    return runs


def jpeg_cost_rows(runs, measured):
    """The experiment's table: each training source's mean over the folds, and the paired difference."""
    def values(source, key):
        return [run[key] for run in sorted(runs, key=lambda r: r["fold"]) if run["trained on"] == source]

    folds = len(values("lossless", "fold"))
    rows = [{"trained on": f"{what} of {values(source, 'train_images')[0]:,} held-out images",
             "folds": folds,
             "lossless held-out (TTA)": _mean(values(source, "heldout_lossless_accuracy_tta")),
             "JPEG held-out (TTA)": _mean(values(source, "heldout_jpeg_accuracy_tta")),
             "time per run (s)": f"{statistics.mean(values(source, 'seconds')):.0f}", "stamp": measured}
            for source, what in (("lossless", "the lossless originals"), ("jpeg", "the JPEG versions"))]
    cost = {name: [(a - b) * 100 for a, b in zip(values("lossless", key), values("jpeg", key), strict=True)]
            for name, key in (("lossless", "heldout_lossless_accuracy_tta"),
                              ("jpeg", "heldout_jpeg_accuracy_tta"))}
    rows.append({"trained on": "what training on JPEG costs (originals minus JPEG, fold by fold; points)",
                 "folds": folds, "lossless held-out (TTA)": _mean(cost["lossless"], 2),
                 "JPEG held-out (TTA)": _mean(cost["jpeg"], 2), "time per run (s)": "", "stamp": measured})
    return rows


def baseline_of(recipe):
    """The recipe row's mean lossless TTA accuracy, or None when there is no recipe row yet."""
    if not recipe or not recipe.get("per seed"):
        return None
    values = [r["heldout_lossless_accuracy_tta"] for r in recipe["per seed"]]
    return statistics.mean(values) if None not in values else None


def measure(args, state, measured):
    """Run what `args` asks (--airbench and/or --ablations) and record it in `state`."""
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    if args.airbench:
        row = recipe_row(seeds or SEEDS, args.data_dir, measured)
        state["airbench"] = row
        print(json.dumps({k: v for k, v in row.items() if k != "stamp"}, indent=1), flush=True)
    if args.ablations:
        names = args.only.split(",") if args.only else list(ABLATIONS)
        unknown = [n for n in names if n not in ABLATIONS]
        if unknown:
            raise SystemExit(f"unknown ablation {', '.join(unknown)}; valid: {', '.join(ABLATIONS)}")
        done = {row["key"]: row for row in state.get("ablations", [])}
        for row in ablation_rows(names, seeds or (0,), args.data_dir, measured,
                                 baseline_of(state.get("airbench"))):
            done[row["key"]] = row
        state["ablations"] = [done[k] for k in ABLATIONS if k in done]
    if getattr(args, "twin", False):
        row = twin_row(seeds or SEEDS, args.data_dir, measured, getattr(args, "epochs", None),
                       getattr(args, "float32", False))
        # one row per setting: the latest measurement of each
        done = {(r["epochs"], r["implementation"]): r for r in state.get("airbench_twins", [])}
        done[row["epochs"], row["implementation"]] = row
        state["airbench_twins"] = sorted(done.values(),
                                         key=lambda r: (float(r["epochs"]), r["implementation"]))
        print(json.dumps({k: v for k, v in row.items() if k != "stamp"}, indent=1), flush=True)
    if args.jpeg_cost:
        runs = jpeg_cost_runs(args.data_dir, seed=seeds[0] if seeds else 0)
        state["jpeg_cost"] = {"runs": runs, "rows": jpeg_cost_rows(runs, measured)}


def render(state, labelled, format_table):
    """The airbench tables of the cifar10 section (empty until measured)."""
    body = ""
    recipe = state.get("airbench")
    if recipe:
        shown, notes = labelled([recipe], ["cifar10"])
        body += ("airbench94's recipe in Keras (`--config recipes/cifar10_airbench94.json`, issue 23): "
                 "trained on the 46,000 training images outside the first 4,000, which are held out as "
                 "lossless originals and scored with their JPEG versions; mean ± standard deviation over "
                 "the seeds (reference: 94.01 % on the original test set, 3.83 s on an A100):\n\n"
                 + format_table(shown, RECIPE_COLUMNS) + "\n\nStamps:\n\n" + notes + "\n\n")
    twins = state.get("airbench_twins")
    if twins:
        shown, notes = labelled(twins, ["cifar10"] * len(twins))
        body += ("The same recipe in plain PyTorch, written the way the reference is (one training loop, "
                 "a summed loss, coupled weight decay, 9.9 epochs of full batches; `python -m "
                 "benchmarks.cifar10 --twin`, longer: `--epochs 20`, in float32: `--float32`), trained on "
                 "the same 46,000 images and scored on the same held-out and test images: what the Keras "
                 "port itself costs, if anything, and what more epochs or full precision would add:\n\n"
                 + format_table(shown, TWIN_COLUMNS) + "\n\nStamps:\n\n" + notes + "\n\n")
    rows = list(state.get("ablations", [])) + (tta_rows(recipe) if recipe else [])
    if rows:
        shown, notes = labelled(rows, ["cifar10"] * len(rows))
        body += ("Ablations: the recipe with one method removed (change: against the recipe row's mean):\n\n"
                 + format_table(shown, ABLATION_COLUMNS) + "\n\nStamps:\n\n" + notes + "\n\n")
    if state.get("jpeg_cost"):
        rows = state["jpeg_cost"]["rows"]
        shown, notes = labelled(rows, ["cifar10"] * len(rows))
        settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in JPEG_COST_SETTINGS.items())
        body += ("What training on the JPEG copy costs (`python -m benchmarks.cifar10 --jpeg-cost`): the "
                 f"4,000 lossless held-out images in {JPEG_COST_FOLDS} folds; the recipe, scaled to 3,000 "
                 f"images (`{settings}`), trains on all folds but one, once on their lossless originals and "
                 "once on their JPEG versions (the same seed, so the same initial weights, batches and "
                 "augmentation), and both are scored on the remaining fold; each fold in turn:\n\n"
                 + format_table(shown, JPEG_COST_COLUMNS) + "\n\nStamps:\n\n" + notes + "\n\n")
    return body
