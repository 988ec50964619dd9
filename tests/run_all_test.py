"""run_all.py end to end on the smoke profile (one subprocess per task)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import run_all
from conftest import write_image_tree, write_imdb_archive

ROOT = Path(__file__).resolve().parents[1]


def test_lists_every_task_script():
    assert {"phone_price", "imdb", "cifar10", "captioning"} <= set(run_all.available_tasks())


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path, phone_root):
    write_imdb_archive(phone_root, per_class=20)  # one data root with every task's data set
    for split, count in (("train", 20), ("test", 5)):
        write_image_tree(phone_root / "cifar10" / split, per_class=count)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke",
         "--output-dir", str(tmp_path / "runs"), "--data-dir", str(phone_root)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary["failed"] == []
    rows = {(r["task"], r["model"]): r for r in summary["rows"]}
    assert rows[("phone_price", "fnn")]["metric"] == "test_accuracy"
    # Measured here: 0.65 (the smoke profile, 8 epochs on 260 rows); the same run with shuffled training
    # labels 0.26, chance 0.25: the bound catches a run_all that reports an untrained or mislabelled task.
    assert rows[("phone_price", "fnn")]["value"] >= 0.5
    assert Path(rows[("phone_price", "fnn")]["run_dir"], "model.keras").is_file()
    assert "| phone_price | tensorflow | fnn | test_accuracy |" in result.stdout
    assert (tmp_path / "runs" / "summary.md").read_text().count("| phone_price |") == 2
    assert rows[("imdb", "gru")]["metric"] == "test_accuracy" and ("imdb", "ngram") in rows
    assert rows[("cifar10", "course_cnn")]["metric"] == "test_accuracy"
    caption_metrics = {(r["model"], r["metric"]) for r in summary["rows"] if r["task"] == "captioning"}
    assert {("captioner_lstm (greedy)", "bleu1"), ("captioner_lstm (greedy)", "bleu4")} <= caption_metrics


@pytest.mark.slow
def test_a_failing_task_is_reported_keeps_the_last_good_summary_and_works_from_any_folder(tmp_path):
    """Run from another folder with a relative --output-dir and --data-dir (an empty data root: both tasks
    fail at their data); the summary goes beside the last good one, which is kept."""
    (tmp_path / "empty_root").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "summary.md").write_text("last good summary\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke", "--tasks", "phone_price,imdb",
         "--output-dir", "runs", "--data-dir", "empty_root"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 1
    summary = json.loads((tmp_path / "runs" / "summary-failed.json").read_text())
    assert summary["failed"] == ["phone_price [tensorflow]", "imdb [tensorflow]"]
    assert (tmp_path / "runs" / "summary.md").read_text() == "last good summary\n"
    assert not (tmp_path / "runs" / "summary.json").exists()
    assert "data set mobile_price/ not found" in result.stderr and "FAILED" in result.stdout
    assert [p.name for p in (tmp_path / "runs").iterdir() if ".partial" in p.name] == []


@pytest.mark.slow
def test_a_bad_flag_for_any_task_stops_before_the_first_task(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke",
         "--output-dir", str(tmp_path / "runs"), "--epochs", "-3"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and "--epochs must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_all_own_run_id_names_the_run_folder_it_reads(tmp_path, phone_root):
    """`--run-id myid` is run_all's own: the task writes runs/phone_price/myid and the summary reads it there
    (it used to be passed on after run_all's own id, so the summary looked in a folder never written)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke", "--tasks", "phone_price",
         "--run-id", "myid", "--output-dir", "runs", "--data-dir", str(phone_root), "--no-baseline"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary["failed"] == [] and "FAILED" not in result.stdout
    run_dir = tmp_path / "runs" / "phone_price" / "myid"
    assert {Path(row["run_dir"]) for row in summary["rows"]} == {run_dir}
    assert (run_dir / "metrics.json").is_file()
    assert [p.name for p in (tmp_path / "runs" / "phone_price").iterdir()] == ["myid"]


def test_a_run_id_names_one_folder_per_backend():
    assert run_all.run_id_for("myid", "20240101-000000", "jax", ["jax"]) == "myid"
    assert run_all.run_id_for("myid", "20240101-000000", "jax", ["tensorflow", "jax"]) == "myid-jax"
    assert run_all.run_id_for(None, "20240101-000000", "jax", ["jax"]) == "all-20240101-000000-jax"


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--run-id", "../elsewhere"], "--run-id must be a plain name"),
    (["--config", "latin1.json"], "is not UTF-8 text"),
])
def test_bad_run_all_input_is_one_sentence_before_any_task(tmp_path, args, message):
    (tmp_path / "latin1.json").write_bytes('{"epochs": 2, "note": "caf\u00e9"}'.encode("latin-1"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke", "--tasks", "phone_price",
         "--output-dir", "runs", *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_summaries_follow_the_users_umask(tmp_path):
    """Written through a temporary file (mkstemp: 0600), the summary still gets the mode open() would give."""
    old = os.umask(0o022)
    try:
        _, path = run_all.write_summary(tmp_path, "smoke", "stamp", [], [])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
