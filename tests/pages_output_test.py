"""`python -m pages` keeps the old site until the new one is complete, leaves damaged inputs out with a
warning, and writes only into a folder of its own, never through a link (issue 39)."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from pages import build

RESULTS = """# Benchmark results

<!-- phone_price:begin -->
## Phone price

| model | test accuracy |
|---|---|
| FNN | 0.9800 |
<!-- phone_price:end -->
"""


def snapshot(root):
    """Every file, folder and link under `root`: relative path -> (kind, content hash or link target)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                state[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif path.is_dir():
                state[str(path.relative_to(root))] = ("dir", "")
            else:
                state[str(path.relative_to(root))] = ("file", hashlib.sha1(path.read_bytes()).hexdigest())
    return state


def write_run(runs, run_id, metrics_text, mtime):
    folder = runs / "phone_price" / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"task": "phone_price", "profile": "smoke", "seed": 0}))
    (folder / "metrics.json").write_text(metrics_text)
    for name in ("config.json", "metrics.json"):
        os.utime(folder / name, (mtime, mtime))
    return folder


def write_search(tuning_runs, name, meta_text):
    folder = tuning_runs / "phone_price" / name
    folder.mkdir(parents=True)
    (folder / "search.json").write_text(meta_text)
    (folder / "compare.md").write_text("| activation |\n|---|\n| relu |\n")
    return folder


@pytest.fixture
def inputs(tmp_path):
    """RESULTS.md, an empty runs root and an empty search root."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "RESULTS.md").write_text(RESULTS)
    return {"runs": tmp_path / "runs", "tuning_runs": tmp_path / "tuning_runs",
            "results": tmp_path / "benchmarks" / "RESULTS.md"}


def argv(inputs, output):
    return ["--runs", str(inputs["runs"]), "--tuning-runs", str(inputs["tuning_runs"]),
            "--results", str(inputs["results"]), "--output", str(output)]


def test_damaged_runs_and_searches_are_left_out_with_a_warning(tmp_path, inputs, cli):
    write_run(inputs["runs"], "older-good", json.dumps({"task": "phone_price", "results": {}}), 1_000)
    write_run(inputs["runs"], "newer-damaged", '{"task": "phone_pri', 2_000)  # cut off mid-write
    write_search(inputs["tuning_runs"], "good-search", json.dumps(
        {"task": "phone_price", "tuner": "grid", "profile": "smoke", "objective": "val_accuracy"}))
    write_search(inputs["tuning_runs"], "damaged-search", "{not json")
    unreadable = inputs["tuning_runs"] / "phone_price" / "unreadable-search"
    (unreadable / "search.json").mkdir(parents=True)  # cannot be read as a file (chmod does not stop root)
    output = tmp_path / "site"
    code, out, err = cli(build.main, argv(inputs, output))
    assert code == 0, err
    assert "newer-damaged/metrics.json skipped (not valid JSON" in err
    assert "damaged-search/search.json skipped (not valid JSON" in err
    assert "unreadable-search/search.json skipped (Is a directory)" in err
    names = {p.name for p in output.glob("*.html")}
    assert {"index.html", "search.html", "comparison.html", "phone_price.html"} <= names
    assert "older-good" in (output / "phone_price.html").read_text()  # the newest run that can be read
    search = (output / "search.html").read_text()
    assert "good-search" in search and "damaged-search" not in search and "unreadable-search" not in search
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name or ".old" in p.name] == []


def test_a_failed_build_leaves_the_old_site_as_it_was(tmp_path, inputs, monkeypatch, cli):
    output = tmp_path / "site"
    assert cli(build.main, argv(inputs, output))[0] == 0
    before = snapshot(output)
    assert "index.html" in before and "search.html" in before

    def broken(site):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(build, "comparison_page", broken)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        build.build_site(**inputs, output=output)
    assert snapshot(output) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


def test_a_rebuild_replaces_its_own_site(tmp_path, inputs, cli):
    output = tmp_path / "site"
    assert cli(build.main, argv(inputs, output))[0] == 0
    (output / "stale.html").write_text("old")
    assert cli(build.main, argv(inputs, output))[0] == 0
    assert not (output / "stale.html").exists() and (output / "index.html").is_file()
    assert (output / build.MARKER).is_file()


@pytest.mark.parametrize("target", ["folder", "site", "missing"])
def test_an_output_that_is_a_link_is_refused(tmp_path, inputs, cli, target):
    aimed = tmp_path / "aimed"
    if target == "folder":  # a user's folder
        aimed.mkdir()
        (aimed / "notes.txt").write_text("keep me")
    elif target == "site":  # even a site this builder made: never written through a link
        assert cli(build.main, argv(inputs, aimed))[0] == 0
    link = tmp_path / "link"
    link.symlink_to(aimed)
    before = snapshot(tmp_path)
    code, _, err = cli(build.main, argv(inputs, link))
    assert code == 2 and "is a symbolic link" in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and snapshot(tmp_path) == before


def test_a_folder_this_builder_did_not_make_is_never_emptied(tmp_path, inputs, cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "elsewhere").write_text("built by python -m pages")
    (mine / build.MARKER).symlink_to(tmp_path / "elsewhere")  # a marker that is not this builder's own
    before = snapshot(tmp_path)
    code, _, err = cli(build.main, argv(inputs, mine))
    assert code == 2 and "did not write" in err and "Traceback" not in err, err
    (mine / build.MARKER).unlink()
    (mine / build.MARKER).mkdir()  # nor a folder of that name
    code, _, err = cli(build.main, argv(inputs, mine))
    assert code == 2 and "did not write" in err, err
    assert (mine / "notes.txt").read_text() == "keep me"
    (mine / build.MARKER).rmdir()
    before = snapshot(tmp_path)
    code, _, err = cli(build.main, argv(inputs, mine))
    assert code == 2 and "did not write" in err and snapshot(tmp_path) == before


def test_an_output_holding_the_inputs_or_the_current_folder_is_refused(tmp_path, inputs, cli, monkeypatch):
    site = tmp_path / "site"
    assert cli(build.main, argv(inputs, site))[0] == 0
    runs = site / "runs_inside"  # a site folder that someone keeps runs in
    write_run(runs, "kept", json.dumps({"task": "phone_price", "results": {}}), 1_000)
    before = snapshot(site)
    code, _, err = cli(build.main, argv(dict(inputs, runs=runs), site))
    assert code == 2 and "holds the current folder or the runs" in err, err
    assert snapshot(site) == before
    monkeypatch.chdir(site)
    code, _, err = cli(build.main, argv(inputs, "."))
    assert code == 2 and "holds the current folder" in err and snapshot(site) == before
