"""A report for every run (a model card): `report.html` in the run folder, one self-contained page.

    from common.run_report import write_run_report
    write_run_report(run.path)        # after metrics.json is written (training.finish_run)

It reads only what the run folder holds (config.json, metrics.json, history.csv, *.md tables, *.png figures,
model_summary.txt) plus facts of the machine and process writing it (Python, TensorFlow, Keras, backend, CPU,
accelerators, git commit, the command line), so call it from the process that ran the lesson: those facts
are the run's own. The figures are linked by relative path, so the folder can be moved or copied whole.

`save_model_summary(model, folder)` writes `model_summary.txt` (Keras' `model.summary()`) and, where pydot
and Graphviz are installed, `model.png` (`keras.utils.plot_model`); the report shows both.
"""

import csv
import html
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import unittest.mock
from pathlib import Path

import jinja2
import markdown

from common import hardware
from common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# Folders of a run that hold no figures for people: TensorBoard logs, the resume backup, exports.
SKIPPED_FOLDERS = {"logs", "backup", "saved_model"}
# Config fields that decide which examples a run saw (shown beside the data set).
# (val_size and limit: the old names of val_images and max_images, in the config.json of older runs)
SPLIT_FIELDS = re.compile(r"fraction|split|val_images|max_images|max_rows|max_batches|val_size|limit|"
                          r"^dataset$|^source$|unlabelled|shapes_count")

DATA_SETS = {
    "phone_price": "Mobile Price Classification (Kaggle): 2,000 labelled phones, 20 numeric features, "
                   "4 balanced price ranges; 1,000 unlabelled phones in test.csv.",
    "imdb": "Large Movie Review Dataset (Maas et al. 2011): 25,000 training and 25,000 test reviews, half "
            "positive; 50,000 unlabelled reviews in train/unsup.",
    "cifar10": "CIFAR-10: 50,000 training and 10,000 test colour images of 32x32 pixels in 10 classes.",
    "captioning": "Flickr8k (8,091 photos, 5 captions each, the official 6000/1000/1000 split), the shapes "
                  "images this project draws, or an image folder with captions (config field `dataset`).",
}
INTENDED_USE = {
    "phone_price": "Teaching: a feed-forward network on tabular data, with its linear baseline. The price "
                   "ranges are one Kaggle data set's; do not price real phones with it.",
    "imdb": "Teaching: recurrent and n-gram sentiment models. Trained on English movie reviews only; other "
            "domains, languages, sarcasm and mixed opinions are outside what it has seen.",
    "cifar10": "Teaching: CNNs on 10 classes of tiny photos. It labels any image as one of those 10 classes, "
               "even when it shows none of them; not a general image classifier.",
    "captioning": "Teaching: an attention captioner. Its captions repeat the phrasing of a few thousand "
                  "Flickr photos (or of the shapes data set) and can be wrong or biased; never a description "
                  "to rely on (accessibility, search, safety).",
}
SMOKE_NOTE = ("Smoke profile: a few batches that test the plumbing. Its numbers and figures say nothing "
              "about what the model can do.")

SUMMARY_WIDTH = 110  # characters per line of model_summary.txt



class EscapeHtml(markdown.extensions.Extension):
    """Show raw HTML as text: the prose is docstrings, comments and tables, where `<run-id>` is a
    placeholder, not a tag (Python-Markdown's documented replacement for its old safe_mode)."""

    def extendMarkdown(self, md):
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


def markdown_to_html(text):
    """Python-Markdown with tables and fenced code: how the project's *.md files are written."""
    return markdown.markdown(text, extensions=["tables", "fenced_code", EscapeHtml()], output_format="html")


# ---------------------------------------------------------------------------------------------- run contents
def read_run(run_path):
    """What a finished run folder says about itself, as plain data for a report or a page."""
    run_path = Path(run_path)
    config_path, metrics_path = run_path / "config.json", run_path / "metrics.json"
    if not metrics_path.is_file() or not config_path.is_file():
        raise UserError(f"{run_path} is not a finished run folder (expected config.json and metrics.json).")
    config = json.loads(config_path.read_text())
    metrics = json.loads(metrics_path.read_text())
    task = metrics.get("task") or config.get("task", "?")
    return {
        "path": run_path, "task": task, "run_id": run_path.name, "config": config, "metrics": metrics,
        "profile": metrics.get("profile") or config.get("profile", "?"),
        "seed": metrics.get("seed", config.get("seed")),
        "summary": metrics.get("summary", []),
        "model_rows": _model_rows(metrics.get("results", {})),
        "last_epoch": _last_epoch(run_path / "history.csv"),
        "tables": [(p.relative_to(run_path).as_posix(), markdown_to_html(p.read_text()))
                   for p in _files(run_path, "*.md")],
        "figures": [p.relative_to(run_path).as_posix() for p in _files(run_path, "*.png")],
        "pages": [p.relative_to(run_path).as_posix() for p in _files(run_path, "*.html")
                  if p.name != "report.html"],
        "model_summary": _read_text(run_path / "model_summary.txt"),
        "started": _stamp(config_path), "finished": _stamp(metrics_path),
        "wall_time_s": round(metrics_path.stat().st_mtime - config_path.stat().st_mtime, 1),
        "data": _data_facts(task, config, metrics),
    }


def _files(run_path, pattern):
    """Files of the run folder and of its model sub-folders (baseline/, ngram_reference/), in order;
    cross-validation folds (cv/<model>/fold-k/) are deeper and left out: one figure per fold would bury the
    run's own."""
    found = [p for p in run_path.rglob(pattern) if len(p.relative_to(run_path).parts) <= 2
             and not SKIPPED_FOLDERS & set(p.relative_to(run_path).parts[:-1])]
    return sorted(found, key=lambda p: (len(p.relative_to(run_path).parts), p.as_posix()))


def _read_text(path):
    return path.read_text() if path.is_file() else None


def _stamp(path):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))


def _model_rows(results):
    """One row per trained model: its scalar results (lists and tables such as the confusion matrix are left
    to the figures)."""
    rows = []
    for name, values in results.items():
        if isinstance(values, dict):
            scalars = {k: v for k, v in values.items()
                       if isinstance(v, (int, float, str)) and k not in ("folder", "model", "data")}
            rows.append({"model": name, **scalars})
    return rows


def _last_epoch(history_path):
    """The last row of history.csv (a resumed run appends a second header; its last row is still the last
    epoch trained), without importing the training module and with it TensorFlow."""
    if not history_path.is_file():
        return None
    rows = list(csv.reader(history_path.read_text().splitlines()))
    header, last = rows[0], rows[-1]
    if len(rows) < 2 or last == header:
        return None
    values = dict(zip(header, last, strict=False))  # a cut-off last row still shows what it has
    return {"epochs": int(values.pop("epoch")) + 1,
            **{name: float(value) for name, value in values.items() if value not in ("", "NA")}}


def _data_facts(task, config, metrics):
    """The data set, its split sizes where the run recorded them, and every caveat the run noted."""
    recorded = metrics.get("data") if isinstance(metrics.get("data"), dict) else {}
    notes = [recorded["note"]] if recorded.get("note") else []
    for values in metrics.get("results", {}).values():
        note = values.get("data") if isinstance(values, dict) else None
        if isinstance(note, str) and note not in notes and note != "original images":
            notes.append(note)
    return {
        "description": recorded.get("name") or DATA_SETS.get(task, f"the {task} data set"),
        "splits": recorded.get("splits") or {},
        "settings": {k: v for k, v in config.items() if SPLIT_FIELDS.search(k) and v not in (None, "")},
        "caveats": notes,
    }


# ----------------------------------------------------------------------------------------------- environment
def environment():
    """Facts of this process and machine; imports nothing heavy (versions come from package metadata)."""
    return {
        "Python": platform.python_version(),
        "TensorFlow": _version("tensorflow"),
        "Keras": _version("keras"),
        "backend": _backend(),
        "machine": f"{hardware.cpu_model()}, {hardware.machine_cores()} cores, {platform.system()} "
                   f"{platform.machine()}",
        "accelerators": _accelerators(),
        "git commit": git_commit(),
    }


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _backend():
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def _accelerators():
    """GPUs as the backend this process loaded sees them (only an already imported framework is asked)."""
    found = hardware.imported_accelerators()
    if found is None:
        return "not checked (no framework loaded)"
    return f"{len(found)} GPU(s)" if found else "none (CPU only)"


def git_commit():
    """Short commit of this checkout, marked when files differ from it; 'unknown' outside git."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=True,
                              timeout=20).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (with uncommitted changes)" if changed else "")


def launch_command(task):
    """How this process was started, as the user typed it, when it was the lesson itself; else None."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.stem != task or script.parent.name != "tasks":
        return None  # e.g. a test or a notebook calling train() in-process: no command line to show
    return shlex.join(["python", "-m", f"tasks.{task}", *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------------- report
TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ run.task }} run {{ run.run_id }}: report</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1d1d1f; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d0d5; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f1f4; }
code, pre { font-family: ui-monospace, monospace; font-size: .9rem; background: #f6f6f8; }
pre { padding: .6rem; overflow-x: auto; line-height: 1.2; }
.smoke { background: #fff3cd; border: 1px solid #e0c060; padding: .6rem 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #e0e0e5; }
figcaption { font-size: .9rem; color: #555; }
</style></head><body>
<h1>{{ run.task }}: run {{ run.run_id }}</h1>
<p>Profile <b>{{ run.profile }}</b>, seed {{ run.seed }}; started {{ run.started }}, \
finished {{ run.finished }}
({{ run.wall_time_s }} s from config.json to metrics.json).</p>
{% if run.profile == "smoke" %}<p class="smoke">{{ smoke_note }}</p>{% endif %}

<h2>Intended use and limits</h2>
<p>{{ intended_use }}</p>

<h2>Command</h2>
{% if command %}<p>As started:</p><pre>{{ command }}</pre>{% endif %}
<p>The same recipe again (a new run id; data and output folders as you choose):</p>
<pre>python -m tasks.{{ run.task }} --config {{ config_path }} --run-id &lt;new-id&gt;</pre>

<h2>Environment</h2>
<table>{% for name, value in env.items() %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
<tr><th>seed</th><td>{{ run.seed }} (deterministic ops: {{ run.config.get("deterministic", "?") }})</td></tr>
<tr><th>report written</th><td>{{ written }}</td></tr></table>

<h2>Data</h2>
<p>{{ run.data.description }}</p>
{% if run.data.splits %}<table><tr><th>split</th><th>examples</th></tr>
{% for name, size in run.data.splits.items() %}<tr><td>{{ name }}</td><td>{{ size }}</td></tr>{% endfor %}
</table>{% else %}<p>Split sizes were not recorded by this run; its split settings:</p>{% endif %}
{% if run.data.settings %}<table>{% for name, value in run.data.settings.items() %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>{% endif %}
{% for note in run.data.caveats %}<p><b>Caveat:</b> {{ note }}</p>{% endfor %}

<h2>Metrics</h2>
{{ table(run.summary) }}
{% if run.model_rows %}<h3>Per model</h3>{{ table(run.model_rows) }}{% endif %}
{% if run.last_epoch %}<h3>Last epoch (history.csv)</h3>{{ table([run.last_epoch]) }}{% endif %}
{% for name, body in run.tables %}<h3>{{ name }}</h3>{{ body | safe }}{% endfor %}

{% if run.model_summary %}<h2>Model</h2><pre>{{ run.model_summary }}</pre>{% endif %}

<h2>Figures</h2>
{% for figure in run.figures %}<figure><img src="{{ figure }}" alt="{{ figure }}">
<figcaption>{{ figure }} (run {{ run.run_id }}, {{ run.profile }} profile)</figcaption></figure>
{% else %}<p>This run saved no figures.</p>{% endfor %}
{% for page in run.pages %}<p>Also in this run: <a href="{{ page }}">{{ page }}</a></p>{% endfor %}

<h2>Configuration (config.json)</h2>
<table>{% for name, value in run.config.items() %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</body></html>
""")


def html_table(rows):
    """A list of dicts as an HTML table (columns in first-seen order; floats with 4 decimals)."""
    if not rows:
        return jinja2.utils.markupsafe.Markup("<p>(none)</p>")
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(row.get(c, '')))}</td>" for c in columns)
                   + "</tr>" for row in rows)
    return jinja2.utils.markupsafe.Markup(f"<table><tr>{head}</tr>{body}</table>")


def write_run_report(run_path, command=None):
    """Write `report.html` into a finished run folder and return its path.

    Args:
        run_path: the run folder (holds config.json and metrics.json).
        command: the command line that made the run; by default this process's own, when it is the lesson
            (`python -m tasks.<task> ...`), else none is shown.
    """
    run = read_run(run_path)
    config_path = Path(run["config"].get("output_dir", "runs")) / run["task"] / run["run_id"] / "config.json"
    page = TEMPLATE.render(
        run=run, env=environment(), command=command or launch_command(run["task"]), table=html_table,
        config_path=config_path.as_posix(), written=time.strftime("%Y-%m-%d %H:%M:%S"), smoke_note=SMOKE_NOTE,
        intended_use=INTENDED_USE.get(run["task"], "Teaching material; not a model to deploy."))
    from common.runs import atomic_write_text

    path = Path(run_path) / "report.html"
    atomic_write_text(path, page)  # written whole: it is the last file of a finished run
    return path


def save_model_summary(model, folder, show=True):
    """`model_summary.txt` from `model.summary()` (printed too, with `show`), and `model.png` where Keras can
    draw one.

    keras.utils.plot_model needs the pydot package and Graphviz's `dot` program; without them the diagram is
    skipped with a one-line notice. Returns the paths written.
    """
    import keras

    folder = Path(folder)
    lines = []
    # Keras draws the table with rich, which crops it to the terminal's width (80 columns when captured).
    with unittest.mock.patch.dict(os.environ, {"COLUMNS": str(SUMMARY_WIDTH)}):
        model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text), line_length=SUMMARY_WIDTH)
    written = [folder / "model_summary.txt"]
    written[0].write_text("\n".join(lines).rstrip() + "\n")
    if show:
        print(written[0].read_text(), end="")
    try:
        keras.utils.plot_model(model, to_file=str(folder / "model.png"), show_shapes=True, dpi=72)
        written.append(folder / "model.png")
    except (ImportError, OSError, ValueError) as error:  # no pydot/Graphviz, or a model Keras cannot draw
        print(f"model diagram skipped: {str(error).splitlines()[0]}")
    return written
