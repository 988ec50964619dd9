"""benchmarks/stage_profile.py (issue 36): every stage timed on both sides, the ratios, the section."""

import pytest

pytest.importorskip("torch", reason="PyTorch is optional: pip install -r requirements-compare.txt")

from benchmarks import common, stage_profile  # noqa: E402

TINY = dict(steps=2, warmup=1, images=64, eval_images=64, matmul_size=128,
            overrides=dict(widths=(8, 16, 16), batch_size=32))
STAGE_KEYS = [stage for stage, _ in stage_profile.STAGES]


def fake_stamp(command="python -m benchmarks.stage_profile --steps 2"):
    """A whole stamp without `common.stamp`, which refuses a tree with uncommitted changes."""
    return {"date": "2026-01-01", "machine": "a test CPU, 2 cores, no GPU", "versions": "Python 3",
            "commit": "0123abc", "command": command}


def canned_result():
    """A profile's result with round numbers: Keras twice the twin's time in every stage."""
    twin = dict(zip(STAGE_KEYS, (0.05, 0.1, 0.3, 0.01, 0.4, 0.002, 0.5), strict=True))
    return {"times": {"keras": {k: 2 * v for k, v in twin.items()}, "twin": twin}, "precision": "bfloat16",
            "why_precision": "the CPU has AVX-512 BF16 or AMX", "data": "random uint8 images",
            "real_data": False, "images": 46000, "eval_images": 10000, "batch_size": 1024,
            "widths": [64, 256, 256], "steps": 20, "warmup": 3, "eval_repeats": 1,
            "steps_per_epoch": {"keras": 45, "twin": 44}, "train_flops_per_image": 1.0e9,
            "forward_flops_per_image": 0.4e9, "peaks": {"bfloat16": 2.0e12, "float32": 0.5e12},
            "load_average": 0.1, "matmul_size": 2048, "gpus_hidden": 0, "keras_jit": False, "torch": "2",
            "torch_threads": 2, "keras": "3", "lookahead_every": 5, "tta_crops": True}


def ratio(row):
    return float(row["Keras / twin"].removesuffix("x"))


def test_the_table_divides_keras_by_the_twin_and_extrapolates_each_sides_own_epoch():
    result = canned_result()
    rows = stage_profile.rows(result)
    assert [row["stage"] for row in rows[:-1]] == [label for _, label in stage_profile.STAGES]
    assert all(ratio(row) == 2.0 for row in rows)
    full = next(row for row in rows if row["stage"].startswith("5."))
    assert full["Keras ms/step"] == "800.0" and full["of the Keras full step"] == "100%"
    assert full["Keras s/epoch"] == "36.0" and full["twin s/epoch"] == "17.6"  # 45 and 44 steps
    evaluation = next(row for row in rows if row["stage"].startswith("7."))
    assert evaluation["of the Keras full step"] == "" and evaluation["twin s/epoch"] == "5.0"  # 10,000 images
    goal = stage_profile.targets(result)
    assert goal["ratio"] == 2.0 and not goal["ratio_met"]
    # 1,024 images x 1 GFLOP in 0.8 s: 1,280 GFLOP/s, 64 % of a 2,000 GFLOP/s peak
    assert goal["rate"]["keras"] == pytest.approx(1.28e12) and goal["share_met"]


def test_main_writes_the_section_with_its_stamp_and_no_path_of_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(stage_profile, "stamp", lambda command: fake_stamp(command))
    asked = {}
    monkeypatch.setattr(stage_profile, "profile", lambda **kwargs: asked.update(kwargs) or canned_result())
    arguments = ["--steps", "5", "--data-dir", str(tmp_path / "data")]
    monkeypatch.setattr("sys.argv", ["benchmarks/stage_profile.py", *arguments])
    assert stage_profile.main(arguments) == 0
    assert asked["steps"] == 5 and asked["data_dir"] == str(tmp_path / "data")
    body = common.read_section("stage_profile")
    assert common.stamp_problem(common.section_stamp(body)) is None
    assert "- command: `python -m benchmarks.stage_profile --steps 5 --data-dir DIR`" in body
    assert str(tmp_path) not in body
    assert "Keras / twin = 2.00x (target: at most 1.1x): not met" in body
    assert "64% of the bfloat16 matmul peak (target: 50%): met" in body
    with pytest.raises(SystemExit):
        stage_profile.main(["--steps", "0"])


@pytest.mark.slow
def test_a_tiny_profile_times_every_stage_on_both_sides_and_renders(tmp_path, monkeypatch):
    result = stage_profile.profile(**TINY, log=lambda *_: None)
    for side in ("keras", "twin"):
        assert set(result["times"][side]) == set(STAGE_KEYS)
        assert all(seconds > 0 for seconds in result["times"][side].values()), result["times"][side]
    assert result["precision"] in ("bfloat16", "float32") and not result["real_data"]
    assert result["steps_per_epoch"] == {"keras": 1438, "twin": 1437}  # 46,000 images in batches of 32
    assert result["train_flops_per_image"] > result["forward_flops_per_image"] > 0
    rows = stage_profile.rows(result)
    for row, stage in zip(rows, STAGE_KEYS):
        expected = result["times"]["keras"][stage] / result["times"]["twin"][stage]
        assert ratio(row) == pytest.approx(expected, rel=0.01, abs=0.006), (stage, row)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    common.write_section("stage_profile", stage_profile.render(result, fake_stamp()))
    body = common.read_section("stage_profile")
    assert all(label in body for _, label in stage_profile.STAGES)
    assert "widths 8,16,16), batch 32" in body and "random uint8 images" in body
    assert common.section_stamp(body)["command"] == fake_stamp()["command"]
