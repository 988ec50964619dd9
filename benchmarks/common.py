"""Helpers for benchmark scripts: the stamp of every measured row, rows files, and rewriting one section of
RESULTS.md.

A stamp says where a number comes from: date, machine, versions, commit and the benchmark command that
measured it. The script that measures a row writes its stamp at that moment; nothing stamps a row by hand,
and a row without a whole stamp is refused (every row measured before stamps existed has been measured
again). A row measured with code older than its lesson's last change of behaviour (`LAST_CHANGE`) is marked
as older when it is rendered.

The benchmark scripts import this module, never the other way round: `python -m benchmarks.render` renders
every section of RESULTS.md again from what is recorded, measuring nothing.
"""

import functools
import json
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEvery section is written by the script named in it; rerun the command to "
          "reproduce it. Timings are wall-clock on the machine stated.\n")
STAMP_FIELDS = ("date", "machine", "versions", "commit", "command")
# The last commit that changed what each lesson's training does (its numbers, not only its speed): rows
# measured at an earlier commit are shown as older. Update it with every such change.
LAST_CHANGE = {
    lesson: ("89d82be", "the run-folder rewrite: each epoch's batches come from one repeated, seeded stream")
    for lesson in ("phone_price", "imdb", "cifar10", "captioning")
}
LAST_CHANGE["cifar10"] = ("ce58588", "the lossless hold-out: the first 4,000 training images are held out by "
                                     "default, and TTA averages log-probabilities")
LAST_CHANGE["frameworks"] = ("607c443", "the table's models became the lessons' current ones (CIFAR-10: the "
                                       "airbench94 net beside its twin)")
# Whole sections written by one run (no rows file): the lesson each belongs to, for the older mark.
SECTION_LESSONS = {"phone_price": "phone_price", "tuning_phone_price": "phone_price", "tuning_imdb": "imdb",
                   "tuning_cifar10": "cifar10", "frameworks": "frameworks", "distribution": "cifar10",
                   "stage_profile": "cifar10", "keras_speed": "cifar10"}
# Sections rendered from a rows file by their script (`render_recorded`).
ROWS_SECTIONS = ("imdb", "cifar10", "captioning", "backends")
# Paths a benchmark rewrites itself: changed, they do not make the code measured differ from its commit.
_OUTPUTS = ("benchmarks/RESULTS.md", "benchmarks/*_rows.json", "benchmarks/plots")


def machine_facts():
    import keras
    import tensorflow as tf

    from common import hardware

    gpus = hardware.accelerators("tensorflow")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{hardware.cpu_model()}, {hardware.machine_cores()} cores, "
                   + (f"{len(gpus)} GPU(s)" if gpus else "no GPU"),
        "versions": f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
                    f"Keras {keras.__version__} ({keras.backend.backend()} backend)",
        "commit": _git_commit(),
    }


def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)


def _git_commit():
    """The short commit, with " + local changes" when tracked code differs from it (the results excepted)."""
    head = _git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                   *(f":(exclude){path}" for path in _OUTPUTS))
    return head.stdout.strip() + (" + local changes" if changed.stdout.strip() else "")


def stamp(command):
    """Where a row measured now comes from: date, machine, versions, commit and the benchmark `command`.
    Called before anything is measured; a tree with uncommitted changes to tracked code is refused (exit
    2): a row must name the commit that reproduces it (`python -m benchmarks.stale` checks them later)."""
    if _git_commit().endswith("+ local changes"):  # before machine_facts imports TensorFlow
        print("error: the working tree has uncommitted changes to tracked files (git status); commit them "
              "first, so that the row's commit reproduces it.", file=sys.stderr)
        sys.exit(2)
    return {**machine_facts(), "command": command}


def stamp_problem(value):
    """None when `value` is a whole stamp; else what is wrong with it."""
    if not isinstance(value, dict):
        return "no stamp"
    missing = [name for name in STAMP_FIELDS if not value.get(name)]
    return f"a stamp without {', '.join(missing)}" if missing else None


@functools.lru_cache(maxsize=None)
def _contains(commit, ancestor):
    """True when `commit` includes `ancestor`; None when git cannot tell (not a checkout, unknown commit)."""
    result = _git("merge-base", "--is-ancestor", ancestor, commit)
    return {0: True, 1: False}.get(result.returncode)


def older(value, lesson):
    """Why a stamped row predates its lesson's last change of behaviour, or None when it does not."""
    if lesson not in LAST_CHANGE or "none" in value:
        return None
    changed, what = LAST_CHANGE[lesson]
    commit = value["commit"].split()[0]
    contains = _contains(commit, changed)
    if contains:
        return None
    when = "before" if contains is False else "perhaps before (commit not in this history)"
    return f"older: measured {when} {what} (commit {changed}); rerun with `{value['command']}`"


def describe(value, lesson):
    """One line for a stamp, with the older mark where it applies."""
    text = (f"{value['date']}; {value['machine']}; {value['versions']}; commit {value['commit']}; "
            f"`{value['command']}`")
    mark = older(value, lesson)
    return text + (f"; **{mark}**" if mark else "")


def stamp_notes(stamps, lessons):
    """A label per row ("[1]", "[2] older", ...) and the notes that spell each distinct stamp out once."""
    labels, notes = [], {}
    for value, lesson in zip(stamps, lessons, strict=True):
        text = describe(value, lesson)
        number = notes.setdefault(text, len(notes) + 1)
        mark = " older" if older(value, lesson) else ""
        labels.append(f"[{number}]{mark}")
    return labels, "\n".join(f"- [{number}] {text}" for text, number in notes.items())


def labelled(rows, lessons):
    """`rows` with their "stamp" shown as a label, and the notes under the table (see stamp_notes)."""
    labels, notes = stamp_notes([row["stamp"] for row in rows], lessons)
    return [dict(row, stamp=label) for row, label in zip(rows, labels, strict=True)], notes


def facts_block(value, lesson=None):
    """The head of a section written whole by one run: its stamp, one fact a line."""
    lines = [f"- {name}: " + (f"`{value[name]}`" if name == "command" else value[name])
             for name in STAMP_FIELDS]
    mark = older(value, lesson)
    return "\n".join(lines + ([f"- **{mark}**"] if mark else [])) + "\n"


def write_section(name, body):
    """Replace (or append) the section between the markers for `name` in RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = (pattern.sub(lambda _: section, text) if pattern.search(text)
            else text.rstrip() + "\n\n" + section + "\n")
    RESULTS.write_text(text)


def read_section(name):
    """The body of section `name` in RESULTS.md, or None."""
    match = re.search(f"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", RESULTS.read_text(), re.S)
    return match.group(1) if match else None


def read_rows(path, empty):
    """A benchmark's `<lesson>_rows.json` (every row measured so far, each with its stamp), or `empty`
    before its first row."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else empty


def publish(name, body):
    """Write a benchmark's section into RESULTS.md and show it."""
    write_section(name, body)
    print(body)


# Options whose value is a folder of the machine that ran the benchmark: the results file shows DIR instead.
PATH_OPTIONS = ("--keep", "--data-dir", "--from-run")


def command_line(module, argv=None):
    """How this benchmark was started, for the results file: `python -m benchmarks.<name> [args]`, each
    argument quoted as a shell needs it (`--extra "--epochs 3"` stays one argument), the folders of
    `PATH_OPTIONS` written DIR (no path of the measuring machine goes into the repository)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        option = arg.split("=", 1)[0]
        if option in PATH_OPTIONS and "=" in arg:
            args[i] = f"{option}=DIR"
        elif i > 0 and args[i - 1] in PATH_OPTIONS:
            args[i] = "DIR"
    return " ".join(["python -m", module, *map(shlex.quote, args)])


# -------------------------------------------------------------------------- sections written whole by one run
def section_stamp(body):
    """The stamp in the head of a section written whole by one run (its `- name: value` lines)."""
    found = dict(re.findall(r"^- (date|machine|versions|commit|command): (.+)$", body, re.M))
    if "command" in found:
        found["command"] = found["command"].strip("`")
    return found


def marked(name, body):
    """A whole section's `body` with its older mark as LAST_CHANGE gives it now (added, kept or removed)."""
    value = section_stamp(body)
    if stamp_problem(value):
        return body
    body = re.sub(r"^- \*\*older: .*\n", "", body, flags=re.M)
    mark = older(value, SECTION_LESSONS.get(name))
    if mark:
        body = re.sub(r"^(- command: .*\n)", lambda m: m.group(1) + f"- **{mark}**\n", body, count=1,
                      flags=re.M)
    return body
