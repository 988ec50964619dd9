"""The report of a run (report.html): built from the run folder alone, honest about what it does not know."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from common import run_report
from common.errors import UserError


def make_run(tmp_path, profile="quick", note=None, data=None):
    """A finished run folder as a lesson leaves it (resumed once: history.csv has a second header)."""
    run = tmp_path / "runs" / "cifar10" / "r1"
    (run / "baseline").mkdir(parents=True)
    (run / "logs").mkdir()
    (run / "config.json").write_text(json.dumps({"task": "cifar10", "profile": profile, "seed": 7,
                                                 "deterministic": True, "val_size": 5000, "split_seed": 42,
                                                 "output_dir": "runs", "epochs": 3}))
    result = {"test_accuracy": 0.8525, "params": 629176, "train_time_s": 12.5, "confusion_matrix": [[1]],
              **({"data": note} if note else {})}
    (run / "metrics.json").write_text(json.dumps({
        "task": "cifar10", "profile": profile, "seed": 7, **({"data": data} if data else {}),
        "summary": [{"model": "fast", "metric": "test_accuracy", "value": 0.8525, "params": 629176,
                     "train_time_s": 12.5}], "results": {"fast": result}}))
    (run / "history.csv").write_text("epoch,accuracy,loss\n0,0.5,1.5\n1,0.6,1.2\nepoch,accuracy,loss\n"
                                     "1,0.61,1.19\n2,0.7,0.9\n")
    (run / "exports.md").write_text("| format | size_mb |\n|---|---|\n| keras | 4.9 |\n")
    for name in ("learning_curves.png", "baseline/confusion_matrix.png", "logs/ignored.png"):
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(run / name)
    return run


def test_report_holds_command_environment_data_metrics_and_figures(tmp_path):
    run = make_run(tmp_path, note="JPEG re-encodings of the CIFAR-10 images (lossy)")
    page = run_report.write_run_report(run, command="python -m tasks.cifar10 --epochs 3").read_text()
    assert "python -m tasks.cifar10 --epochs 3" in page
    assert "--config runs/cifar10/r1/config.json" in page
    for fact in ("Python", "TensorFlow", "Keras", "backend", "machine", "git commit"):
        assert f"<th>{fact}</th>" in page, fact
    assert "CIFAR-10: 50,000 training" in page and "Caveat:</b> JPEG re-encodings" in page
    assert "<th>val_size</th><td>5000</td>" in page and "not recorded" in page
    assert "0.8525" in page and "<th>epochs</th>" in page and "<td>3</td>" in page  # last of 3 epochs
    assert "<td>0.7000</td>" in page  # history.csv's last row, after the resume header
    assert "exports.md" in page and "<td>4.9</td>" in page
    assert 'src="learning_curves.png"' in page and 'src="baseline/confusion_matrix.png"' in page
    assert "logs/ignored.png" not in page
    assert "10 classes" in page and "Smoke profile" not in page  # intended use; not a smoke run
    assert "confusion_matrix" not in page.split("Per model")[1].split("</table>")[0]  # lists stay out


def test_smoke_runs_are_marked_and_recorded_splits_shown(tmp_path):
    run = make_run(tmp_path, profile="smoke", data={"splits": {"train": 450, "validation": 50, "test": 100},
                                                     "note": "a subset"})
    page = run_report.write_run_report(run).read_text()
    assert "Smoke profile" in page
    assert "<td>train</td><td>450</td>" in page and "Caveat:</b> a subset" in page
    assert "not recorded" not in page


def test_command_is_this_process_only_when_it_is_the_lesson(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/tasks/cifar10.py", "--epochs", "3", "--run-id", "a b"])
    assert run_report.launch_command("cifar10") == "python -m tasks.cifar10 --epochs 3 --run-id 'a b'"
    assert run_report.launch_command("imdb") is None
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "-q"])
    assert run_report.launch_command("cifar10") is None
    assert "As started" not in run_report.write_run_report(make_run(tmp_path)).read_text()


def test_unfinished_folder_is_refused(tmp_path):
    run = make_run(tmp_path)
    (run / "metrics.json").unlink()
    with pytest.raises(UserError, match="not a finished run folder"):
        run_report.write_run_report(run)
    assert not (run / "report.html").exists()


def test_markdown_shows_placeholders_as_text():
    html = run_report.markdown_to_html("open runs/x/<run-id>/a.png\n\n| a |\n|---|\n| <b>1</b> |")
    assert "&lt;run-id&gt;" in html and "&lt;b&gt;" in html and "<table>" in html


def test_model_summary_is_whole_and_diagram_optional(tmp_path, capsys):
    import keras

    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    written = run_report.save_model_summary(model, tmp_path)
    text = (tmp_path / "model_summary.txt").read_text()
    assert "logits (Dense)" in text and "Param #" in text and "Total params: 8" in text
    printed = capsys.readouterr().out
    assert text in printed  # every lesson run shows it
    if len(written) == 1:  # no pydot/Graphviz here: one line says so
        assert "model diagram skipped" in printed
    else:
        assert (tmp_path / "model.png").stat().st_size > 0
