"""Issue 37: every row of benchmarks/RESULTS.md names its commit, `benchmarks.stale` says which rows' code
changed since, and each headline of README.md's lessons table says the commit its row was measured at."""

import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import rows, stale
from tests.numbers_test import named

ROOT = Path(__file__).resolve().parents[1]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")


def row_commits(text):
    """[(the decimals of a row, the commits it was measured at)] for every row of RESULTS.md (read by
    benchmarks/rows.py: a row's `[n]` refers to the stamp list that follows its table, a row without one to
    its section's commit, a row that sums up others to theirs)."""
    return [(DECIMAL.findall(row.text.splitlines()[-1]), row.commits) for row in rows.rows(text)]


def backs(written, measured):
    """`measured` (a row's decimal) rounds to `written` at the precision written."""
    decimals = len(written.split(".")[1])
    return abs(float(measured) - float(written)) <= 0.5 * 10 ** -decimals + 1e-12


def readme_headlines():
    """(the headline number in bold or the first decimal, the commit it says it was measured at, the rows its
    table row names, the cell) for each row of README.md's lessons table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Lessons"):].split("\n\n")[1]
    found = []
    for line in table.splitlines()[2:]:
        cell = line.split(" | ")[2]
        bold = re.search(r"\*\*[^*]*?(\d+\.\d+)[^*]*\*\*", cell)
        number = bold.group(1) if bold else DECIMAL.search(cell).group(0)
        commit = re.search(r"measured at `([0-9a-f]{7,40})`", cell)
        found.append((number, commit.group(1) if commit else None, named(line), cell))
    return found


def test_every_stamp_names_a_commit():
    text = stale.RESULTS.read_text()
    found = stale.stamps(text)
    assert len(found) >= 40
    stamp_lines = [line for line in text.splitlines() if re.match(r"- \[\d+\] ", line)]
    assert len(stamp_lines) == sum(1 for s in found if s["stamp"]), "a stamp without 'commit <hash>'"
    assert {s["section"] for s in found} >= {"phone_price", "imdb", "cifar10", "captioning", "frameworks"}


@pytest.mark.parametrize("number, commit, ids, cell", readme_headlines())
def test_each_readme_headline_says_the_commit_of_the_row_it_quotes(number, commit, ids, cell):
    assert commit, f"README lessons table: '{cell}' does not say 'measured at `<commit>`'"
    named_rows = [row for row in rows.rows() if row.id in ids]
    commits = set().union(*(row.commits for row in named_rows
                            if any(backs(number, d) for d in DECIMAL.findall(row.text.splitlines()[-1]))))
    assert commit in commits, f"{number}: none of the rows its table row names ({ids}) was measured at " \
                              f"{commit} and holds it (their commits: {commits})"


def test_the_tie_catches_a_wrong_commit():
    commits = set().union(*(c for decimals, c in row_commits(stale.RESULTS.read_text())
                            if any(backs("0.9236", d) for d in decimals)))
    assert "5542072" in commits and "0eaffd0" not in commits


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_a_row_is_stale_once_its_code_changes_and_unverifiable_with_local_changes(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "tasks").mkdir()
    (repo / "tasks" / "phone_price.py").write_text("EPOCHS = 150\n")
    (repo / "README.md").write_text("unrelated\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "x", "--allow-empty")
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "code")
    measured = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "benchmarks" / "RESULTS.md").write_text(
        f"<!-- phone_price:begin -->\n- commit: {measured}\n| a | 0.97 |\n<!-- phone_price:end -->\n"
        f"<!-- captioning:begin -->\n- [1] date; machine; commit {measured} + local changes; `cmd`\n"
        "<!-- captioning:end -->\n")
    (repo / "README.md").write_text("still unrelated\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "docs")
    assert [state for _, state, _ in stale.report(repo)] == ["current", "unverifiable"]
    # prose only: a docstring and a comment added to the lesson change none of its numbers
    (repo / "tasks" / "phone_price.py").write_text('"""The lesson."""\n\nEPOCHS = 150  # on validation\n')
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "explain the lesson")
    assert [state for _, state, _ in stale.report(repo)] == ["current", "unverifiable"]
    (repo / "tasks" / "phone_price.py").write_text("EPOCHS = 100\n")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "change the lesson")
    (first, state, reason), _ = stale.report(repo)
    assert state == "stale" and "tasks/phone_price.py" in reason


def test_stamping_refuses_uncommitted_code(monkeypatch, capsys):
    from benchmarks import common

    facts = {"date": "d", "machine": "m", "versions": "v", "commit": "abc1234"}
    monkeypatch.setattr(common, "machine_facts", lambda: dict(facts))
    monkeypatch.setattr(common, "_git_commit", lambda: "abc1234 + local changes")
    with pytest.raises(SystemExit) as exit_info:
        common.stamp("python -m benchmarks.phone_price")
    assert exit_info.value.code == 2 and "uncommitted changes" in capsys.readouterr().err
    monkeypatch.setattr(common, "_git_commit", lambda: "abc1234")
    assert common.stamp("python -m benchmarks.phone_price")["commit"] == "abc1234"
