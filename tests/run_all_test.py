"""run_all.py end to end on the smoke profile (one subprocess per task)."""

import json
import subprocess
import sys
from pathlib import Path

import run_all
from conftest import write_image_tree, write_imdb_archive

ROOT = Path(__file__).resolve().parents[1]


def test_lists_every_task_script():
    assert {"phone_price", "imdb", "cifar10", "captioning"} <= set(run_all.available_tasks())


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
    assert 0.0 <= rows[("phone_price", "fnn")]["value"] <= 1.0
    assert Path(rows[("phone_price", "fnn")]["run_dir"], "model.keras").is_file()
    assert "| phone_price | tensorflow | fnn | test_accuracy |" in result.stdout
    assert (tmp_path / "runs" / "summary.md").read_text().count("| phone_price |") == 2
    assert rows[("imdb", "gru")]["metric"] == "test_accuracy" and ("imdb", "ngram") in rows
    assert rows[("cifar10", "course_cnn")]["metric"] == "test_accuracy"
    caption_metrics = {(r["model"], r["metric"]) for r in summary["rows"] if r["task"] == "captioning"}
    assert {("captioner_lstm (greedy)", "bleu1"), ("captioner_lstm (greedy)", "bleu4")} <= caption_metrics


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


def test_a_bad_flag_for_any_task_stops_before_the_first_task(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--profile", "smoke",
         "--output-dir", str(tmp_path / "runs"), "--epochs", "-3"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and "--epochs must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
