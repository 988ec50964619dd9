"""Report of a search, read from KerasTuner's own files (works for finished, running and distributed
searches alike):

    python -m tuning.report tuning_runs/phone_price/random-quick

writes into that folder:
- `trials.csv`, `trials.md`: every trial ranked by the objective (failed trials last, with their status),
- `objective_vs_hyperparameters.png`: the objective against each hyperparameter,
- `report.html`: all of it as one page, with the environment (linked from the lesson pages),
- `best.json`: the best trial as a task config file (`python -m tasks.<task> --config best.json`),
- with TensorBoard logs (`tensorboard/`, on by default), the command that opens their HParams dashboard,
- for `--compare` searches, `compare_curves.png` (validation curves per value, mean and range over seeds)
  and `compare.md` (best validation score per value, mean +- std over seeds).
"""

import csv
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from common.cli import quiet_tensorflow, run
from common.errors import UserError
from common.tables import format_table

quiet_tensorflow()


def unreadable(path, what):
    return UserError(f"{path} is not a readable {what} (damaged or edited by hand); remove it, or rerun the "
                     "search with --overwrite.")


def read_json(path, what, keys=()):
    """The JSON object in `path` with `keys`, or one sentence naming the file that is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
        data = None
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise unreadable(path, what)
    return data


def load_search(folder):
    folder = Path(folder)
    meta_path = folder / "search.json"
    if not meta_path.is_file():
        raise UserError(f"{folder} is not a search folder (no search.json); "
                        "expected tuning_runs/<task>/<name>/ written by python -m tuning.search.")
    return read_json(meta_path, "search settings file", keys=("task", "tuner", "profile", "objective"))


def read_trial(path):
    """One trial as {trial_id, status, score, values, hyperparameters} from KerasTuner's trial.json."""
    data = read_json(path, "KerasTuner trial file")
    try:
        hyperparameters = data["hyperparameters"]
        values = {k: v for k, v in hyperparameters["values"].items() if not k.startswith("tuner/")}
        trial_id = str(data["trial_id"])
        int(trial_id)  # the report orders trials by their number
        score = None if data.get("score") is None else float(data["score"])
    except (KeyError, TypeError, AttributeError, ValueError):
        raise unreadable(path, "KerasTuner trial file") from None
    return {"trial_id": trial_id, "status": data.get("status", "?"),
            "score": score if score is not None and math.isfinite(score) else None,
            "values": values, "hyperparameters": hyperparameters, "path": path}


def load_trials(folder, objective):
    """Every trial, best first; failed/unfinished trials last."""
    trials = [read_trial(path) for path in sorted(Path(folder).glob("trial_*/trial.json"))]
    sign = 1 if "loss" in objective else -1
    trials.sort(key=lambda t: (t["score"] is None, sign * (t["score"] or 0), int(t["trial_id"])))
    return trials


def best_config(meta, trial):
    """The best trial's hyperparameters as task config fields (the space maps names to fields)."""
    import keras_tuner

    from tuning import spaces, tasks

    spec = tasks.get(meta["task"])
    name = meta.get("compare")
    space = spaces.comparison(name, spec.comparisons[name]) if name else spec.space
    try:
        values = space(keras_tuner.HyperParameters.from_config(trial["hyperparameters"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise unreadable(trial["path"], "KerasTuner trial file") from None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def write_report(folder):
    folder = Path(folder)
    meta = load_search(folder)
    objective = meta["objective"]
    trials = load_trials(folder, objective)
    if not trials:
        raise UserError(f"{folder} has no trials yet.")
    names = sorted({name for t in trials for name in t["values"]})
    rows = []
    for rank, trial in enumerate(trials, start=1):
        rows.append({"rank": rank, "trial": trial["trial_id"], "status": trial["status"],
                     objective: "" if trial["score"] is None else round(trial["score"], 4),
                     **{name: _short(trial["values"].get(name, "")) for name in names}})
    columns = ["rank", "trial", "status", objective, *names]
    with open(folder / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "trials.md").write_text(f"# {meta['task']}: {meta['tuner']} search, {len(trials)} trials\n\n"
                                      + format_table(rows, columns) + "\n")
    finished = [t for t in trials if t["score"] is not None]
    if finished:
        best = best_config(meta, finished[0])
        (folder / "best.json").write_text(json.dumps(
            {"task": meta["task"], "_search": folder.name, "_trial": finished[0]["trial_id"],
             f"_{objective}": finished[0]["score"], **best}, indent=2) + "\n")
        plot_objective(finished, names, objective, folder / "objective_vs_hyperparameters.png")
    if meta.get("compare"):
        write_comparison(folder, meta, trials)
    write_html(folder, meta, rows)
    return rows


SEARCH_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ meta.task }}: {{ meta.tuner }} search {{ name }}</title>
<style>body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}\
table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}img{max-width:100%}</style></head><body>
<h1>{{ meta.task }}: {{ meta.tuner }} search <code>{{ name }}</code></h1>
<p>Objective: <b>{{ meta.objective }}</b>{% if meta.compare %}; comparison of \
<b>{{ meta.compare }}</b>{% endif %}.
Retrain the best configuration with
<code>python -m tasks.{{ meta.task }} --config {{ folder }}/best.json</code>.{% if tensorboard %}
Every trial's curves and hyperparameters in TensorBoard (HParams tab): \
<code>{{ tensorboard }}</code>.{% endif %}
{% if stopped %}Median stopping ended {{ stopped }} trial(s) early.{% endif %}</p>
<h2>Trials, best first</h2>{{ table(rows) }}
{% if comparison %}<h2>Comparison</h2>{{ comparison | safe }}{% endif %}
<h2>Figures</h2>{% for figure in figures %}<figure><img src="{{ figure }}" alt="{{ figure }}">
<figcaption>{{ figure }}</figcaption></figure>{% else %}<p>No figures yet.</p>{% endfor %}
<h2>Environment</h2><table>{% for key, value in env.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table></body></html>
"""


def write_html(folder, meta, rows):
    """report.html: the same tables and figures as one page (the lesson pages link to it)."""
    import jinja2

    from common import run_report

    compare = folder / "compare.md"
    page = jinja2.Environment(autoescape=True).from_string(SEARCH_PAGE).render(
        meta=meta, name=folder.name, folder=folder.as_posix(), rows=rows, table=run_report.html_table,
        comparison=run_report.markdown_to_html(compare.read_text()) if compare.exists() else None,
        figures=sorted(p.name for p in folder.glob("*.png")), env=run_report.environment(),
        tensorboard=tensorboard_command(folder) if (folder / "tensorboard").is_dir() else None,
        stopped=len(stopped_early(folder)))
    (folder / "report.html").write_text(page)


def tensorboard_command(folder):
    """The command that opens the search's TensorBoard logs (tuning/search.py writes them there)."""
    return f"tensorboard --logdir {(Path(folder) / 'tensorboard').as_posix()}"


def tensorboard_line(folder):
    return ("TensorBoard, live (HParams tab: every trial's hyperparameters against its metrics): "
            + tensorboard_command(folder))


def stopped_early(folder):
    """{trial id: epoch} of the trials that median stopping ended early (from their saved curves)."""
    stopped = {}
    for path in sorted((Path(folder) / "curves").glob("*/execution-*.json")):
        try:
            epoch = json.loads(path.read_text()).get("stopped_epoch")
        except (OSError, ValueError, AttributeError):
            continue
        if epoch:
            stopped[path.parent.name] = epoch
    return stopped


def _short(value):
    return round(value, 6) if isinstance(value, float) else value


def plot_objective(trials, names, objective, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in names if len({str(t["values"].get(n)) for t in trials}) > 1] or names
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):  # a grid may have spare axes
        points = [(t["values"][name], t["score"]) for t in trials if name in t["values"]]
        xs = [p[0] for p in points]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.scatter(xs, [p[1] for p in points], alpha=0.7)
            if name in ("learning_rate", "weight_decay", "input_l1", "l2") and min(xs) > 0:
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], [p[1] for p in points], alpha=0.7)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_comparison(folder, meta, trials):
    """Curves per compared value (mean and range over the seeds) and a table of best scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = meta["compare"]
    monitor = meta["objective"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for trial in sorted(trials, key=lambda t: int(t["trial_id"])):
        runs = [read_json(p, "learning-curve file", keys=("history",))["history"]
                for p in sorted((folder / "curves" / trial["trial_id"]).glob("execution-*.json"))]
        if not runs:
            continue
        value = trial["values"].get(name)
        for ax, metric in zip(axes, (monitor, monitor.replace("accuracy", "loss")), strict=True):
            curves = [r[metric] for r in runs if metric in r]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            stacked = np.array([c[:length] for c in curves])
            epochs = np.arange(1, length + 1)
            # Markers for short runs: a one-epoch curve is a single point.
            ax.plot(epochs, stacked.mean(axis=0), label=str(value), marker="o" if length <= 20 else None)
            ax.fill_between(epochs, stacked.min(axis=0), stacked.max(axis=0), alpha=0.15)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        best = [max(r[monitor]) if "loss" not in monitor else min(r[monitor]) for r in runs if monitor in r]
        rows.append({name: value, "seeds": len(best),
                     f"best {monitor} (mean)": round(float(np.mean(best)), 4),
                     "std": round(float(np.std(best)), 4), "status": trial["status"]})
    if axes[0].get_legend_handles_labels()[0]:  # no finished trial, no curve
        axes[0].legend(title=name)
    fig.suptitle(f"{meta['task']}: {name} compared (mean and min-max over seeds)")
    fig.tight_layout()
    fig.savefig(folder / "compare_curves.png", dpi=90)
    plt.close(fig)
    rows.sort(key=lambda r: -r[f"best {monitor} (mean)"])
    (folder / "compare.md").write_text(
        f"# {meta['task']}: {name} compared, {meta['profile']} profile\n\n"
        + format_table(rows, list(rows[0])) + "\n" if rows else "no finished trials\n")


def summary_text(folder, rows, top=10):
    folder = Path(folder)
    columns = list(rows[0]) if rows else []
    text = format_table(rows[:top], columns)
    if (folder / "best.json").exists():
        text += f"\n\nbest configuration: {folder / 'best.json'}"
    stopped = stopped_early(folder)
    if stopped:
        text += (f"\nmedian stopping ended {len(stopped)} of {len(rows)} trials early (trial: epoch): "
                 + ", ".join(f"{trial}: {epoch}" for trial, epoch in stopped.items()))
    if (folder / "tensorboard").is_dir():
        text += "\n" + tensorboard_line(folder)
    if (folder / "compare.md").exists():
        text += "\n\n" + (folder / "compare.md").read_text()
    return text


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tuning.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a search folder: tuning_runs/<task>/<name>")
    args = parser.parse_args(argv)
    try:
        rows = write_report(args.folder)
    except PermissionError as error:
        raise UserError(f"cannot write {error.filename or 'the report'}: permission denied; the report is "
                        "written into the search folder, which must be writable.") from None
    print(summary_text(args.folder, rows))
    return 0


if __name__ == "__main__":
    run(main, interrupted="interrupted: rerun the same command to write the report again.")
