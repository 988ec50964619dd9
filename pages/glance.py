"""The panel at the top of a lesson page: the model, the data, the loss, the optimizer, the time and the
measured result of the lesson's default run (`python -m tasks.<task>`), read without running anything.

Three sources, none typed by hand:

- the config that run resolves (`common/config.py: build_config`: the dataclass defaults, the default
  profile, then its `MODEL_PROFILES` entry for the default model);
- the lesson's section of benchmarks/RESULTS.md: the rows measured with that recipe (`default_rows`), each
  with its date, commit and machine;
- the newest finished run of the lesson, when there is one.

A lesson that cannot be imported (a missing optional package) gets a panel from RESULTS.md alone, with a
warning on stderr; a lesson with no measured row says so.
"""

import ast
import dataclasses
import importlib
import re
from pathlib import Path

from common.config import GROUPS, build_config, field_metadata, shown
from common.errors import UserError
from common.run_report import DATA_SETS, SPLIT_FIELDS
from pages.results import warn

ROOT = Path(__file__).resolve().parents[1]
TABLE_RULE = re.compile(r"\|[-| :]+\|")
STAMP = re.compile(r"^- \[(?P<key>\d+)\] (?P<text>.*)$")  # "- [3] 2026-12-01; machine; versions; commit ..."
BULLET = re.compile(r"^- (?P<key>[^:\[`]+): (?P<value>.*)$")  # "- date: 2026-11-30" (a section's own stamp)
UNIT = re.compile(r"\((?P<unit>s|min|ms|h)\)")  # "wall time (min)"
SIZES = re.compile(r"\((?P<sizes>\d+(?:,\d+)+)\)")  # "fast (64,256,256)": the widths a row was measured with
# The columns that hold a measured result: test accuracy (one number or mean +- std), caption scores; not
# validation numbers (`best val accuracy`), which chose the recipe.
RESULT = re.compile(r"^(?!.*\bval).*(test accuracy|BLEU-\d|CIDEr|ROUGE|METEOR)", re.IGNORECASE)
# The optimizers that use the `momentum` setting (common/registry.py: optimizer); the others ignore it.
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")


@dataclasses.dataclass
class Table:
    """One Markdown table of a RESULTS.md section, with the stamps (`[n]` -> date, machine, commit) listed
    after it."""
    header: list
    rows: list
    stamps: dict


# ----------------------------------------------------------------------------------------------- RESULTS.md
def _cells(line):
    return [cell.strip() for cell in line.strip()[1:-1].split("|")]


def cell(row, k):
    """The row's cell in column `k` ("" where the column or the cell is missing)."""
    return row[k] if k is not None and k < len(row) else ""


def read_section(markdown):
    """(the section's tables in order, its own `- key: value` bullets such as date, machine, commit).

    A table's stamps are the first `- [n] date; machine; versions; commit ...` list after it (IMDB puts a
    summary table between its main table and their stamps)."""
    lines = markdown.splitlines()
    tables, stamp_lists, bullets = [], [], {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|") and i + 1 < len(lines) and TABLE_RULE.fullmatch(lines[i + 1].strip()):
            header, rows, i = _cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((len(stamp_lists), Table(header, rows, {})))
            continue
        stamp, bullet = STAMP.match(line), BULLET.match(line)
        if stamp:
            if not stamp_lists or not STAMP.match(lines[i - 1]):
                stamp_lists.append({})
            stamp_lists[-1][stamp["key"]] = _stamp(stamp["text"])
        elif bullet and not tables:  # the bullets above the first table describe the whole section
            bullets[bullet["key"].strip()] = bullet["value"].strip()
        i += 1
    for position, table in tables:
        table.stamps = stamp_lists[position] if position < len(stamp_lists) else {}
    return [table for _, table in tables], bullets


def _stamp(text):
    """`2026-12-01; AMD EPYC, 2 cores, no GPU; Python ...; commit eb22839; `command`` as a dict."""
    parts = [part.strip() for part in text.split("; ")]
    commit = next((part[len("commit "):] for part in parts if part.startswith("commit ")), None)
    return {"date": parts[0], "machine": parts[1] if len(parts) > 1 else None, "commit": commit}


def column(table, pattern):
    """The index of the first header that `pattern` (a regex) finds, case-insensitive, or None."""
    return next((k for k, name in enumerate(table.header) if re.search(pattern, name, re.IGNORECASE)), None)


def lesson_table(tables):
    """The section's main table: the first one with a result column."""
    return next((t for t in tables if any(RESULT.search(name) for name in t.header)), None)


def default_rows(table, config):
    """The rows of `table` measured with the default run's recipe.

    A row is the default run's when its label (first cell) starts with the model the run trains
    (`config.model`, or `config.dataset` for a lesson without a model field), any list of sizes in it such as
    `fast (64,256,256)` is one of the config's (a row measured with other widths is an older recipe), its
    command (if the table has one) names no recipe file (`--config`) and its profile (if the table has one)
    is the run's. A lesson whose config names neither model nor data set: the table's first row.
    """
    if table is None:
        return []
    name = (getattr(config, "model", None) or getattr(config, "dataset", None)) if config else None
    if name is None:
        return table.rows[:1]
    sizes = {tuple(value) for value in vars(config).values() if isinstance(value, tuple) and value}
    command, profile = column(table, r"^command$"), column(table, r"^profile$")
    chosen = []
    for row in table.rows:
        label = row[0]
        if re.split(r"[\s(\[,]", label, maxsplit=1)[0] != name:
            continue
        if any(tuple(int(n) for n in found.split(",")) not in sizes for found in SIZES.findall(label)):
            continue
        if "--config" in cell(row, command):
            continue
        if profile is not None and cell(row, profile) != config.profile:
            continue
        chosen.append(row)
    return chosen


def row_stamp(table, row, bullets):
    """Date, machine and commit of a row: its `[n]` stamp, else the section's own bullets."""
    k = column(table, r"^stamp$")
    key = re.sub(r"\D", "", cell(row, k))
    stamp = table.stamps.get(key)
    if stamp:
        return stamp
    return {"date": bullets.get("date"), "machine": bullets.get("machine"), "commit": bullets.get("commit")}


def measured_time(table, row, bullets):
    """How long the default run took, as the section states it: a `wall time ...` bullet of the section,
    else the row's wall time, else its train time (with the unit of the column's header)."""
    for key, value in bullets.items():
        if key.lower().startswith("wall time"):
            return f"{key}: {value}"
    for pattern in (r"^wall time", r"^train time"):
        k = column(table, pattern)
        if cell(row, k):
            unit = UNIT.search(table.header[k])
            label = UNIT.sub("", table.header[k]).strip()
            return f"{label} of '{row[0]}': " + f"{cell(row, k)} {unit['unit'] if unit else ''}".strip()
    return None


# -------------------------------------------------------------------------------------------- the lesson
def default_config(task):
    """The config `python -m tasks.<task>` resolves, or None (with a warning) when the lesson cannot be
    imported or names no config class."""
    try:
        module = importlib.import_module(f"tasks.{task}")
        classes = [value for value in vars(module).values() if isinstance(value, type)
                   and dataclasses.is_dataclass(value) and getattr(value, "TASK", None) == task]
        return build_config(classes[0]) if classes else None
    except (ImportError, UserError) as error:
        warn(ROOT / "tasks" / f"{task}.py", f"settings unread: {type(error).__name__}: {error}")
        return None


def model_reference(lesson):
    """(label, one-line description) of the factory the lesson's model section names (`models/x.py: f`):
    the description is the first paragraph of that module's docstring."""
    sections = sorted(lesson.sections, key=lambda s: "model" not in s.title.lower())
    for section in sections:
        for label, _ in section.references:
            path = label.split(":")[0]
            if path.startswith("models/"):
                return label, first_paragraph(ROOT / path)
    return None, None


def first_paragraph(path):
    """The first paragraph of a module's docstring, on one line (None if it has none)."""
    try:
        doc = ast.get_docstring(ast.parse(Path(path).read_text())) or ""
    except (OSError, SyntaxError):
        return None
    return " ".join(doc.split("\n\n")[0].split()) or None


def compile_loss(path):
    """The `loss=` of the lesson's `model.compile(...)` as written, with the comment on its line."""
    try:
        source = Path(path).read_text()
        tree = ast.parse(source)
    except (OSError, SyntaxError):
        return None
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "compile"]
    calls.sort(key=lambda c: (getattr(c.func.value, "id", None) != "model", c.lineno))
    for call in calls:
        for keyword in call.keywords:
            if keyword.arg == "loss":
                line = source.splitlines()[keyword.value.end_lineno - 1]
                comment = line.split("  # ", 1)[1].strip() if "  # " in line else None
                code = ast.get_source_segment(source, keyword.value)
                return f"{code} ({comment})" if comment else code
    return None


def _setting(config, name):
    return shown(getattr(config, name))


def optimizer_line(config):
    """The optimizer, its rate and the settings it uses, the schedule, epochs and batch size."""
    parts = [config.optimizer, f"learning rate {_setting(config, 'learning_rate')}"]
    if config.optimizer in MOMENTUM_OPTIMIZERS:
        parts.append(f"momentum {_setting(config, 'momentum')}")
    if config.weight_decay:
        parts.append(f"weight decay {_setting(config, 'weight_decay')}")
    if config.clipnorm:
        parts.append(f"gradients clipped to norm {_setting(config, 'clipnorm')}")
    schedule = f"{config.schedule} schedule"
    if config.warmup_epochs:
        schedule += f" (warm-up {_setting(config, 'warmup_epochs')} epochs)"
    parts += [schedule, f"{config.epochs} epochs of batches of {config.batch_size}"]
    if config.early_stopping:
        parts.append(f"early stopping (patience {config.early_stopping})")
    return ", ".join(parts)


def loss_line(config, lesson_path):
    """The config's loss (and label smoothing), else the loss the lesson's compile call names."""
    loss = getattr(config, "loss", None)
    if loss:
        smoothing = getattr(config, "label_smoothing", 0)
        return loss + (f", label smoothing {shown(smoothing)}" if smoothing else "")
    return compile_loss(lesson_path) if lesson_path else None


def applies(config, meta):
    """False for a setting whose help starts with another choice's name (`--dataset folder: ...` when the
    run reads flickr8k, `--encoder cnn: ...` when it uses a pretrained encoder)."""
    other = re.match(r"--([\w-]+) (\w+):", meta.get("help", ""))
    return not other or str(getattr(config, other[1].replace("-", "_"), other[2])) == other[2]


def split_settings(config):
    """The data settings that decide which examples the run sees (`SPLIT_FIELDS` of common/run_report.py)."""
    shown_ = []
    for f in dataclasses.fields(config):
        meta = field_metadata(type(config), f)
        value = getattr(config, f.name)
        if (meta.get("group") == "data" and SPLIT_FIELDS.search(f.name) and value not in (None, "")
                and applies(config, meta)):
            shown_.append(f"{f.name} {shown(value)}")
    return ", ".join(shown_)


def architecture_settings(config):
    """The model settings that name a choice or give a size (`activation gelu`, `widths 64,256,256`, `units
    64`); switches and the recipe's fractions (dropout, scales) are in the panel's list of every setting."""
    shown_ = []
    for f in dataclasses.fields(config):
        meta = field_metadata(type(config), f)
        value = getattr(config, f.name)
        sized = isinstance(value, (str, tuple, int)) and not isinstance(value, bool) and value != ()
        if meta.get("group") == "model" and f.name != "model" and sized and applies(config, meta):
            shown_.append(f"{f.name} {shown(value)}")
    return ", ".join(shown_)


def every_setting(config):
    """[(group, [(name, value, where it came from)])] in the order of `--help` (data, model, training, run):
    the whole resolved config, for the panel's details."""
    groups = {group: [] for group in GROUPS}
    sources = getattr(config, "sources", {})
    for f in dataclasses.fields(config):
        group = field_metadata(type(config), f).get("group", "other")
        groups.setdefault(group, []).append((f.name, shown(getattr(config, f.name)),
                                             sources.get(f.name, "the lesson's default")))
    return [(group, fields) for group, fields in groups.items() if fields]


def seconds_text(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _number(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------------------ the panel
ROWS = ("model", "data", "loss", "optimizer", "time", "result")
UNREAD = "(the lesson's settings could not be read: see the warnings of the build)"


def lesson_glance(lesson, section_text, run, config=None):
    """The panel: {"model", "data", "loss", "optimizer", "time", "result"} -> its lines, plus "profile",
    "measured" (whether RESULTS.md has a row of the default run) and "settings" (every resolved setting).

    Args:
        lesson: the lesson as `pages/lesson.py: read_lesson` reads it.
        section_text: the lesson's section of RESULTS.md (Markdown), or None.
        run: the newest finished run as `common/run_report.py: read_run` reads it, or None.
        config: the default run's resolved config; None: `default_config(lesson.task)`.
    """
    config = config or default_config(lesson.task)
    tables, bullets = read_section(section_text) if section_text else ([], {})
    table = lesson_table(tables)
    rows = default_rows(table, config)
    glance = {
        "model": model_lines(lesson, config, table, rows, run),
        "data": [DATA_SETS.get(lesson.task) or f"the {lesson.task} data set"]
        + ([f"split settings: {split_settings(config)}"] if config and split_settings(config) else []),
        "loss": [(loss_line(config, lesson.path) or "?") if config else UNREAD],
        "optimizer": [optimizer_line(config) if config else UNREAD],
        "time": [], "result": result_lines(table, rows, bullets),
    }
    if rows:
        stamp, time = row_stamp(table, rows[0], bullets), measured_time(table, rows[0], bullets)
        if time:
            glance["time"].append(time + (f" on {stamp['machine']}" if stamp["machine"] else "")
                                  + (f" ({stamp['date']})" if stamp["date"] else ""))
    if run:
        smoke = " (smoke: not a measurement)" if run["profile"] == "smoke" else ""
        glance["time"].append(f"newest run {run['run_id']}, {run['profile']} profile: "
                              f"{seconds_text(run['wall_time_s'])}{smoke}")
        scores = "; ".join(f"{r.get('model')} {r.get('metric')} {_number(r.get('value'))}"
                           for r in run["summary"][:4])
        glance["result"].append(f"newest run {run['run_id']} ({run['profile']} profile, finished "
                                f"{run['finished']}){smoke}: {scores or 'no summary'}")
    if not glance["time"]:
        glance["time"].append("not measured yet: no row of benchmarks/RESULTS.md and no run")
    glance.update(profile=config.profile if config else "quick", measured=bool(rows),
                  settings=every_setting(config) if config else [])
    return glance


def model_lines(lesson, config, table, rows, run):
    """The model's name, factory and description, its architecture settings and its parameter count (from
    the RESULTS.md row, else from the newest run)."""
    reference, description = model_reference(lesson)
    name = getattr(config, "model", None) if config else None
    lines = [" · ".join(filter(None, [name, reference, description])) or lesson.task]
    if config and architecture_settings(config):
        lines.append(f"settings: {architecture_settings(config)}")
    count = cell(rows[0], column(table, r"^params")) if rows else ""
    if count:
        count = f"{int(count):,}" if count.isdigit() else count
        lines.append(f"{count} parameters (benchmarks/RESULTS.md, row '{rows[0][0]}')")
    elif run and run["summary"] and run["summary"][0].get("params"):
        first = run["summary"][0]
        lines.append(f"{_number(first['params'])} parameters ({first['model']}, run {run['run_id']})")
    return lines


def result_lines(table, rows, bullets):
    """One line per row of the default run: its result columns, its label and its date and commit; rows
    that differ in a setting (greedy or beam-search decoding) are told apart by it."""
    if not rows:
        return ["no row of benchmarks/RESULTS.md measures the default run yet"]
    differing = _differing_columns(table, rows)
    lines = []
    for row in rows:
        stamp = row_stamp(table, row, bullets)
        where = ", ".join(filter(None, [stamp["date"], stamp["commit"] and f"commit {stamp['commit']}"]))
        label = ", ".join(f"{table.header[k]} {cell(row, k)}" for k in differing)
        results = "; ".join(f"{name} {cell(row, k)}" for k, name in enumerate(table.header)
                            if RESULT.search(name) and cell(row, k))
        lines.append(f"{label + ': ' if label else ''}{results} (row '{row[0]}', {where})")
    return lines


def _differing_columns(table, rows):
    """The columns (other than results, times, stamps and commands) in which the chosen rows differ."""
    if len(rows) < 2:
        return []
    skip = re.compile(r"time|stamp|command|params|^epochs$", re.IGNORECASE)
    return [k for k, name in enumerate(table.header) if k and not RESULT.search(name)
            and not skip.search(name) and len({cell(row, k) for row in rows}) > 1]
