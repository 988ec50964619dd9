"""Issue 35: every lesson shows the Keras it teaches, in its own file.

A lesson in tasks/ (every module there but the launchers) must hold `model.compile(...)` with its optimizer,
loss and metrics, `model.fit(...)` with its callbacks (or a custom training step), and, for the classifiers,
`model.evaluate(...)`: a reader of the file sees them, not a call into a shared loop that hides them.
"""

import ast
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[1] / "tasks"
LAUNCHERS = {"__init__", "distributed"}
LESSONS = sorted(p.stem for p in TASKS.glob("*.py") if p.stem not in LAUNCHERS)
CLASSIFIERS = {"phone_price", "cifar10", "imdb"}


def keras_calls(source):
    """{method name: [the keyword arguments of each call]} for the calls `<something>.<method>(...)`."""
    calls = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            calls.setdefault(node.func.attr, []).append({k.arg for k in node.keywords})
    return calls


def test_the_lessons_are_found():
    assert set(LESSONS) >= {"phone_price", "cifar10", "imdb", "captioning"}


@pytest.mark.parametrize("lesson", LESSONS)
def test_a_lesson_writes_compile_and_fit_in_view(lesson):
    calls = keras_calls((TASKS / f"{lesson}.py").read_text())
    compiles = [kw for kw in calls.get("compile", []) if {"optimizer", "loss", "metrics"} <= kw]
    assert compiles, f"tasks/{lesson}.py has no model.compile(optimizer=..., loss=..., metrics=...)"
    fits = [kw for kw in calls.get("fit", []) if {"validation_data", "epochs", "callbacks"} <= kw]
    assert fits or "train_step" in calls, f"tasks/{lesson}.py has no model.fit(...) with its callbacks"
    if lesson in CLASSIFIERS:
        assert calls.get("evaluate"), f"tasks/{lesson}.py has no model.evaluate(...)"


def test_the_check_catches_a_lesson_that_hides_its_keras():
    hidden = "def train(config):\n    return training.train_classifier(model, config, folder, data)\n"
    calls = keras_calls(hidden)
    assert "compile" not in calls and "fit" not in calls


def test_the_cifar10_quick_profile_is_the_airbench94_recipe_written_out():
    """The lesson file shows the values its default run uses; they must stay those of the recipe file that
    explains each one (the split and the 16-bit type aside: the profile keeps a validation split and picks
    bfloat16 only where the CPU computes it)."""
    import json

    from tasks import cifar10

    recipe = json.loads(cifar10.AIRBENCH94.read_text())
    expected = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()
                if not k.startswith("_") and k not in ("task", "model", "val_images", "lossless_holdout")}
    shown = dict(cifar10.AIRBENCH94_METHODS)
    assert shown.pop("mixed_dtype") == "auto" and expected.pop("mixed_dtype") == "bfloat16"
    assert shown == expected
