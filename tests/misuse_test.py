"""Every command line misused on purpose: malformed values, paths outside the project, foreign and damaged
folders and files, read-only folders, untrusted model files.

Each refusal must be exit code 2 with one line on stderr that names the setting or file, no traceback, and
not one file created or changed (the whole temporary tree, the cache included, is compared before and after).
Most cases call a lesson's `main(argv)` in this process, through `run_cli` as the CLI does; a few run the
scripts in a subprocess, end to end. Run folders for the `predict` and `caption` cases are made by hand with
tiny untrained models: a refusal must never depend on training.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import PHONE_FEATURES, write_imdb_archive, write_phone_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import run_all
from common import runs, trained
from common.config import INT_MAX, SEED_MAX, _base_type, _parse_range, build_config
from common.errors import UserError, run_cli
from datasets import imdb as imdb_data
from tasks import captioning, cifar10, imdb, phone_price

ROOT = Path(__file__).resolve().parents[1]
LESSONS = {"phone_price": phone_price, "cifar10": cifar10, "imdb": imdb, "captioning": captioning}
CONFIGS = {"phone_price": phone_price.PhonePriceConfig, "cifar10": cifar10.Cifar10Config,
           "imdb": imdb.ImdbConfig, "captioning": captioning.CaptioningConfig}


# --------------------------------------------------------------------------------------------------- helpers
def snapshot(*roots):
    """Every file and folder under `roots`: path -> (kind, size, content hash, mtime)."""
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                stat = path.lstat()
                digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
                state[str(path)] = ("dir" if path.is_dir() else "file", stat.st_size, digest,
                                    stat.st_mtime_ns)
    return state


@pytest.fixture
def refused(tmp_path, capsys, monkeypatch):
    """`refused(main, argv, *fragments)`: run the command in tmp_path and check the refusal promise."""
    monkeypatch.chdir(tmp_path)  # a command that wrongly fell back to ./runs would write here

    def check(main, argv, *fragments):
        watched = (tmp_path, os.environ["KERAS_TUTORIALS_CACHE"])
        before = snapshot(*watched)
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, [str(a) for a in argv])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert exit_info.value.code == 2, err
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err and "np.int64" not in err and "BytesIO" not in err, err
        for fragment in fragments:
            assert fragment in lines[0], err
        assert snapshot(*watched) == before, "a refused command changed files"
        return lines[0]

    return check


def save_model(path, inputs, outputs):
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(path)
    return path


def phone_model(path):
    inputs = keras.Input((len(PHONE_FEATURES),))
    return save_model(path, inputs, keras.layers.Dense(4, activation="softmax")(inputs))


def lambda_model(path, features=20):
    """A model whose file holds Python code: a Lambda layer."""
    inputs = keras.Input((features,))
    doubled = keras.layers.Lambda(lambda x: x * 2)(inputs)
    return save_model(path, inputs, keras.layers.Dense(4, activation="softmax")(doubled))


def review_model(path):
    """A tiny raw-string model like the IMDB lesson's (vectoriser inside)."""
    inputs = keras.Input((1,), dtype="string")
    vectorize = keras.layers.TextVectorization(vocabulary=["good", "bad"], output_sequence_length=4)
    x = keras.layers.Embedding(4, 2)(vectorize(inputs))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return save_model(path, inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def fake_run(folder, task, model=None, metrics=None, marker=True):
    """A finished run folder of `task` as start_run/finish_run leave it, with
    `model(folder / "model.keras")`."""
    folder.mkdir(parents=True, exist_ok=True)
    if marker:
        (folder / runs.MARKER).write_text(json.dumps({"project": runs.PROJECT, "task": task}))
    (folder / "config.json").write_text(json.dumps({"task": task, "profile": "smoke"}))
    metrics = {"task": task, "summary": [], "results": {}} if metrics is None else metrics
    if metrics is not False:
        (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if model is not None:
        model(folder / "model.keras")
    return folder


def write_png(path, size=8):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 120, dtype="uint8")).save(path)
    return path


@pytest.fixture
def immutable():
    """`immutable(folder)`: make a folder that nobody can write to, for the length of the test.

    chmod is enough for a normal user; root ignores permission bits, so as root the folder gets the
    immutable attribute (chattr +i), which binds root too. Without either the test is skipped, saying why.
    """
    made = []

    def make(folder):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
            made.append(lambda: folder.chmod(0o755))
        elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)],
                                                       capture_output=True).returncode == 0:
            made.append(lambda: subprocess.run(["chattr", "-i", str(folder)], check=True))
        else:
            pytest.skip("running as root (chmod does not stop root's writes) and chattr +i is unavailable "
                        "here (needs CAP_LINUX_IMMUTABLE on ext2/3/4, XFS or btrfs)")
        return folder

    yield make
    for undo in made:
        undo()


# ------------------------------------------------------------------------------- lessons: malformed values
BAD_FLAGS = [
    ("phone_price", ["--seed", "-1"], "--seed must be from 0 to 4294967295"),
    ("phone_price", ["--seed", str(2**32)], "--seed must be from 0 to 4294967295"),
    ("phone_price", ["--split-seed", "-1"], "--split-seed must be from 0"),
    ("phone_price", ["--epochs", "1e20"], "--epochs expects a whole number"),
    ("phone_price", ["--epochs", "99999999999"], "--epochs must be from 0 to 2147483647"),
    ("phone_price", ["--momentum", "5"], "--momentum must be in [0, 1)"),
    ("phone_price", ["--step-epochs", "0"], "--step-epochs must be at least 1"),
    ("phone_price", ["--learning-rate", "nan"], "--learning-rate expects a finite number"),
    ("phone_price", ["--cv", "1"], "--cv must be between 2"),
    ("phone_price", ["--max-rows", "0"], "--max-rows must be at least 1"),
    ("phone_price", ["--max-rows", "10"], "10 labelled rows", "too few to split"),
    ("phone_price", ["--cv", "500"], "--cv must be between 2 and the smallest class size (100)"),
    ("phone_price", ["--run-id", "../../../escaped"], "--run-id must be a plain name"),
    ("phone_price", ["--run-id", "/absolute"], "--run-id must be a plain name"),
    ("phone_price", ["--run-id", "."], "--run-id must be a plain name"),
    ("phone_price", ["--run-id", ".."], "--run-id must be a plain name"),
    ("phone_price", ["--run-id", "a\x1b[31mred"], "--run-id must be a plain name", "\\x1b"),
    ("cifar10", ["--crop-padding", "40"], "--crop-padding must be in [0, 16)"),
    ("cifar10", ["--cutout", "33"], "--cutout must be in [0, 32]"),
    ("cifar10", ["--max-images", "5"], "--max-images must be at least 20"),
    ("cifar10", ["--widths", "32,0,64"], "--widths must be at least 1"),
    ("cifar10", ["--bn-momentum", "1"], "--bn-momentum must be in [0, 1)"),
    ("imdb", ["--vocabulary-size", "2"], "--vocabulary-size must be at least 3"),
    ("imdb", ["--ngram-buckets", "999999999"], "--ngram-vocabulary-size + --ngram-buckets", "8 GB"),
    ("imdb", ["--val-fraction", "1"], "--val-fraction must be in (0, 1)"),
    ("captioning", ["--image-size", "-5"], "--image-size must be at least 1"),
    ("captioning", ["--image-size", "4"], "--image-size must be at least 8"),
    ("captioning", ["--beam-size", "0"], "--beam-size must be at least 1"),
    ("captioning", ["--shapes-count", "5"], "--shapes-count 5 leaves no validation or test image"),
    ("captioning", ["--val-fraction", "0.5", "--test-fraction", "0.5"], "must sum to less than 1"),
    ("captioning", ["--dataset", "folder"], "--dataset folder needs --images"),
]


@pytest.mark.parametrize("task,argv,fragments", [(t, a, f) for t, a, *f in BAD_FLAGS],
                         ids=[f"{t}{' '.join(a)}" for t, a, *_ in BAD_FLAGS])
def test_lessons_refuse_malformed_values_before_writing_anything(task, argv, fragments, refused, phone_root):
    refused(LESSONS[task].main,
            ["--profile", "smoke", "--data-dir", phone_root, "--output-dir", "runs", *argv], *fragments)


@pytest.mark.parametrize("values,fragment", [
    ({"epochs": True}, "expects a whole number, got true"),
    ({"epochs": 1e20}, "expects a whole number, got 1e+20"),
    ({"hidden_units": [64, 2.5]}, "expects comma-separated whole numbers"),
    ({"jit_compile": "maybe"}, "--jit-compile must be one of auto, true, false"),
    ({"task": "imdb"}, "is for task 'imdb'"),
])
def test_a_config_file_with_wrong_values_is_refused(tmp_path, refused, values, fragment):
    (tmp_path / "recipe.json").write_text(json.dumps(values))
    refused(phone_price.main, ["--profile", "smoke", "--config", tmp_path / "recipe.json"], fragment)


def test_an_output_dir_that_is_a_file_is_refused(tmp_path, refused):
    (tmp_path / "runs").write_text("not a folder")
    refused(phone_price.main, ["--profile", "smoke", "--output-dir", tmp_path / "runs"], "--output-dir",
            "is a file")


# ------------------------------------------------------------------------ generated values (hypothesis)
def _fields(kind_wanted):
    """(config class, field name) for every field of every lesson whose type is `kind_wanted`."""
    found = []
    for cls in CONFIGS.values():
        hints = typing.get_type_hints(cls)
        found += [(cls, f.name) for f in dataclasses.fields(cls)
                  if _base_type(hints[f.name])[0] is kind_wanted]
    return found


def _ranged():
    """(config class, field, range spec) for every numeric field with a range."""
    found = []
    for cls in CONFIGS.values():
        ranges = {}
        for base in reversed(cls.__mro__):
            ranges.update(vars(base).get("RANGES", {}))
        numeric = {name for c, name in _fields(int) + _fields(float) + _fields(tuple) if c is cls}
        found += [(cls, name, spec) for name, spec in sorted(ranges.items()) if name in numeric]
    return found


def outside(spec):
    """Numbers outside a range spec: at or just past its bounds, and anywhere beyond them."""
    low, high, low_open, high_open = _parse_range(spec)
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
    choices = [below, st.just(low - 1)] if not low_open else [below, st.just(low)]
    if high is not None:
        choices.append(st.floats(min_value=high, exclude_min=not high_open, allow_nan=False,
                                 allow_infinity=False))
    return st.one_of(choices)


def _flag(name):
    return "--" + name.replace("_", "-")


def _refusal(cls, name, value):
    with pytest.raises(UserError) as error:
        build_config(cls, profile="smoke", overrides={name: value})
    return str(error.value)


@pytest.mark.parametrize("cls,name,spec", _ranged(), ids=lambda v: getattr(v, "TASK", v))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_values_outside_each_range_are_refused_naming_the_setting(cls, name, spec, data):
    value = data.draw(outside(spec), label="value")
    int_field = (cls, name) in _fields(int) + _fields(tuple)
    if int_field:
        value = int(np.floor(value)) if value < _parse_range(spec)[0] else int(np.ceil(value))
    text = str(value)
    message = _refusal(cls, name, text)
    assert message.startswith(_flag(name)) and "\n" not in message


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_generated_integers_beyond_the_limits_are_refused(data):
    cls, name = data.draw(st.sampled_from(_fields(int)), label="field")
    top = SEED_MAX if name.endswith("seed") else INT_MAX
    value = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=top + 1)), label="value")
    assert _refusal(cls, name, str(value)).startswith(_flag(name))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_generated_non_numbers_are_refused(data):
    cls, name = data.draw(st.sampled_from(_fields(int) + _fields(float)), label="field")
    fractions = (st.floats(allow_nan=False, allow_infinity=False)
                 .filter(lambda v: not v.is_integer()).map(repr))
    junk = [st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "ten", "1,5", "3 4"]), st.booleans()]
    if (cls, name) in _fields(int):
        junk.append(fractions)  # 2.5 or 1e+20 where a whole number is due
    value = data.draw(st.one_of(junk), label="value")
    assert _refusal(cls, name, value).startswith(_flag(name))


# ------------------------------------------------------------------------------------------------ data files
def test_a_csv_too_small_to_split_is_refused(tmp_path, refused):
    write_phone_csv(tmp_path / "root" / "mobile_price" / "train.csv", rows=5)
    refused(phone_price.main, ["--profile", "smoke", "--data-dir", tmp_path / "root"], "5 labelled rows",
            "use at least")


def test_a_one_class_csv_is_refused(tmp_path, refused):
    path = write_phone_csv(tmp_path / "root" / "mobile_price" / "train.csv", rows=60)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + ",2" for line in lines[1:]]) + "\n")
    refused(phone_price.main, ["--profile", "smoke", "--data-dir", tmp_path / "root"],
            "every row has price_range 2", "at least two classes")


def test_a_label_outside_the_classes_is_shown_as_written(tmp_path, refused):
    path = write_phone_csv(tmp_path / "root" / "mobile_price" / "train.csv", rows=60)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",7"
    path.write_text("\n".join(lines) + "\n")
    refused(phone_price.main, ["--profile", "smoke", "--data-dir", tmp_path / "root"],
            "column price_range has 7 in data row 3")


def test_a_missing_class_is_a_warning(tmp_path, capsys):
    from datasets import mobile_price

    path = write_phone_csv(tmp_path / "train.csv", rows=60)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + f",{i % 3}"
                                            for i, line in enumerate(lines[1:])]) + "\n")
    mobile_price.read_csv(path, PHONE_FEATURES, "price_range", num_classes=4)
    assert "has no rows of price_range 3" in capsys.readouterr().err


@pytest.mark.parametrize("encoder", ["cnn", "efficientnet_lite0"])
def test_a_corrupt_image_in_a_captioning_folder_is_named(tmp_path, refused, encoder):
    images = tmp_path / "images"
    for name in ("a.png", "b.png", "c.png"):
        write_png(images / name, 32)
    (images / "b.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "captions.csv").write_text("image,caption\n" + "".join(
        f"{n}.png,a grey square\n" for n in "abc" for _ in range(2)))
    refused(captioning.main, ["--profile", "smoke", "--dataset", "folder", "--images", images, "--captions",
                              tmp_path / "captions.csv", "--val-fraction", "0.34", "--test-fraction", "0.34",
                              "--encoder", encoder],
            "b.png is not a readable image")


def test_a_truncated_archive_keeps_the_good_extracted_cache(tmp_path, refused):
    good = tmp_path / "good"
    write_imdb_archive(good, per_class=2)
    tree = imdb_data.find_reviews(good)  # extracted once into the cache
    cached = snapshot(tree)
    bad = tmp_path / "bad"
    (bad / "imdb").mkdir(parents=True)
    data = (good / "imdb" / "aclImdb.tar.gz").read_bytes()
    (bad / "imdb" / "aclImdb.tar.gz").write_bytes(data[:len(data) // 2])
    refused(imdb.main, ["--profile", "smoke", "--data-dir", bad], "could not extract",
            "cache was left as it was")
    assert snapshot(tree) == cached and imdb_data.find_reviews(good) == tree


def test_a_damaged_array_cache_is_built_again(tmp_path):
    from common import images

    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(5)}

    cache = tmp_path / "arrays.npz"
    assert list(images.cached_arrays(cache, build)["x"]) == [0, 1, 2, 3, 4]
    assert list(images.cached_arrays(cache, build)["x"]) == [0, 1, 2, 3, 4] and len(calls) == 1
    cache.write_bytes(cache.read_bytes()[:30])  # truncated, as by a full disk before atomic writes
    assert list(images.cached_arrays(cache, build)["x"]) == [0, 1, 2, 3, 4] and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]


# ------------------------------------------------------------------------------- predict / caption commands
def test_predict_writes_to_output_or_stdout_and_never_into_the_run(tmp_path, capsys, monkeypatch):
    run = fake_run(tmp_path / "runs" / "phone_price" / "r1", "phone_price", phone_model)
    csv_path = write_phone_csv(tmp_path / "phones.csv", rows=7, labelled=False, with_id=True)
    monkeypatch.chdir(tmp_path)
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(phone_price.main, ["predict", "--run", str(run), "--input", str(csv_path)])
    out, err = capsys.readouterr()
    assert (exit_info.value.code == 0 and out.splitlines()[0] == "id,price_range"
            and len(out.splitlines()) == 8)
    assert "7 phones -> stdout" in err
    output = tmp_path / "new" / "folder" / "labels.csv"  # a missing folder is created
    with pytest.raises(SystemExit) as exit_info:
        run_cli(phone_price.main,
                ["predict", "--run", str(run), "--input", str(csv_path), "--output", str(output)])
    assert exit_info.value.code == 0 and len(output.read_text().splitlines()) == 8
    assert snapshot(run) == before


def test_untrusted_and_damaged_run_folders_are_refused(tmp_path, refused):
    csv_path = write_phone_csv(tmp_path / "phones.csv", rows=5, labelled=False)
    base = tmp_path / "runs" / "phone_price"
    good = fake_run(base / "good", "phone_price", phone_model)
    someones = tmp_path / "someones"  # a folder of somebody else's files, one named like ours
    someones.mkdir()
    (someones / "notes.txt").write_text("mine")
    phone_model(someones / "model.keras")
    cases = [
        (tmp_path / "missing", "is not a folder"),
        (csv_path, "is not a folder"),
        (Path("/"), "is not a run folder of this project"),
        (someones, "is not a run folder of this project"),
        (fake_run(tmp_path / "runs" / "cifar10" / "c", "cifar10", phone_model),
         "is a run of the cifar10 lesson"),
        (fake_run(base / "unfinished", "phone_price", phone_model, metrics=False), "has not finished"),
        (fake_run(base / "empty_metrics", "phone_price", phone_model, metrics=""),
         "is empty or not valid JSON"),
        (fake_run(base / "list_metrics", "phone_price", phone_model, metrics="[1, 2]"),
         "does not hold a JSON object"),
        (fake_run(base / "no_model", "phone_price"), "model.keras does not exist"),
        (fake_run(base / "lambda", "phone_price", lambda_model),
         "holds Python code (a Lambda layer) and was not loaded"),
    ]
    (base / "corrupt").mkdir()
    fake_run(base / "corrupt", "phone_price")
    (base / "corrupt" / "model.keras").write_bytes(b"PK\x03\x04 half a zip")
    cases.append((base / "corrupt", "is not a readable Keras model"))
    small = fake_run(base / "other_shape", "phone_price")
    save_model(small / "model.keras", inputs := keras.Input((3,)), keras.layers.Dense(4)(inputs))
    cases.append((small, "not this lesson's model"))
    for run, fragment in cases:
        refused(phone_price.main, ["predict", "--run", run, "--input", csv_path], fragment)
    refused(phone_price.main,
            ["predict", "--run", good, "--input", csv_path, "--output", good / "predictions.csv"],
            "is inside the run folder", "never modified")
    refused(phone_price.main, ["predict", "--run", good, "--input", csv_path, "--output", tmp_path],
            "is a folder")
    (tmp_path / "binary.csv").write_bytes(b"\x00\x01\x02binary\xff" * 30)
    refused(phone_price.main, ["predict", "--run", good, "--input", tmp_path / "binary.csv"], "binary.csv")


def test_cifar10_predict_refusals_name_the_file(tmp_path, refused):
    def image_model(path):
        inputs = keras.Input((32, 32, 3))
        return save_model(path, inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))

    run = fake_run(tmp_path / "runs" / "cifar10" / "r", "cifar10", image_model)
    image = write_png(tmp_path / "cat.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    refused(cifar10.main, ["predict", "--run", run, tmp_path / "broken.jpg"],
            "broken.jpg is not a readable image")
    refused(cifar10.main, ["predict", "--run", run, tmp_path], "is not an image file")
    refused(cifar10.main, ["predict", "--run", run, tmp_path / "nope.png"], "nope.png is not an image file")
    phone_run = fake_run(tmp_path / "runs" / "phone_price" / "p", "phone_price", phone_model)
    refused(cifar10.main, ["predict", "--run", phone_run, image], "is a run of the phone_price lesson")
    unsafe = fake_run(tmp_path / "runs" / "cifar10" / "unsafe", "cifar10", lambda_model)
    refused(cifar10.main, ["predict", "--run", unsafe, image], "holds Python code")


def test_imdb_predict_refuses_a_binary_file_and_never_echoes_control_bytes(tmp_path, refused, capsys):
    run = fake_run(tmp_path / "runs" / "imdb" / "r", "imdb", review_model)
    (tmp_path / "reviews.bin").write_bytes(b"good film\n\x1b[2J\x00\x07 evil \xff\xfe")
    line = refused(imdb.main, ["predict", "--run", run, "--file", tmp_path / "reviews.bin"],
                   "is not a text file")
    assert "\x1b" not in line and "\x07" not in line
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(imdb.main, ["predict", "--run", str(run), "a good film\x1b[31m red", "bad"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "\x1b" not in out and "\\x1b[31m red" in out
    assert snapshot(run) == before
    refused(imdb.main,
            ["predict", "--run", fake_run(tmp_path / "runs" / "imdb" / "p", "imdb", phone_model), "ok"],
            "not this lesson's model")


def test_caption_refusals(tmp_path, refused):
    run = fake_run(tmp_path / "runs" / "captioning" / "r", "captioning", phone_model)
    (run / "vocabulary.json").write_text(json.dumps(["", "[UNK]", "<start>", "<end>", "a"]))
    image = write_png(tmp_path / "photo.png", 32)
    for value, fragment in (("0", "--beam-size must be at least 1, got 0"),
                            ("-3", "--beam-size must be at least 1"),
                            ("x", "--beam-size expects a whole number"),
                            ("1e9", "--beam-size expects a whole")):
        refused(captioning.main, ["caption", "--run", run, image, "--beam-size", value], fragment)
    (run / "vocabulary.json").write_text("{broken")
    refused(captioning.main, ["caption", "--run", run, image], "vocabulary.json is not a caption vocabulary")
    (run / "vocabulary.json").write_text(json.dumps(["", "[UNK]", "<start>", "<end>", "a"]))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    refused(captioning.main, ["caption", "--run", run, image, tmp_path / "bad.png"],
            "bad.png is not a readable image")
    refused(captioning.main, ["caption", "--run", fake_run(tmp_path / "runs" / "imdb" / "i", "imdb"), image],
            "is a run of the imdb lesson")
    refused(captioning.main, ["caption", "--run", run, image], "is not this lesson's model")


def test_load_model_refuses_a_file_only_unsafe_mode_would_load(tmp_path):
    """The file is a sound model that Keras loads with safe_mode=False: only safe mode stops it, and the
    project never turns safe mode off."""
    path = lambda_model(tmp_path / "m.keras")
    with pytest.raises(UserError, match="holds Python code"):
        trained.load_model(path)
    assert keras.saving.load_model(path, safe_mode=False).output_shape == (None, 4)


# ----------------------------------------------------------------------------------------- read-only folders
def test_a_read_only_runs_folder_is_one_sentence(tmp_path, refused, immutable):
    locked = immutable(tmp_path / "locked")
    refused(phone_price.main, ["--profile", "smoke", "--output-dir", locked, "--run-id", "r"], str(locked))


def test_a_read_only_cache_is_one_sentence(tmp_path, refused, immutable, monkeypatch):
    write_imdb_archive(tmp_path / "root", per_class=2)
    cache = immutable(tmp_path / "cache")
    monkeypatch.setenv("KERAS_TUTORIALS_CACHE", str(cache))
    refused(imdb.main, ["--profile", "smoke", "--data-dir", tmp_path / "root"], str(cache))


def test_a_read_only_output_folder_for_predictions_is_one_sentence(tmp_path, refused, immutable):
    run = fake_run(tmp_path / "runs" / "phone_price" / "r", "phone_price", phone_model)
    csv_path = write_phone_csv(tmp_path / "phones.csv", rows=5, labelled=False)
    locked = immutable(tmp_path / "locked")
    refused(phone_price.main, ["predict", "--run", run, "--input", csv_path, "--output", locked / "out.csv"],
            str(locked))


def test_predict_only_reads_the_run_so_a_read_only_run_works(tmp_path, immutable, capsys):
    run = tmp_path / "runs" / "phone_price" / "r"
    fake_run(run, "phone_price", phone_model)
    csv_path = write_phone_csv(tmp_path / "phones.csv", rows=3, labelled=False)
    immutable(run)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(phone_price.main, ["predict", "--run", str(run), "--input", str(csv_path)])
    assert exit_info.value.code == 0 and len(capsys.readouterr().out.splitlines()) == 4


# -------------------------------------------------------------------------------------------------- run_all
@pytest.mark.parametrize("argv,fragment", [
    (["--tasks", "phone_price,bogus"], "--tasks: unknown task(s) bogus"),
    (["--tasks", ","], "--tasks: unknown task(s) (none given)"),
    (["--backends", "theano"], "--backends: unknown backend(s) theano"),
    (["--tasks", "phone_price", "--epochs", "0"], "--epochs must be at least 1"),
    (["--tasks", "phone_price", "--crop-padding", "2"], "tasks.phone_price has no setting --crop-padding"),
    (["--tasks", "cifar10", "--model", "alexnet"], "invalid choice"),
])
def test_run_all_refuses_bad_values_before_starting_a_task(tmp_path, refused, argv, fragment):
    refused(run_all.main, ["--profile", "smoke", "--output-dir", tmp_path / "out", *argv], fragment)


def test_run_all_refuses_an_output_dir_that_is_a_file(tmp_path, refused):
    (tmp_path / "file").write_text("x")
    refused(run_all.main, ["--profile", "smoke", "--output-dir", tmp_path / "file"], "--output-dir",
            "is a file")


# -------------------------------------------------------------------------------------- end to end, for real
@pytest.mark.slow
def test_the_scripts_refuse_in_a_subprocess_too(tmp_path):
    """As a user types it, from another folder: nothing escapes runs/, a Lambda model is not loaded."""
    run = fake_run(tmp_path / "runs" / "phone_price" / "r", "phone_price", lambda_model)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    for argv, fragment in (
            ([str(ROOT / "tasks" / "phone_price.py"), "--profile", "smoke", "--run-id", "../../../escaped"],
             "--run-id must be a plain name"),
            (["-m", "tasks.phone_price", "predict", "--run", str(run)], "holds Python code")):
        before = snapshot(tmp_path)
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path,
                                env=env, timeout=300)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1 and fragment in errors[0], result.stderr[-2000:]
        assert "Traceback" not in result.stderr and snapshot(tmp_path) == before

