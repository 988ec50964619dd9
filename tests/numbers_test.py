"""Every measured number the README, the docs (docs/*.md) and the lesson docstrings state also appears in
benchmarks/RESULTS.md.

What counts as a number here:
- a decimal (0.905, 12.4, 0.0016) or a whole number with a unit: a percentage (78 %), a time (545 s, 12.4 min,
  5 hours, 3 ms), a speed ratio (1.22x) or a size (0.6 MB, 1 GB); the ends of a range (17-18 min, 1.3-1.6x)
  share the unit written after it;
- not a bare whole number: counts and sizes of things (5 seeds, 64 units, 25,000 reviews) are facts of the
  setup, not measurements;
- not a version (a number right after Python, Keras, TensorFlow, KerasTuner, PyTorch, torch, jax, jaxlib or
  `==`), a number glued to letters or dots (BLEU-4, ResNet-20, 32x32, 1e-5, 2.21.0, 89d82be) or a list marker;
- nothing inside `inline code` or the commands of a code block (flags such as `--epochs 50` are settings);
  the comment after ` # ` on a command line is prose and is checked;
- nothing inside a parenthesis that cites a publication (holds "et al." or a year): others' published numbers.

The docs are checked with the README's rules: they hold what the README held before it was cut to a page.
Lesson docstrings also describe recipes with factors and fractions (a shift that learns 64x faster, a peak at
23 % of training), so there only decimals and times are checked.

A number is backed when RESULTS.md holds a number of the same kind that rounds to it at the precision
written: 0.905 is backed by 0.9053, 545 s by 544.8 s, 4.3 min by 257 s (times convert between ms, s, min and
hours), 85 % by 0.8525 (a percentage of a fraction). In RESULTS.md's tables a bare number takes the unit of
its column header, as in "wall time (min)".
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"%": "%", "x": "x", "ms": "ms", "s": "s", "second": "s", "seconds": "s", "min": "min",
         "minute": "min", "minutes": "min", "h": "h", "hour": "h", "hours": "h", "MB": "MB", "GB": "GB"}
UNIT = r"%|x(?!\w)|ms\b|s\b|seconds?\b|min\b|minutes?\b|h\b|hours?\b|MB\b|GB\b"
SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600}
NUMBER = re.compile(
    r"(?:(?<=\d-)|(?<![\w.\-/+=]))(?P<value>\d{1,3}(?:,\d{3})+|\d+)(?P<decimals>\.\d+)?"
    rf"(?:\s?(?P<unit>{UNIT}))?(?![\w.]*\d)(?![A-Za-z])")
RANGE_END = re.compile(rf"-\d+(?:\.\d+)?\s?(?P<unit>{UNIT})")
VERSION = re.compile(r"(Python|Keras|TensorFlow|KerasTuner|PyTorch|torch|jax|jaxlib|==)\s*$")
CITATION = re.compile(r"\([^()]*(?:et al\.|\b(?:19|20)\d\d\b)[^()]*\)")
HEADER_UNIT = re.compile(r"\((?P<paren>s|min|ms|%)\)|^\s*(?P<lead>s|min|ms) per |_(?P<mb>mb)\b")


def prose(text, keep_code=False):
    """The text a reader takes as statements: code blocks reduced to their comments, inline code and citations
    dropped (unless `keep_code`: RESULTS.md's commands and configurations may back a number), link targets
    dropped."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.lstrip().startswith(("python ", "make ")):
            line = line.split(" # ", 1)[1] if " # " in line else ""
        lines.append(line)
    text = "\n".join(lines)
    if not keep_code:
        text = CITATION.sub(" ", re.sub(r"`[^`\n]*`", " ", text))
    return re.sub(r"\]\([^)]*\)", "]", text)


def numbers(text, keep_code=False):
    """[(value as written, unit or None)] of every number in `text` that counts (see the module docstring)."""
    found, header = [], []
    lines = prose(text, keep_code).splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = []
            found += [_number(m, line) for m in NUMBER.finditer(line)]
        elif i + 1 < len(lines) and re.fullmatch(r"\|[-| :]+\|", lines[i + 1].strip()):
            header = [_header_unit(cell) for cell in line.strip().strip("|").split("|")]
        elif not re.fullmatch(r"\|[-| :]+\|", line.strip()):
            for k, cell in enumerate(line.strip().strip("|").split("|")):
                plain = len(cell.split("(")[0])  # the column's unit holds before any parenthesis
                unit = header[k] if k < len(header) else None
                found += [_number(m, cell, unit if m.start() < plain else None)
                          for m in NUMBER.finditer(cell)]
    return [number for number in found if number]


def _header_unit(cell):
    match = HEADER_UNIT.search(cell)
    if not match:
        return None
    return "MB" if match["mb"] else match["paren"] or match["lead"]


def _number(match, text, column_unit=None):
    if VERSION.search(text[:match.start()]):
        return None
    unit = UNITS.get(match["unit"] or "")
    if unit is None:
        range_end = RANGE_END.match(text, match.end())
        unit = UNITS[range_end["unit"]] if range_end else column_unit
    if not match["decimals"] and unit is None:
        return None
    return match["value"].replace(",", "") + (match["decimals"] or ""), unit


def backed(number, pool):
    """True when a number of `pool` rounds to `number` at its written precision, in a compatible unit."""
    value, unit = number
    half = 0.5 * 10 ** -(len(value.split(".")[1]) if "." in value else 0)
    for other, other_unit in pool:
        if unit in SECONDS and other_unit in SECONDS:
            scale, candidate = SECONDS[unit], float(other) * SECONDS[other_unit] / SECONDS[unit]
        elif unit == "%" and other_unit is None:
            scale, candidate = 1, float(other) * 100
        elif unit == other_unit:
            scale, candidate = 1, float(other)
        else:
            continue
        if abs(candidate - float(value)) <= half + 1e-9 * scale:
            return True
    return False


def _results_pool():
    return numbers((ROOT / "benchmarks" / "RESULTS.md").read_text(), keep_code=True)


def _unbacked(text, pool, units=None):
    """Numbers of `text` (with one of `units`, None meaning a bare decimal; all when not given) that no number
    of `pool` backs, each with its line."""
    return [f"{value} {unit or ''}".strip() + f"  <- {line.strip()[:90]}"
            for line in prose(text).splitlines() for value, unit in numbers(line)
            if (units is None or unit in units) and not backed((value, unit), pool)]


def test_every_number_in_the_readme_appears_in_results_md():
    unbacked = _unbacked((ROOT / "README.md").read_text(), _results_pool())
    assert not unbacked, "README numbers no RESULTS.md row backs:\n" + "\n".join(unbacked)


def test_every_number_in_the_docs_appears_in_results_md():
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs, "docs/*.md: none found"
    pool = _results_pool()
    unbacked = [f"docs/{path.name}: {entry}" for path in docs for entry in _unbacked(path.read_text(), pool)]
    assert not unbacked, "docs numbers no RESULTS.md row backs:\n" + "\n".join(unbacked)


def test_every_number_in_a_lesson_docstring_appears_in_results_md():
    pool = _results_pool()
    unbacked = []
    for path in sorted((ROOT / "tasks").glob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        unbacked += [f"{path.name}: {entry}" for entry in _unbacked(docstring, pool, {None, *SECONDS})]
    assert not unbacked, "lesson docstring numbers no RESULTS.md row backs:\n" + "\n".join(unbacked)


def test_what_counts_as_a_number():
    text = ("0.905 (seeds 42, 1), 12.4 min, 545 s per epoch, 78 %, 1.22x, 17-18 min, 1.3-1.6x, 0.6 MB, "
            "Python 3.11, Keras 0.99, TensorFlow 2.21.0, BLEU-4, ResNet-20, 32x32, 1e-5, 1.8e-5, 2026, "
            "5 seeds, 25,000 reviews, commit 89d82be, `--epochs 50`, `0.777` (Xu et al. 2015: 0.67) "
            "(Jordan 2024: 3.3 s)")
    assert numbers(text) == [("0.905", None), ("12.4", "min"), ("545", "s"), ("78", "%"), ("1.22", "x"),
                             ("17", "min"), ("18", "min"), ("1.3", "x"), ("1.6", "x"), ("0.6", "MB")]
    assert numbers("```bash\npython -m tasks.x --lr 0.5   # about 7 min\n```") == [("7", "min")]
    table = ("| model | wall time (min) | test accuracy |\n|---|---|---|\n"
             "| fast | 12.4 | 0.8525 (0.8621 TTA) |\n")
    assert numbers(table) == [("12.4", "min"), ("0.8525", None), ("0.8621", None)]


def test_what_backs_a_number():
    pool = [("0.9053", None), ("257", "s"), ("0.8525", None), ("44", "s")]
    assert backed(("0.905", None), pool) and backed(("0.91", None), pool)
    assert not backed(("0.904", None), pool)  # 0.9053 rounds to 0.905, never to 0.904
    assert backed(("4.3", "min"), pool) and not backed(("4.5", "min"), pool)
    assert backed(("85", "%"), pool) and not backed(("0.85", "s"), pool)
    assert not backed(("164", "s"), pool)  # the EPYC epoch time no row holds
