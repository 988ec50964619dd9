"""`--source tfds` (common/tfds_data.py) on TFDS's own mocks: nothing is downloaded.

`tfds.testing.mock_data` replaces what a prepared data set would return: random examples following the
data set's features (shapes, dtypes), or a given `as_dataset_fn` whose labels can be read off each example,
so label alignment through the lesson's pipeline is checked, not assumed."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

tfds = pytest.importorskip("tensorflow_datasets")

from common import tfds_data  # noqa: E402
from common.config import build_config  # noqa: E402
from datasets import cifar10 as cifar10_data  # noqa: E402
from datasets import imdb as imdb_data  # noqa: E402
from tasks import cifar10, imdb  # noqa: E402

CIFAR_SIZES = {"train": 4100, "test": 60}  # 4,000 held out (lossless), 100 left to train and validate on
IMDB_SIZES = {"train": 40, "test": 20, "unsupervised": 30}


def _split(split):
    return str(split).split("[")[0]


def cifar_as_dataset(self, split, **kwargs):
    """Image i of a split: every pixel = 20 * its label (i % 10), yielded in reverse `id` order, so the loader
    must sort by id and keep labels with their images."""
    name = _split(split)
    count = CIFAR_SIZES[name]
    index = np.arange(count)[::-1]
    labels = (index % 10).astype("int64")
    images = np.broadcast_to((labels * 20).astype("uint8")[:, None, None, None], (count, 32, 32, 3)).copy()
    ids = np.array([f"{name}_{i:05d}" for i in index])
    return tf.data.Dataset.from_tensor_slices({"id": ids, "image": images, "label": labels})


def imdb_as_dataset(self, split, **kwargs):
    """Review i: its label (i % 2) spelled as a word in it; the unsupervised split's label is -1."""
    name = _split(split)
    labels = (np.arange(IMDB_SIZES[name]) % 2 if name != "unsupervised"
              else -np.ones(IMDB_SIZES[name], "int64"))
    texts = [f"{name} review {i} {['awful', 'great'][label] if label >= 0 else 'unknown'}"
             for i, label in enumerate(labels)]
    return tf.data.Dataset.from_tensor_slices({"text": texts, "label": labels.astype("int64")})


def test_random_mock_cifar10_gives_the_loaders_arrays(monkeypatch):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=12):
        arrays = tfds_data.cifar10_arrays(cifar10_data.CLASS_NAMES)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
        assert y.shape == (12,) and y.dtype == np.int64 and ((0 <= y) & (y < 10)).all()
    assert list(arrays["class_names"]) == cifar10_data.CLASS_NAMES and arrays["source"] == "original"


def test_cifar10_lesson_data_keeps_labels_and_holds_out_the_first_4000(tmp_path):
    config = build_config(cifar10.Cifar10Config, overrides=dict(
        source="tfds", val_images=20, lossless_holdout=True, output_dir=str(tmp_path / "runs")))
    with tfds.testing.mock_data(as_dataset_fn=cifar_as_dataset):
        data = cifar10_data.load(config)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (80, 20, 60)
    assert set(data.held_out) == {"lossless"}  # PNG-decoded originals: no JPEG copy to compare with
    held_x, held_y = data.held_out["lossless"]
    assert len(held_y) == 4000 and (held_y == np.arange(4000) % 10).all()  # original order restored
    for x, y in [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test),
                 (held_x, held_y)]:
        assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
        assert (x[:, 0, 0, 0] == y * 20).all() and (x.reshape(len(x), -1).std(axis=1) == 0).all()
    assert np.bincount(data.y_val, minlength=10).tolist() == [2] * 10  # stratified validation
    images, labels = next(iter(cifar10.make_datasets(config, data).train))
    assert images.shape[1:] == (32, 32, 3) and labels.shape[0] == images.shape[0]


def test_cifar10_smoke_run_trains_through_source_tfds(tmp_path, cli):
    runs = tmp_path / "runs"
    with tfds.testing.mock_data(as_dataset_fn=cifar_as_dataset):
        code, out, err = cli(cifar10.main, ["--profile", "smoke", "--source", "tfds", "--no-lossless-holdout",
                                            "--no-export", "--epochs", "1", "--output-dir", str(runs),
                                            "--run-id", "t"])
    assert code == 0, err
    run = runs / "cifar10" / "t"
    assert json.loads((run / "config.json").read_text())["source"] == "tfds"
    assert (run / "metrics.json").is_file() and "TensorFlow Datasets cifar10" in out


def test_imdb_lesson_data_carves_validation_and_reads_unsupervised(tmp_path):
    config = build_config(imdb.ImdbConfig, overrides=dict(
        source="tfds", val_fraction=0.25, batch_size=8, unlabelled=12, output_dir=str(tmp_path / "runs")))
    with tfds.testing.mock_data(as_dataset_fn=imdb_as_dataset):
        data = imdb_data.load(config)
        unlabelled = imdb_data.load_unlabelled(config, data.source)
    assert "imdb_reviews" in data.source and data.class_names == list(imdb_data.CLASS_NAMES)

    def pairs(dataset):
        return [(t.decode(), int(y)) for texts, labels in dataset
                for t, y in zip(texts.numpy(), labels.numpy())]

    train, val, test = pairs(data.train), pairs(data.val), pairs(data.test)
    assert (len(train), len(val), len(test)) == (30, 10, 20)
    assert not {t for t, _ in train} & {t for t, _ in val}  # validation carved from train, disjoint
    for text_, label in train + val + test:
        assert text_.split()[-1] == ["awful", "great"][label]
        assert text_.startswith("train" if (text_, label) not in test else "test")
    texts = [t.decode() for batch in unlabelled for t in batch.numpy()]
    assert len(texts) == len(set(texts)) == 12 and all(t.startswith("unsupervised") for t in texts)

    # The same seed gives the same carving and the same unlabelled choice.
    with tfds.testing.mock_data(as_dataset_fn=imdb_as_dataset):
        again = imdb_data.load(config)
    assert pairs(again.val) == val


def test_unprepared_data_is_refused_in_one_sentence_writing_nothing(tmp_path, cli, monkeypatch):
    empty, runs = tmp_path / "tfds", tmp_path / "runs"
    empty.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))  # honoured: the message names it
    code, out, err = cli(imdb.main, ["--profile", "smoke", "--source", "tfds", "--output-dir", str(runs)])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    message = err.strip()
    assert "imdb_reviews is not prepared in " + str(empty) in message
    assert "tfds.builder('imdb_reviews'" in message and "download_and_prepare()" in message
    assert message.count(". ") == 0 and "Traceback" not in err
    assert not runs.exists()
    code, _, err = cli(cifar10.main, ["--profile", "smoke", "--source", "tfds", "--data-dir", str(empty),
                                      "--output-dir", str(runs)])
    assert code == 2 and "cifar10 is not prepared in " + str(empty) in err and not runs.exists()


@pytest.mark.slow
def test_tfds_is_imported_only_for_source_tfds():
    import subprocess
    import sys

    code = ("import sys; import tasks.cifar10, tasks.imdb, datasets.cifar10, common.tfds_data; "
            "sys.exit('tensorflow_datasets' in sys.modules)")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=repo)
    assert done.returncode == 0, done.stderr[-2000:]
