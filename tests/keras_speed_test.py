"""benchmarks/keras_speed.py (issue 36, item 2): each variant in its own process, its row or its reason, the
section, and a bad variant name refused."""

import pytest

pytest.importorskip("torch", reason="PyTorch is optional: pip install -r requirements-compare.txt")

from benchmarks import common, keras_speed  # noqa: E402

TINY = dict(steps=2, warmup=1, images=64, matmul_size=128,
            overrides={"widths": [8, 16, 16], "batch_size": 32})


def fake_stamp(command="python -m benchmarks.keras_speed --steps 2"):
    """A whole stamp without `common.stamp`, which refuses a tree with uncommitted changes."""
    return {"date": "2026-01-01", "machine": "a test CPU, 2 cores, no GPU", "versions": "Python 3",
            "commit": "0123abc", "command": command}


def canned_result():
    """A run with round numbers: the twin 1 s a step, the baseline 2 s, XLA 1.5 s, channels_first failed."""
    built = {"backend": "tensorflow", "steps_per_call": 1, "jit": False, "policy": "mixed_bfloat16",
             "data_format": "channels_last", "train_flops_per_image": 1.0e9}
    variants = [dict(built, name="baseline", what="nothing", seconds=2.0, bfloat16_peak=2.0e12),
                dict(built, name="xla", what="XLA", seconds=1.5, jit=True),
                {"name": "channels_first", "what": "channels-first", "seconds": None,
                 "note": "ValueError: Depth of input (32) is not a multiple of input depth of filter (3)"}]
    return {"variants": variants, "steps": 20, "warmup": 3, "images": 46000, "batch_size": 1024,
            "widths": [64, 256, 256], "epoch_steps": 45, "load_average": 0.1, "matmul_size": 2048,
            "twin": {"seconds": 1.0, "epoch_steps": 44, "torch": "2", "threads": 2, "autocast": True}}


def test_the_table_sets_each_variant_against_the_baseline_and_the_twin():
    result = canned_result()
    rows = {row["variant"]: row for row in keras_speed.rows(result)}
    assert list(rows) == ["baseline", "xla", "channels_first"]
    assert rows["baseline"]["vs baseline"] == "1.00x" and rows["baseline"]["vs twin"] == "2.00x"
    assert rows["xla"]["Keras ms/step"] == "1500.0" and rows["xla"]["vs baseline"] == "0.75x"
    assert rows["xla"]["s/epoch (45 steps)"] == "68" and rows["xla"]["note"] == ""  # 45 steps of 1.5 s
    failed = rows["channels_first"]
    assert failed["Keras ms/step"] == failed["vs twin"] == "" and "Depth of input" in failed["note"]
    goal = keras_speed.targets(result)
    assert goal["best"] == "xla" and goal["ratio"] == 1.5 and not goal["ratio_met"]
    # 1,024 images x 1 GFLOP in 1.5 s: 683 GFLOP/s, 34 % of a 2,000 GFLOP/s peak
    assert goal["share"] == pytest.approx(1024 / 1.5 / 2000) and not goal["share_met"]
    body = keras_speed.render(result, fake_stamp())
    assert ("Keras / twin for the fastest variant of the recipe's network (xla): 1.50x (target: at most "
            "1.1x): not met") in body
    assert "1000.0 ms/step, 44 s/epoch (44 steps)" in body
    assert "xla: tensorflow, mixed_bfloat16, XLA on" in body


def test_a_variant_with_another_activation_is_not_a_target_candidate():
    """ReLU is faster but trains another network: the targets stay with the recipe's fastest variant."""
    result = canned_result()
    relu = dict(result["variants"][1], name="relu", what="ReLU", seconds=0.5, jit=False)
    result["variants"].append(relu)
    assert keras_speed.targets(result)["best"] == "xla"
    assert {row["variant"] for row in keras_speed.rows(result)} >= {"relu"}  # still shown in the table


def test_main_writes_the_section_with_its_stamp(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(keras_speed, "stamp", lambda command: fake_stamp(command))
    asked = {}
    monkeypatch.setattr(keras_speed, "measure",
                        lambda names, **kwargs: asked.update(kwargs, names=names) or canned_result())
    arguments = ["--variants", "baseline,xla", "--steps", "5"]
    monkeypatch.setattr("sys.argv", ["benchmarks/keras_speed.py", *arguments])
    assert keras_speed.main(arguments) == 0
    assert asked["names"] == ["baseline", "xla"] and asked["steps"] == 5 and asked["warmup"] == 3
    body = common.read_section("keras_speed")
    assert common.stamp_problem(common.section_stamp(body)) is None
    assert "- command: `python -m benchmarks.keras_speed --variants baseline,xla --steps 5`" in body


@pytest.mark.parametrize("arguments, expected", [
    (["--variants", "baseline,fastest"], "error: unknown variant 'fastest'; the variants are baseline, "),
    (["--overrides", "[1]"], "error: --overrides takes a JSON object of config settings"),
    (["--overrides", '{"no_such_setting": 1}'], "error: "),
    (["--images", "100"], "error: a step needs a whole batch: 100 images for a batch of 1024."),
])
def test_bad_input_is_refused_with_one_sentence_and_exit_code_2(arguments, expected, cli, monkeypatch):
    monkeypatch.setattr(keras_speed, "stamp", lambda command: pytest.fail("stamped before the check"))
    code, _, error = cli(keras_speed.main, arguments)
    assert code == 2 and error.strip().startswith(expected) and "\n" not in error.strip(), error


@pytest.mark.slow
def test_a_tiny_run_times_each_variant_in_its_own_process_or_says_why_not():
    names = ["baseline", "onednn_off", "channels_first"]
    result = keras_speed.measure(names, **TINY, log=lambda *_: None)
    assert [row["name"] for row in result["variants"]] == names
    for row in result["variants"]:
        assert (row["seconds"] or 0) > 0 or row["note"], row
    baseline, onednn_off, channels_first = result["variants"]
    assert baseline["seconds"] > 0 and baseline["bfloat16_peak"] > 0 and baseline["backend"] == "tensorflow"
    assert onednn_off["seconds"] > 0 and onednn_off["steps_per_call"] == 1
    # the lesson's model reads its images channels-last: the global setting breaks its build, in one line
    assert channels_first.get("seconds") or "\n" not in channels_first["note"]
    assert result["twin"]["seconds"] > 0 and result["twin"]["epoch_steps"] == 1437  # 46,000 in batches of 32
    assert result["batch_size"] == 32 and result["epoch_steps"] == 1438
    body = keras_speed.render(result, fake_stamp())
    for name in names:
        assert f"| {name} " in body, name
    assert "widths 8,16,16, batch 32" in body and "Keras / twin for the fastest variant" in body
