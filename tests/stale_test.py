"""Issue 37: every row of benchmarks/RESULTS.md names its commit, `benchmarks.stale` says which rows' code
changed since, and each headline of README.md's lessons table says the commit its row was measured at."""

import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import stale

ROOT = Path(__file__).resolve().parents[1]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")


def row_commits(text):
    """[(the decimals of a table row, the commit of its stamp)] for every table row of RESULTS.md: a row's
    `[n]` refers to the stamp list that follows its table, a row without one to its section's commit."""
    rows = []
    for section in stale.SECTION.finditer(text):
        body = section.group("body")
        single = stale.SECTION_COMMIT.search(body)
        pending, stamps = [], {}
        for line in body.splitlines() + [""]:
            stamp = re.match(r"- \[(\d+)\] .*?; commit ([0-9a-f]{7,40})", line)
            if stamp:
                stamps[stamp.group(1)] = stamp.group(2)
                continue
            if stamps:  # the end of a stamp list: its table's rows take their commits
                for cells, ref in pending:
                    rows.append((cells, stamps.get(ref)))
                pending, stamps = [], {}
            if line.startswith("| ") and not line.startswith("|---"):
                ref = re.search(r"\| \[(\d+)\] \|", line)
                if ref:
                    pending.append((DECIMAL.findall(line), ref.group(1)))
                elif single:
                    rows.append((DECIMAL.findall(line), single.group("commit")))
    return rows


def backs(written, measured):
    """`measured` (a row's decimal) rounds to `written` at the precision written."""
    decimals = len(written.split(".")[1])
    return abs(float(measured) - float(written)) <= 0.5 * 10 ** -decimals + 1e-12


def readme_headlines():
    """(the headline number in bold or the first decimal, the commit it says it was measured at, the cell)
    for each row of README.md's lessons table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Lessons"):].split("\n\n")[1]
    found = []
    for line in table.splitlines()[2:]:
        cell = line.split(" | ")[2]
        bold = re.search(r"\*\*[^*]*?(\d+\.\d+)[^*]*\*\*", cell)
        number = bold.group(1) if bold else DECIMAL.search(cell).group(0)
        commit = re.search(r"measured at `([0-9a-f]{7,40})`", cell)
        found.append((number, commit.group(1) if commit else None, cell))
    return found


def test_every_stamp_names_a_commit():
    text = stale.RESULTS.read_text()
    found = stale.stamps(text)
    assert len(found) >= 40
    stamp_lines = [line for line in text.splitlines() if re.match(r"- \[\d+\] ", line)]
    assert len(stamp_lines) == sum(1 for s in found if s["stamp"]), "a stamp without 'commit <hash>'"
    assert {s["section"] for s in found} >= {"phone_price", "imdb", "cifar10", "captioning", "frameworks"}


@pytest.mark.parametrize("number, commit, cell", readme_headlines())
def test_each_readme_headline_says_the_commit_of_the_row_it_quotes(number, commit, cell):
    assert commit, f"README lessons table: '{cell}' does not say 'measured at `<commit>`'"
    commits = {c for decimals, c in row_commits(stale.RESULTS.read_text())
               if any(backs(number, d) for d in decimals)}
    assert commit in commits, f"{number}: no RESULTS.md row measured at {commit} holds it (rows: {commits})"


def test_the_tie_catches_a_wrong_commit():
    rows = row_commits(stale.RESULTS.read_text())
    commits = {c for decimals, c in rows if any(backs("0.9236", d) for d in decimals)}
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
