"""Every measured number that the README, the docs (docs/*.md), the lesson docstrings (tasks/*.py) and the
recipes' comments (the `_`-keys of recipes/*.json) state is held by a row of benchmarks/RESULTS.md that its
paragraph names: not by digits anywhere in that file.

Naming the rows (an id per row: `python -m benchmarks.rows` lists them; benchmarks/rows.py says how an id is
made from what RESULTS.md holds, `<section>/<key>@<commit>`):
- Markdown (README.md, docs/*.md): `<!-- rows: id, id -->` in the block whose numbers come from those rows, by
  habit at its end; a block is a paragraph, a list item (without its nested items), a table row (the comment
  after its last `|`), a heading, or the comments of a code block (the comment on the line right after its
  closing fence);
- a lesson docstring: `RESULTS.md: id, id` (by habit in a parenthesis) in the paragraph (blank-line separated)
  that quotes the rows;
- a recipe: `RESULTS.md: id, id` (the same) inside the comment (`_about`, a `_why` entry, ...) that quotes
  them.
A number that was measured but is held by no row (a prototype's comparisons) is described without its digits
("not re-measured"), never given an invented row.

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
Lesson docstrings and recipes also describe settings with factors and fractions (a shift that learns 64x
faster, a peak at 23 % of training), so there only decimals and times are checked, and a setting or formula
with a decimal is written as `inline code` (`momentum 0.85`).

A number is held by a row when the row has a number of the same kind that rounds to it at the precision
written: 0.905 by 0.9053, 545 s by 544.8 s, 4.3 min by 257 s (times convert between ms, s, min and hours),
85 % by 0.8525 (a percentage of a fraction). In RESULTS.md's tables a bare number takes the unit of its
column header, as in "wall time (min)".
"""

import ast
import difflib
import functools
import json
import re
from pathlib import Path

import pytest

from benchmarks import rows as results

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
# How prose names the rows its numbers come from: a Markdown comment, or "RESULTS.md: id, id" in a docstring
# or recipe (by habit inside a parenthesis).
ROW_ID = r"[\w.\-]+/[\w.\-]+(?:@[0-9a-f]{7,40})?"
ROWS_NAMED = re.compile(rf"<!--\s*rows:(?P<comment>.*?)-->"
                        rf"|(?:benchmarks/)?RESULTS\.md: (?P<cite>{ROW_ID}(?:, {ROW_ID})*)", re.S)
HEADER_UNIT = re.compile(r"\((?P<paren>s|min|ms|%)\)|^\s*(?P<lead>s|min|ms) per |_(?P<mb>mb)\b"
                         r"|(?<![\w/])(?P<per>s|ms)/(?:step|epoch)\b")


def prose(text, keep_code=False):
    """The text a reader takes as statements: code blocks reduced to their comments, the names of rows, inline
    code and citations dropped (unless `keep_code`: RESULTS.md's commands and configurations may hold a
    number), link targets dropped."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.lstrip().startswith(("python ", "make ")):
            line = line.split(" # ", 1)[1] if " # " in line else ""
        lines.append(line)
    text = ROWS_NAMED.sub(" ", "\n".join(lines))
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
    return "MB" if match["mb"] else match["paren"] or match["lead"] or match["per"]


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


# ----------------------------------------------------------------------------- blocks of prose and their rows
def named(text):
    """The row ids that `text` names (in `<!-- rows: ... -->` or `RESULTS.md: ...`; not in `inline code`)."""
    return [name.strip().rstrip(".") for match in ROWS_NAMED.finditer(re.sub(r"`[^`\n]*`", " ", text))
            for name in (match["comment"] or match["cite"]).split(",") if name.strip()]


def markdown_blocks(text):
    """[(line number, block)] of a Markdown file: paragraphs, list items (each nested item on its own),
    headings, table rows (after their table's header and separator, so that a column's unit holds) and code
    blocks (their comments, with a `<!-- rows: ... -->` line right after the closing fence)."""
    blocks, current, start, code, header = [], [], 0, None, ""
    lines = text.splitlines() + [""]

    def flush():
        if current:
            blocks.append((start, "\n".join(current)))
            current.clear()

    for n, line in enumerate(lines[:-1], 1):
        stripped = line.strip()
        if code is not None:  # inside a code block, `code` its (start, [comments])
            if line.startswith("```"):
                after = lines[n] if lines[n].lstrip().startswith("<!-- rows:") else ""
                blocks.append((code[0], "\n".join(code[1] + [after]).strip("\n")))
                code = None
            else:
                code[1].append(line.split(" # ", 1)[1] if " # " in line else "")
        elif line.startswith("```"):
            flush()
            code = (n, [])
        elif stripped.startswith("<!-- rows:") and n > 1 and lines[n - 2].startswith("```"):
            continue  # the rows of the code block above
        elif stripped.startswith("|"):
            flush()
            if re.fullmatch(r"\|[-| :]+\|", lines[n].strip()):
                header = line + "\n" + lines[n]
            elif not re.fullmatch(r"\|[-| :]+\|", stripped):
                blocks.append((n, header + "\n" + line))
        elif not stripped or stripped.startswith("#") or re.match(r"([-*+]|\d+\.)\s", stripped):
            flush()
            if stripped:
                current, start = [line], n
                if stripped.startswith("#"):
                    flush()
        else:
            if not current:
                start = n
            current.append(line)
    flush()
    return blocks


def docstring_blocks(text):
    """[(line number within the docstring, paragraph)]."""
    blocks, n = [], 1
    for paragraph in re.split(r"\n\s*\n", text):
        blocks.append((n, paragraph))
        n += paragraph.count("\n") + 2
    return blocks


def recipe_blocks(data, path=()):
    """[(the key path, text)] of every comment of a recipe: the strings under keys that start with "_"."""
    found = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += recipe_blocks(value, path + (key,))
        elif isinstance(value, str) and (key.startswith("_") or any(p.startswith("_") for p in path)):
            found.append((".".join(path + (key,)), value))
    return found


@functools.cache
def row_numbers(text=None):
    """{row id: [(value, unit)]} of RESULTS.md (`text`, or the file)."""
    found = {}
    for row in results.rows(text):
        found.setdefault(row.id, []).extend(numbers(row.text, keep_code=True))
    return found


def holders(number, table):
    """The ids of the rows of `table` ({id: numbers}) that hold `number`."""
    return [name for name, pool in table.items() if backed(number, pool)]


def untied(blocks, where, units=None, table=None):
    """One message per number of `blocks` ([(location, text)]; only those with one of `units`, None meaning a
    bare decimal; all when not given) that no row its block names holds, and per id that names no row."""
    table = row_numbers() if table is None else table
    found = []
    for location, text in blocks:
        ids = named(text)
        for name in ids:
            if name not in table:
                near = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
                found.append(f"{where}:{location}: names '{name}', no row of RESULTS.md; nearest: {near}")
        pool = [number for name in ids for number in table.get(name, [])]
        for value, unit in numbers(text):
            if (units is not None and unit not in units) or backed((value, unit), pool):
                continue
            excerpt = " ".join(prose(text.splitlines()[-1]).split())[:80]
            candidates = holders((value, unit), table)
            found.append(f"{where}:{location}: {value} {unit or ''}".rstrip()
                         + (f" is held by none of {ids}" if ids else " names no row")
                         + f"; rows that hold it: {candidates[:4] or 'none'}  <- {excerpt}")
    return found


DOCS = sorted((ROOT / "docs").glob("*.md"))
LESSONS = sorted((ROOT / "tasks").glob("*.py"))
RECIPES = sorted((ROOT / "recipes").glob("*.json"))


def test_every_number_in_the_readme_is_held_by_a_row_it_names():
    found = untied(markdown_blocks((ROOT / "README.md").read_text()), "README.md")
    assert not found, "README numbers not tied to a RESULTS.md row:\n" + "\n".join(found)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_number_in_the_docs_is_held_by_a_row_it_names(path):
    found = untied(markdown_blocks(path.read_text()), f"docs/{path.name}")
    assert not found, "docs numbers not tied to a RESULTS.md row:\n" + "\n".join(found)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_number_in_a_lesson_docstring_is_held_by_a_row_it_names(path):
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    found = untied(docstring_blocks(docstring), f"tasks/{path.name} docstring", {None, *SECONDS})
    assert not found, "lesson docstring numbers not tied to a RESULTS.md row:\n" + "\n".join(found)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_number_in_a_recipe_comment_is_held_by_a_row_it_names(path):
    found = untied(recipe_blocks(json.loads(path.read_text())), f"recipes/{path.name}", {None, *SECONDS})
    assert not found, "recipe numbers not tied to a RESULTS.md row:\n" + "\n".join(found)


def test_every_row_with_a_measured_number_has_an_id_of_its_own():
    shared = {name: len(rows) for name, rows in results.by_id().items()
              if len(rows) > 1 and any(numbers(row.text, keep_code=True) for row in rows)}
    assert not shared, f"ids that name several rows with numbers: {shared}"
    assert all(" " not in name and "," not in name for name in results.by_id()), "an id a comment cannot hold"


RESULTS_EXAMPLE = """<!-- imdb:begin -->
- test split: all 25,000 test reviews

| model | test accuracy | train time (s) | stamp |
|---|---|---|---|
| nbsvm (imdb_nbsvm) | 0.9236 | 23 | [1] |
| gru | 0.8577 | 93 | [2] older |

| unlabelled reviews used as | test accuracy (mean) | rows |
|---|---|---|
| not at all | 0.8951 | [1], [2] |

Stamps:

- [1] 2026-11-30; AMD EPYC; Python 3.11.7; commit 5542072; `python -m benchmarks.imdb`
- [2] 2026-12-01; AMD EPYC; Python 3.11.7; commit ede3479; `python -m benchmarks.imdb --models gru`
<!-- imdb:end -->
<!-- phone_price:begin -->
- commit: 42962ea
- wall time of one whole lesson run (FNN + baseline): 19.6 s +- 1.2 s
<!-- phone_price:end -->
"""


def test_an_id_is_made_from_the_section_the_row_and_its_stamp():
    found = {row.id: row.commits for row in results.rows(RESULTS_EXAMPLE)}
    assert found == {"imdb/test-split": set(), "imdb/nbsvm-imdb_nbsvm@5542072": {"5542072"},
                     "imdb/gru@ede3479": {"ede3479"}, "imdb/not-at-all": {"5542072", "ede3479"},
                     "phone_price/wall-time-of-one-whole-lesson@42962ea": {"42962ea"}}
    more = RESULTS_EXAMPLE.replace("| gru |", "| lstm | 0.8584 | 105 | [2] |\n| gru |")
    assert set(found) <= {row.id for row in results.rows(more)}, "adding a row changed an id"
    assert results.slug("fast (64,256,256)") == "fast-64-256-256"
    assert results.slug("Keras jax fit, 20 step(s) per execution") == "keras-jax-fit-20-steps-per-execution"


def test_the_tie_catches_a_number_moved_to_the_wrong_row():
    table = row_numbers(RESULTS_EXAMPLE)
    right = "NBSVM scores 0.9236 in 23 s. <!-- rows: imdb/nbsvm-imdb_nbsvm@5542072 -->"
    assert untied(markdown_blocks(right), "x.md", table=table) == []
    wrong = "NBSVM scores 0.8577 in 23 s. <!-- rows: imdb/nbsvm-imdb_nbsvm@5542072 -->"
    [message] = untied(markdown_blocks(wrong), "x.md", table=table)
    assert "0.8577 is held by none of ['imdb/nbsvm-imdb_nbsvm@5542072']" in message
    assert "rows that hold it: ['imdb/gru@ede3479']" in message
    first, second = untied(markdown_blocks("GRU 0.858, 93 s of training."), "x.md", table=table)
    assert "0.858 names no row; rows that hold it: ['imdb/gru@ede3479']" in first
    assert "93 s names no row" in second
    unknown, _ = untied(markdown_blocks("GRU 0.858 <!-- rows: imdb/gru@0000000 -->"), "x.md", table=table)
    assert "names 'imdb/gru@0000000', no row of RESULTS.md; nearest: ['imdb/gru@ede3479']" in unknown
    docstring = "Run it; the GRU reaches 0.858 (RESULTS.md: imdb/gru@ede3479).\n\nNBSVM 0.9236."
    [message] = untied(docstring_blocks(docstring), "tasks/x.py", {None, *SECONDS}, table=table)
    assert message.startswith("tasks/x.py:3: 0.9236 names no row")


def test_the_tie_catches_a_number_moved_to_another_real_row():
    nbsvm = "imdb/nbsvm-imdb_nbsvm@5542072"
    student = "imdb/bigru_pool-imdb_bigru_nbsvm_teacher-epochs-3@7eddb2f"
    assert untied(markdown_blocks(f"NBSVM: 0.9236 in 23 s. <!-- rows: {nbsvm} -->"), "x.md") == []
    [message] = untied(markdown_blocks(f"NBSVM: 0.9172 in 23 s. <!-- rows: {nbsvm} -->"), "x.md")
    assert f"0.9172 is held by none of ['{nbsvm}']; rows that hold it: ['{student}']" in message
    assert untied(markdown_blocks(f"NBSVM: 0.9172 in 23 s. <!-- rows: {nbsvm}, {student} -->"), "x.md") == []


def test_blocks_of_a_markdown_file():
    text = ("Para one\ncontinues. <!-- rows: a -->\n\n- item 0.5\n  goes on\n  - nested 0.7\n"
            "| h (s) |\n|---|\n| 12 |\n\n```bash\npython -m x --lr 0.5  # about 7 min\nmake y  # 3 s\n```\n"
            "<!-- rows: b -->\n## Head 1.5\n")
    assert [block for _, block in markdown_blocks(text)] == [
        "Para one\ncontinues. <!-- rows: a -->", "- item 0.5\n  goes on", "  - nested 0.7",
        "| h (s) |\n|---|\n| 12 |", "about 7 min\n3 s\n<!-- rows: b -->", "## Head 1.5"]
    assert named("x <!-- rows: a/b@1234567, c/d -->") == ["a/b@1234567", "c/d"]
    cited = "x (RESULTS.md: a/b) and (y; benchmarks/RESULTS.md: c/d@1234567, e/f)."
    assert named(cited) == ["a/b", "c/d@1234567", "e/f"]
    assert numbers("| h (s) |\n|---|\n| 12 |") == [("12", "s")]

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
    per_step = ("| variant | Keras ms/step | s/epoch (45 steps) | vs twin |\n|---|---|---|---|\n"
                "| a | 2300.2 | 104 | 1.17x |\n")
    assert numbers(per_step) == [("2300.2", "ms"), ("104", "s"), ("1.17", "x")]


def test_what_backs_a_number():
    pool = [("0.9053", None), ("257", "s"), ("0.8525", None), ("44", "s")]
    assert backed(("0.905", None), pool) and backed(("0.91", None), pool)
    assert not backed(("0.904", None), pool)  # 0.9053 rounds to 0.905, never to 0.904
    assert backed(("4.3", "min"), pool) and not backed(("4.5", "min"), pool)
    assert backed(("85", "%"), pool) and not backed(("0.85", "s"), pool)
    assert not backed(("164", "s"), pool)  # the EPYC epoch time no row holds
