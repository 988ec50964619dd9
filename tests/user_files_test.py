"""Issue 39: nothing the user owns is overwritten, and a resume never mixes runs.

The user's files (an input CSV, a symlink and its target, a FIFO standing in for a device node, a folder of
their own) are checked byte for byte after every command that writes; the run fingerprint covers the data
and the backend; a bad value or file is one sentence and exit code 2 with nothing written.
"""

import hashlib
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import keras
import pytest

from common import runs, training
from common.config import build_config
from common.errors import UserError
from tasks import cifar10, imdb, phone_price
from tasks.phone_price import PhonePriceConfig
from tests.conftest import write_phone_csv


def snapshot(*paths):
    """Every file under `paths` (links as links, FIFOs as FIFOs) -> its kind and content digest."""
    seen = {}
    for top in paths:
        top = Path(top)
        for path in [top, *(top.rglob("*") if top.is_dir() and not top.is_symlink() else [])]:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                seen[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISFIFO(mode):
                seen[str(path)] = ("fifo", None)
            elif stat.S_ISDIR(mode):
                seen[str(path)] = ("dir", None)
            else:
                seen[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(),
                                   stat.S_IMODE(mode))
    return seen


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished phone-price smoke run (trained once for the module)."""
    root = tmp_path_factory.mktemp("phone")
    write_phone_csv(root / "data" / "mobile_price" / "train.csv", rows=400, seed=0)
    write_phone_csv(root / "data" / "mobile_price" / "test.csv", rows=50, seed=1, labelled=False,
                    with_id=True)
    config = build_config(PhonePriceConfig, profile="smoke", overrides=dict(
        data_dir=str(root / "data"), output_dir=str(root / "runs"), run_id="done", linear_baseline=False,
        epochs=2))
    phone_price.train(config)
    return root / "runs" / "phone_price" / "done", root / "data"


@pytest.fixture
def users_files(tmp_path):
    """The user's own things beside the outputs: a CSV, a symlink to a file, a FIFO, a folder of files."""
    home = tmp_path / "home"
    write_phone_csv(home / "my.csv", rows=20, seed=3, labelled=False, with_id=True)
    (home / "notes").mkdir()
    (home / "notes" / "keep.txt").write_text("the user's notes\n")
    (home / "link.csv").symlink_to(home / "notes" / "keep.txt")
    os.mkfifo(home / "device")  # stands in for a device node (making one needs root)
    return home


def test_predict_never_writes_over_its_own_input(finished_run, users_files, cli):
    run, _ = finished_run
    before = snapshot(users_files, run)
    code, _, err = cli(phone_price.main, ["predict", "--run", str(run), "--input", 
                                          str(users_files / "my.csv"),
                                          "--output", str(users_files / "my.csv")])
    assert code == 2 and "is also the input" in err and err.count("\n") == 1
    assert snapshot(users_files, run) == before


def test_predict_refuses_the_default_input_as_output(finished_run, cli):
    run, data = finished_run
    before = snapshot(data)
    code, _, err = cli(phone_price.main, ["predict", "--run", str(run), "--data-dir", str(data),
                                          "--output", str(data / "mobile_price" / "test.csv")])
    assert code == 2 and "is also the input" in err
    assert snapshot(data) == before


@pytest.mark.parametrize("name", ["link.csv", "device", "notes"])
def test_predict_writes_only_regular_files_never_through_a_link(finished_run, users_files, cli, name):
    run, _ = finished_run
    before = snapshot(users_files, run)
    code, _, err = cli(phone_price.main, ["predict", "--run", str(run), "--input", 
                                          str(users_files / "my.csv"),
                                          "--output", str(users_files / name)])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert snapshot(users_files, run) == before


def test_outputs_follow_the_users_umask(finished_run, users_files, cli):
    run, _ = finished_run
    old = os.umask(0o022)
    try:
        code, _, _ = cli(phone_price.main, ["predict", "--run", str(run), "--input",
                                            str(users_files / "my.csv"),
                                            "--output", str(users_files / "out" / "labels.csv")])
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE((users_files / "out" / "labels.csv").stat().st_mode) == 0o644
    before = snapshot(users_files)
    before.pop(str(users_files / "out" / "labels.csv"))
    before.pop(str(users_files / "out"))
    after = snapshot(users_files)
    after.pop(str(users_files / "out" / "labels.csv"))
    after.pop(str(users_files / "out"))
    assert after == before  # nothing else of the user's changed
    # A run's own files too (runs.atomic_write_text), not 0600 as tempfile.mkstemp makes them.
    assert stat.S_IMODE((run / "metrics.json").stat().st_mode) & 0o044 == 0o044


def smoke_config(tmp_path, data_root, **overrides):
    values = dict(data_dir=str(data_root), output_dir=str(tmp_path / "runs"), run_id="r", **overrides)
    return build_config(PhonePriceConfig, profile="smoke", overrides=values)


def test_a_resume_must_read_the_same_data_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_phone_csv(first / "mobile_price" / "train.csv", seed=0)
    write_phone_csv(second / "mobile_price" / "train.csv", seed=5)  # another CSV under the same name
    config = smoke_config(tmp_path, first)
    runs.start_run(config, first / "mobile_price").close()
    with pytest.raises(UserError, match="other data files"):
        runs.start_run(smoke_config(tmp_path, second), second / "mobile_price")
    # The same files in another place are the same data: the run resumes.
    copy = tmp_path / "copy"
    (copy / "mobile_price").mkdir(parents=True)
    (copy / "mobile_price" / "train.csv").write_bytes((first / "mobile_price" / "train.csv").read_bytes())
    assert runs.start_run(smoke_config(tmp_path, copy), copy / "mobile_price").resumed


def test_a_resume_must_use_the_same_backend(tmp_path, monkeypatch, phone_root):
    runs.start_run(smoke_config(tmp_path, phone_root), phone_root / "mobile_price").close()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(UserError, match="backend tensorflow -> jax"):
        runs.start_run(smoke_config(tmp_path, phone_root), phone_root / "mobile_price")


@pytest.mark.parametrize("flag", [dict(steps_per_execution=4), dict(jit_compile="true")])
def test_settings_that_change_the_numbers_are_part_of_the_fingerprint(tmp_path, phone_root, flag):
    runs.start_run(smoke_config(tmp_path, phone_root), phone_root / "mobile_price").close()
    with pytest.raises(UserError, match=next(iter(flag))):
        runs.start_run(smoke_config(tmp_path, phone_root, **flag), phone_root / "mobile_price")


@pytest.mark.parametrize("requested, epoch, expected", [(32, 21, 21), (4, 9, 3), (5, 10, 5), (7, 13, 1),
                                                        (1, 50, 1)])
def test_steps_per_call_divide_an_epoch(requested, epoch, expected):
    assert training.execution_steps(requested, epoch) == expected


@pytest.mark.slow
def test_steps_per_execution_keeps_every_epoch_and_number(tmp_path, phone_root):
    """Broken variant caught: Keras' whole calls of 32 steps over a 9-step epoch (epoch 0's training
    accuracy was 0.60 against 0.33, the history differed from the first epoch)."""
    histories = []
    for run_id, steps in (("one", 1), ("more_than_an_epoch", 32), ("no_divisor", 4)):
        config = smoke_config(tmp_path, phone_root, linear_baseline=False, epochs=4,
                              steps_per_execution=steps)
        config.run_id = run_id
        phone_price.train(config)
        histories.append((tmp_path / "runs" / "phone_price" / run_id / "history.csv").read_text())
    assert histories[0] == histories[1] == histories[2]


def test_a_value_too_large_for_float32_is_refused_by_row_and_column(tmp_path, cli):
    root = tmp_path / "data"
    csv = write_phone_csv(root / "mobile_price" / "train.csv", rows=400, seed=0)
    lines = csv.read_text().splitlines()
    cells = lines[3].split(",")
    cells[0] = "1e39"
    lines[3] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(root),
                                          "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and "battery_power" in err and "row 3" in err and "1e+39" in err
    assert not (tmp_path / "runs").exists()


def test_a_diverging_run_stops_with_one_sentence(tmp_path, phone_root, cli):
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root), "--output-dir",
                                          str(tmp_path / "runs"), "--learning-rate", "1e30",
                                          "--no-linear-baseline"])
    assert code == 2 and "diverged" in err


def test_a_config_file_that_is_not_utf8_or_a_folder_is_one_sentence(tmp_path, cli):
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"activation": "r\xe9lu"}'.encode("latin-1"))
    for path, words in ((bad, "not UTF-8"), (tmp_path, "is a folder")):
        code, _, err = cli(phone_price.main, ["--config", str(path), "--output-dir", str(tmp_path / "runs")])
        assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_run_id_is_refused_not_a_new_run(tmp_path, phone_root, cli, value):
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root),
                                          "--output-dir", str(tmp_path / "runs"), "--run-id", value])
    assert code == 2 and "--run-id must not be empty" in err
    assert not (tmp_path / "runs").exists()


def png_header_only(path, width, height):
    """A tiny PNG file whose header declares `width` x `height` pixels (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [12_000, 60_000])  # Pillow warns past 89 M pixels, refuses past twice that
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    bomb = png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(UserError, match="too many pixels"):
        cifar10.read_image(bomb, (32, 32))


@pytest.mark.parametrize("reviews", [[""], ["a fine film", "   "]])
def test_imdb_predict_refuses_blank_reviews(tmp_path, cli, reviews):
    code, _, err = cli(imdb.main, ["predict", "--run", str(tmp_path), *reviews])
    assert code == 2 and "empty or blank" in err


def test_imdb_predict_file_that_is_a_folder(tmp_path, cli):
    code, _, err = cli(imdb.main, ["predict", "--run", str(tmp_path), "--file", str(tmp_path)])
    assert code == 2 and "is a folder" in err


@pytest.mark.parametrize("damage", ["baseline_is_a_file", "history_is_a_folder", "history_is_a_link"])
def test_a_killed_run_altered_afterwards_is_refused_not_followed(tmp_path, phone_root, cli, damage):
    config = smoke_config(tmp_path, phone_root)
    run = runs.start_run(config, phone_root / "mobile_price")
    run.close()  # as a kill leaves it: marker, config, no metrics.json
    if damage == "baseline_is_a_file":
        (run.path / "baseline").write_text("x")
    elif damage == "history_is_a_folder":
        (run.path / "history.csv").mkdir()
    else:
        (run.path / "history.csv").symlink_to(phone_root / "mobile_price" / "train.csv")
    before = snapshot(run.path, phone_root)
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(phone_root),
                                          "--output-dir", str(tmp_path / "runs"), "--run-id", "r"])
    assert code == 2 and "altered after it stopped" in err and err.count("\n") == 1
    assert snapshot(run.path, phone_root) == before


def test_finished_runs_files_are_json_the_marker_names(finished_run):
    run, _ = finished_run
    marker = json.loads((run / runs.MARKER).read_text())
    assert marker["recipe"]["backend"] == keras.backend.backend()
    assert len(marker["recipe"]["data"]) == 64  # the digest of the data folder's files


def test_a_run_saves_the_settings_it_printed(finished_run):
    run, _ = finished_run
    text = (run / "settings.txt").read_text()
    assert text.startswith("settings that differ from tasks/phone_price.py's defaults:")
    assert "epochs = 2" in text and "(flag)" in text
    assert "max_rows = 400" in text and "(profile smoke)" in text


@pytest.mark.slow
def test_every_cli_that_writes_leaves_the_users_files_as_they_were(tmp_path, users_files, cli, monkeypatch):
    """Run each writing command as a user would, from the user's own folder (relative paths), with the
    outputs beside their files: a lesson run, predict, a search, its report and the pages. Afterwards every
    file, link and FIFO that was there before is byte for byte the same; only the named outputs are new."""
    from pages import build as pages_build
    from tuning import report, search

    data = tmp_path / "data"
    write_phone_csv(data / "mobile_price" / "train.csv", rows=200, seed=0)
    monkeypatch.chdir(users_files)
    before = snapshot(users_files, data)
    outputs = ("runs", "tuning_runs", "site", "labels.csv")
    train = ["--profile", "smoke", "--data-dir", str(data), "--run-id", "mine", "--epochs", "2",
             "--no-linear-baseline"]
    assert cli(phone_price.main, train)[0] == 0
    assert cli(phone_price.main, ["predict", "--run", "runs/phone_price/mine", "--input", "my.csv",
                                  "--output", "labels.csv"])[0] == 0
    assert cli(search.main, ["--task", "phone_price", "--profile", "smoke", "--data-dir", str(data),
                             "--epochs", "2", "--max-trials", "1", "--verbose", "0", "--name", "s"])[0] == 0
    assert cli(report.main, ["tuning_runs/phone_price/s"])[0] == 0
    site = ["--runs", "runs", "--tuning-runs", "tuning_runs", "--output", "site"]
    assert cli(pages_build.main, site)[0] == 0

    def users_own(path):
        top = Path(path).relative_to(users_files).parts[:1] if not path.startswith(str(data)) else ()
        return not top or top[0] not in outputs

    after = {path: kind for path, kind in snapshot(users_files, data).items() if users_own(path)}
    assert after == before
    assert all((users_files / name).exists() for name in outputs)
