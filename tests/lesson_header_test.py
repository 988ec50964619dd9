"""Lesson headers (issue 35): each lesson's module docstring is at most 25 lines and says what the lesson
teaches, how to run it, how long it takes and where its expected result is (benchmarks/RESULTS.md, which the
lesson page renders); measured numbers live there, not in the lesson file; one "Things to try" per lesson."""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from tests.numbers_test import SECONDS, numbers, prose

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {"__init__", "distributed"}  # tasks/ modules that start lessons rather than teach one
LESSONS = sorted(p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem not in LAUNCHERS)
MAX_HEADER_LINES = 25
SECTIONS = {"phone_price": "Phone price", "cifar10": "CIFAR-10", "imdb": "IMDB", "captioning": "Captioning"}
# Comments in code that still state measured numbers; they belong to code others are changing, and go to the
# config's prose or to RESULTS.md with it (issue 35). Each entry: (lesson, a piece of the comment).
KNOWN = set()  # (lesson, text) of a measured number a lesson may still state: none


def header(task):
    """(the docstring node, its text) of tasks/<task>.py."""
    tree = ast.parse((ROOT / "tasks" / f"{task}.py").read_text())
    node = tree.body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), f"{task}: no module docstring"
    return node, ast.get_docstring(tree)


def comments(task):
    """[(line number, text)] of every comment of the lesson file."""
    source = (ROOT / "tasks" / f"{task}.py").read_text()
    return [(token.start[0], token.string.lstrip("#").strip())
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]


def measured(text):
    """The numbers of `text` that read as measurements: a time (81 s, 14.6 min) or a decimal with two or more
    places (0.9175, 0.907). Left alone: settings in `inline code`, numbers in a citation (Jordan 2024: ...),
    counts (25,000 reviews), factors that explain a recipe (64x, 1/9) and one-place constants (0.5)."""
    return [f"{value} {unit or ''}".strip() for value, unit in numbers(text)
            if unit in SECONDS or (unit in (None, "%") and len(value.partition(".")[2]) >= 2)]


def test_every_lesson_is_checked():
    assert {"phone_price", "cifar10", "imdb", "captioning"} <= set(LESSONS)


@pytest.mark.parametrize("task", LESSONS)
def test_the_header_is_short_and_says_how_to_run_how_long_and_where_the_result_is(task):
    node, doc = header(task)
    lines = node.end_lineno - node.lineno + 1  # the quotes' lines included
    assert lines <= MAX_HEADER_LINES, f"tasks/{task}.py: a header of {lines} lines"
    assert f"python -m tasks.{task}" in doc, "the header names the command that runs the lesson"
    assert "\n    python -m tasks." in doc, "the commands are a code block"
    assert re.search(r"^What you will learn", doc, re.MULTILINE)
    assert re.search(r"^How long:", doc, re.MULTILINE)
    expected = re.search(r"^Expected result:(.*?)(?:\n\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    assert expected and "benchmarks/RESULTS.md" in expected[1], "the result is named, not typed"
    if task in SECTIONS:
        assert f"'{SECTIONS[task]}' section of benchmarks/RESULTS.md" in " ".join(expected[1].split())


@pytest.mark.parametrize("task", LESSONS)
def test_the_header_states_no_measured_number(task):
    _, doc = header(task)
    assert measured(prose(doc)) == [], f"tasks/{task}.py's header types measured numbers"


@pytest.mark.parametrize("task", LESSONS)
def test_comments_state_no_measured_number(task):
    found = [f"line {line}: {measured(prose(text))} <- {text[:80]}" for line, text in comments(task)
             if measured(prose(text)) and not any(t == task and piece in text for t, piece in KNOWN)]
    assert not found, f"tasks/{task}.py: measured numbers go to benchmarks/RESULTS.md:\n" + "\n".join(found)


@pytest.mark.parametrize("task", LESSONS)
def test_one_things_to_try_section_per_lesson(task):
    source = (ROOT / "tasks" / f"{task}.py").read_text()
    assert source.count("Things to try") == 1, f"tasks/{task}.py mentions 'Things to try' more than once"
    assert re.search(r"^# %% Things to try$", source, re.MULTILINE), "it is a `# %%` section of its own"


def test_what_counts_as_measured():
    text = ("0.9175 and 0.907, 81 s, 14.6 vs 10.7 min, 94.01 %, but not 64x, 1/9, 81 times, 0.5, 25,000 "
            "reviews, 2x2, `--logit-scale 0.111` or (Jordan 2024: 3.3 s)")
    assert measured(prose(text)) == ["0.9175", "0.907", "81 s", "10.7 min", "94.01 %"]


def test_help_prints_the_short_header(monkeypatch):
    """`--help` shows the header as its description: a screen, not ninety lines."""
    import contextlib

    from tasks import phone_price

    monkeypatch.setenv("COLUMNS", "110")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        phone_price.main(["--help"])
    description = out.getvalue().split("\noptions:\n", 1)[0]
    assert "Expected result:" in description and len(description.splitlines()) <= MAX_HEADER_LINES + 5
