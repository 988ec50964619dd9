"""Benchmark provenance: every recorded row carries the whole stamp its script wrote, RESULTS.md is what the
renderers make of the rows files, and benchmarks run the lessons with the user's defaults."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import common

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
# Where the stamped units of each rows file are: a new rows file must be added here (the test below says so).
UNITS = {
    "imdb_rows.json": lambda state: list(state.values()),
    "cifar10_rows.json": lambda state: [*state["rows"].values(), *state.get("exports", []),
                                        *state.get("epochs", []), *filter(None, [state.get("airbench")]),
                                        *state.get("ablations", [])],
    "captioning_rows.json": lambda state: list(state["rows"].values()),
    "backends_rows.json": lambda state: [row for rows in state.values() for row in rows],
}
WHOLE_STAMP = {"date": "2026-11-30", "machine": "a CPU, 2 cores, no GPU", "versions": "Python 3.11",
               "commit": "abc1234", "command": "python -m benchmarks.x"}


def _git_history():
    found = subprocess.run(["git", "cat-file", "-e", f"{common.LAST_CHANGE['imdb'][0]}^{{commit}}"], cwd=ROOT,
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip("needs the project's git history (a clone, not an exported tree)")


def test_every_recorded_row_carries_a_whole_stamp():
    assert sorted(p.name for p in BENCHMARKS.glob("*_rows.json")) == sorted(UNITS)
    for name, units in UNITS.items():
        rows = units(json.loads((BENCHMARKS / name).read_text()))
        assert rows, name
        for row in rows:
            assert common.stamp_problem(row.get("stamp")) is None, (name, row)


def test_a_stamp_needs_every_field():
    assert common.stamp_problem(WHOLE_STAMP) is None
    assert common.stamp_problem({**WHOLE_STAMP, "versions": ""}) == "a stamp without versions"
    assert common.stamp_problem(None) == "no stamp"
    # an old free-text note, and the marker rows measured before stamps once carried: neither is a stamp
    assert common.stamp_problem("2026-11-24, Intel Xeon, commit 1cac253") == "no stamp"
    assert common.stamp_problem({"none": "measured before stamps", "rerun": "python -m benchmarks.imdb"}) == (
        "a stamp without date, machine, versions, commit, command")


def test_rows_measured_before_the_lessons_last_change_are_marked_older():
    _git_history()
    changed, _ = common.LAST_CHANGE["imdb"]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    before = {**WHOLE_STAMP, "commit": "62dd288"}  # the commit of the first phone-price benchmark
    assert common.older(before, "imdb").startswith("older: measured before the run-folder rewrite")
    assert f"(commit {changed}); rerun with `python -m benchmarks.x`" in common.older(before, "imdb")
    assert common.older({**WHOLE_STAMP, "commit": head + " + local changes"}, "imdb") is None
    assert common.older(before, None) is None  # throughput on random inputs: no lesson behaviour involved
    assert "perhaps before" in common.older({**WHOLE_STAMP, "commit": "0000000"}, "imdb")
    labels, notes = common.stamp_notes([before, before, {**WHOLE_STAMP, "commit": head}], ["imdb"] * 3)
    assert labels == ["[1] older", "[1] older", "[2]"]
    assert notes.count("\n") == 1 and "**older: measured before" in notes


def test_results_md_is_what_the_renderers_make_of_the_recorded_rows():
    """A number typed into RESULTS.md by hand, or a rows file edited without re-rendering, fails here."""
    _git_history()
    from benchmarks import backends, captioning, cifar10, imdb

    rendered = {"imdb": imdb.render(imdb.load_rows()), "cifar10": cifar10.render(cifar10.load_state()),
                "captioning": captioning.render(captioning.load_state()),
                "backends": backends.render(backends.load_state())}
    for name, body in rendered.items():
        assert common.read_section(name) == body.rstrip(), f"rerun python -m benchmarks.{name} --render"


def test_sections_written_whole_by_one_run_open_with_its_stamp_and_the_current_older_mark():
    _git_history()
    names = re.findall(r"<!-- (\w+):begin -->", common.RESULTS.read_text())
    unknown = set(names) - set(common.SECTION_LESSONS) - set(common.ROWS_SECTIONS)
    assert not unknown, "a new section: add it to SECTION_LESSONS or ROWS_SECTIONS in benchmarks/common.py"
    for name in set(names) & set(common.SECTION_LESSONS):
        body = common.read_section(name)
        assert common.stamp_problem(common.section_stamp(body)) is None, name
        assert common.marked(name, body) == body, "rerun python -m benchmarks.render"


def test_benchmarks_run_the_lessons_with_the_users_defaults():
    """TensorBoard is on by default for users, so it is on in the benchmarks (its cost is in their times)."""
    for script in BENCHMARKS.glob("*.py"):
        text = script.read_text()
        assert not re.search(r"tensorboard=False|--no-tensorboard", text), script.name


def test_a_benchmark_row_is_written_with_its_stamp_and_validation_accuracy(tmp_path, imdb_root, monkeypatch,
                                                                           committed_tree):
    from benchmarks import imdb

    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(imdb, "ROWS_FILE", tmp_path / "imdb_rows.json")
    monkeypatch.setattr(imdb, "PLOTS", tmp_path / "plots")
    # (export changes no number: the row keeps its plain label, the command shows the lesson's flag)
    arguments = ["--profile", "smoke", "--models", "gru", "--set", "export=false"]
    monkeypatch.setattr("sys.argv", ["benchmarks/imdb.py", *arguments])
    assert imdb.main([*arguments, "--data-dir", str(imdb_root)]) == 0
    row = json.loads((tmp_path / "imdb_rows.json").read_text())["gru/smoke"]
    assert common.stamp_problem(row["stamp"]) is None
    assert row["stamp"]["command"] == "python -m benchmarks.imdb " + " ".join(arguments)
    assert isinstance(row["best val accuracy"], float) and 0 <= row["best val accuracy"] <= 1
    assert row["command"] == ("`python -m tasks.imdb --profile smoke --no-export --model gru "
                              "--no-ngram-reference --verbose 2`")
    section = (tmp_path / "RESULTS.md").read_text()
    assert "| gru | smoke |" in section and "- [1] " + row["stamp"]["date"] in section


def test_the_imdb_ablation_table_averages_each_recipes_seeds_and_adds_up_every_stage():
    """Issue 19's table: one line per recipe, its seeds averaged, the times of classifier, teacher and
    pretraining added; a row with another setting changed (bigram_buckets=0) is not a seed of its recipe, and
    the recipe run for more epochs is a line of its own (its seeds averaged apart from the recipe's)."""
    from benchmarks import imdb

    def row(model, accuracy, val, time, label):
        return {"model": model, "test accuracy": accuracy, "best val accuracy": val, "train time (s)": time,
                "stamp": label}

    shown = [row("bigru_pool (imdb_bigru_pretrained_nbsvm_teacher)", 0.92, 0.93,
                 "1200 + 30 (NBSVM teacher: test 0.9236, best val 0.9240) + 600 (language-model pretraining, "
                 "loss 6.10 -> 5.20)", "[1]"),
             row("bigru_pool (imdb_bigru_pretrained_nbsvm_teacher, seed=1)", 0.93, 0.91,
                 "1100 + 30 (NBSVM teacher: test 0.92) + 500 (language-model pretraining, loss 6.0 -> 5.0)",
                 "[2]"),
             row("bigru_pool (imdb_bigru_bigrams, bigram_buckets=0)", 0.5, 0.5, "60", "[3]"),
             row("nbsvm (imdb_nbsvm)", 0.9236, 0.9236, "23 (of which 11 counting and vectorising)", "[4]"),
             row("bigru_pool (imdb_bigru_pretrained_nbsvm_teacher, epochs=3)", 0.94, 0.95,
                 "1800 + 30 (NBSVM teacher) + 600 (language-model pretraining, loss 6 -> 5)", "[5]"),
             row("bigru_pool (imdb_bigru_pretrained_nbsvm_teacher, epochs=3, seed=1)", 0.95, 0.96,
                 "1800 + 30 (NBSVM teacher) + 600 (language-model pretraining, loss 6 -> 5)", "[6]")]
    table = imdb.ablation_table(shown)
    lines = [line for line in table.splitlines() if line.startswith("| language-model pretraining, then")]
    assert lines == ["| language-model pretraining, then soft labels from NBSVM "
                     "| `recipes/imdb_bigru_pretrained_nbsvm_teacher.json` | 2 | 0.9250 | 0.9200 "
                     "| 19.2 | 0.5 | 9.2 | 28.8 | [1], [2] |",
                     "| language-model pretraining, then soft labels from NBSVM, 3 epochs "
                     "| `recipes/imdb_bigru_pretrained_nbsvm_teacher.json` `--epochs 3` | 2 | 0.9450 "
                     "| 0.9550 | 30.0 | 0.5 | 10.0 | 40.5 | [5], [6] |"], table
    assert "bigram_buckets" not in table and "imdb_bigru_bigrams.json` |" not in table.split("\n\n", 2)[2]
    assert imdb.ablation_table(shown[2:4]) == ""


def test_an_earlier_rounds_student_counts_as_a_teacher_in_the_stage_times():
    """`--self-training-rounds 2`: the first student (and its labelling) is a teacher of the second round."""
    from benchmarks import imdb

    time = ("1000 + 27 (NBSVM teacher: test 0.9214, best val 0.9240) + 1100 (round-1 student, then a "
            "teacher: test 0.9155, best val 0.9080; round-2 teacher val 0.9260)")
    assert imdb.stage_seconds(time) == (1000, 1127, 0)
    results = {"gru": {}, "student round 2": {"r": 2}, "nbsvm": {}, "student round 1": {"r": 1}}
    assert imdb.earlier_students(results) == [(1, {"r": 1}), (2, {"r": 2})]


def test_a_stamps_command_can_be_pasted_into_a_shell(monkeypatch):
    """An argument with spaces (`--extra "--config x.json"`) is quoted, so the command runs as it was run."""
    import shlex
    monkeypatch.setattr("sys.argv", ["captioning.py", "--name", "shapes", "--extra", "--config x.json"])
    command = common.command_line("benchmarks.captioning")
    assert shlex.split(command)[-2:] == ["--extra", "--config x.json"], command
    monkeypatch.setattr("sys.argv", ["imdb.py"])
    assert common.command_line("benchmarks.imdb") == "python -m benchmarks.imdb"


def test_a_stamps_command_names_no_folder_of_the_measuring_machine(tmp_path):
    arguments = ["--keep", str(tmp_path / "run"), f"--from-run={tmp_path / 'x'}", "--extra", "--epochs 3"]
    command = common.command_line("benchmarks.captioning", arguments)
    assert command == "python -m benchmarks.captioning --keep DIR --from-run=DIR --extra '--epochs 3'"
