import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from common import images
from datasets import cifar10
from common.data_root import cache_root
from common.errors import UserError
from conftest import CIFAR_CLASSES, write_image_tree


# ------------------------------------------------------------------------------------------------- loading
def test_folder_loader_reads_pixels_and_labels_exactly(tmp_path):
    x, y = write_image_tree(tmp_path / "train", per_class=3, class_names=["a", "b", "c"])
    loaded, labels, names = images.load_image_folder(tmp_path / "train", (32, 32))
    assert names == ["a", "b", "c"]
    assert loaded.dtype == np.uint8 and loaded.shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(loaded, x)  # PNG is lossless: the very same pixels


def test_class_order_follows_the_given_names(tmp_path):
    write_image_tree(tmp_path / "train", per_class=2, class_names=["a", "b"])
    _, labels, names = images.load_image_folder(tmp_path / "train", (32, 32), class_names=["b", "a"])
    assert names == ["b", "a"]
    assert list(labels) == [0, 0, 1, 1]


def test_empty_class_folder_is_a_clear_error(tmp_path):
    write_image_tree(tmp_path / "train", per_class=2, class_names=["a", "b"])
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(UserError, match=r"train/c holds no images"):
        images.load_image_folder(tmp_path / "train", (32, 32))


def test_missing_class_folder_is_a_clear_error(tmp_path):
    write_image_tree(tmp_path / "train", per_class=2, class_names=["a", "b"])
    with pytest.raises(UserError, match=r"train/z is missing"):
        images.load_image_folder(tmp_path / "train", (32, 32), class_names=["a", "b", "z"])


def test_corrupt_image_is_named(tmp_path):
    write_image_tree(tmp_path / "train", per_class=2, class_names=["a", "b"])
    (tmp_path / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(UserError, match=r"broken\.jpg is not a readable image"):
        images.load_image_folder(tmp_path / "train", (32, 32))


def test_wrong_size_image_is_named(tmp_path):
    write_image_tree(tmp_path / "train", per_class=2, class_names=["a", "b"])
    write_image_tree(tmp_path / "big", per_class=1, class_names=["a"], size=40)
    (tmp_path / "big" / "a" / "0000.png").rename(tmp_path / "train" / "a" / "large.png")
    with pytest.raises(UserError, match=r"large\.png is 40x40 pixels, expected 32x32"):
        images.load_image_folder(tmp_path / "train", (32, 32))


def test_cifar_loader_splits_and_holds_out_a_stratified_validation_set(cifar_root):
    data = cifar10.read(cifar_root, val_images=50, split_seed=3)
    assert data.class_names == CIFAR_CLASSES
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (350, 50, 100)
    assert np.bincount(data.y_val).tolist() == [5] * 10
    assert data.image_shape == (32, 32, 3)
    assert data.mean.shape == (3,) and np.all(data.variance > 0)
    again = cifar10.read(cifar_root, val_images=50, split_seed=3)
    np.testing.assert_array_equal(again.x_val, data.x_val)


def test_cifar_archive_is_extracted_once_and_its_arrays_cached(tmp_path, cifar_root):
    root = tmp_path / "archive_root"
    (root / "cifar10").mkdir(parents=True)
    with tarfile.open(root / "cifar10" / cifar10.ARCHIVE, "w") as tar:
        for split in ("train", "test"):
            tar.add(cifar_root / "cifar10" / split, arcname=split)
    first = cifar10.read(root, val_images=50)
    assert (cache_root() / "cifar10" / "arrays.npz").is_file(), "the decoded arrays were not cached"
    second = cifar10.read(root, val_images=50)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert "JPEG" in first.note


def test_cifar_python_batches_are_read(tmp_path):
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
        labels = [i % 10 for i in range(20)]
        flat = x.transpose(0, 3, 1, 2).reshape(20, -1)  # the official layout: all red, then green, then blue
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": flat, b"labels": labels}, handle)
        expected.append(x)
    data = cifar10.read(tmp_path / "data", val_images=10)
    np.testing.assert_array_equal(data.x_test, expected[-1])
    assert len(data.y_train) + len(data.y_val) == 100


def test_missing_cifar_is_a_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError, match=r"cifar10/ not found"):
        cifar10.read(tmp_path / "data")


# -------------------------------------------------------------------------------------------- augmentation
def _seed(value):
    return tf.constant([value, 0], dtype=tf.int32)


def test_augmentation_keeps_shapes_and_each_image_with_its_label():
    # Constant images whose value is their label: any crop, flip or padding by reflection keeps the value,
    # so an image that moved to another row of the batch would show up as a wrong value.
    labels = np.arange(16)
    batch = np.ones((16, 32, 32, 3), "float32") * labels[:, None, None, None] * 10
    out = images.augment_batch(tf.constant(batch), _seed(1), crop_padding=4, flip=True).numpy()
    assert out.shape == batch.shape
    np.testing.assert_array_equal(out.reshape(16, -1).min(axis=1), labels * 10)
    np.testing.assert_array_equal(out.reshape(16, -1).max(axis=1), labels * 10)


def test_random_crop_moves_images_by_at_most_the_padding():
    batch = np.zeros((64, 32, 32, 1), "float32")
    batch[:, 16, 16, 0] = 1.0  # one bright pixel in the middle
    out = images.augment_batch(tf.constant(batch), _seed(2), crop_padding=4, flip=False).numpy()
    positions = np.array([np.unravel_index(np.argmax(o[..., 0]), (32, 32)) for o in out])
    assert np.all(np.abs(positions - 16) <= 4)
    assert len({tuple(p) for p in positions}) > 10  # different shifts for different images


def test_flip_mirrors_about_half_the_images():
    batch = np.zeros((200, 8, 8, 1), "float32")
    batch[:, :, 0, 0] = 1.0  # a bright left column
    out = images.augment_batch(tf.constant(batch), _seed(3), crop_padding=0, flip=True).numpy()
    flipped = out[:, :, -1, 0].max(axis=1) == 1.0
    assert 70 < flipped.sum() < 130
    assert np.all(out[flipped, :, 0, 0] == 0)


def test_cutout_blanks_one_square_of_the_given_size_at_most():
    batch = np.ones((50, 32, 32, 3), "float32")
    out = images.augment_batch(tf.constant(batch), _seed(4), crop_padding=0, flip=False, cutout=8).numpy()
    blanked = (out[..., 0] == 0).reshape(50, -1).sum(axis=1)
    assert np.all(blanked <= 64) and np.all(blanked > 0)
    assert (blanked == 64).mean() > 0.3  # squares fully inside the image


def test_augmentation_is_the_same_for_the_same_seed():
    batch = tf.random.stateless_uniform((8, 32, 32, 3), (0, 1)) * 255
    a = images.augment_batch(batch, _seed(5), cutout=8).numpy()
    b = images.augment_batch(batch, _seed(5), cutout=8).numpy()
    c = images.augment_batch(batch, _seed(6), cutout=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mixup_blends_images_and_labels_with_the_same_weight():
    values = np.arange(8, dtype="float32")
    batch = np.ones((8, 4, 4, 3), "float32") * values[:, None, None, None]
    one_hot = np.eye(8, dtype="float32")
    mixed, labels = images.mixup_batch(tf.constant(batch), tf.constant(one_hot), _seed(7), alpha=0.4)
    mixed, labels = mixed.numpy(), labels.numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(labels.argmax(axis=1) == np.arange(8))  # each example keeps the larger share
    weight = labels[np.arange(8), np.arange(8)]
    np.testing.assert_allclose(mixed[:, 0, 0, 0], weight * values + (1 - weight) * values[::-1], rtol=1e-5)


def test_training_pipeline_reshuffles_each_epoch_and_repeats_across_runs():
    x = np.arange(64, dtype="uint8").reshape(64, 1, 1, 1).repeat(4, axis=1).repeat(4, axis=2)
    y = np.arange(64) % 4

    def epochs(seed):
        dataset = images.image_pipeline((x, y), 16, training=images.Augmentation(seed=seed, flip=True))
        return [np.concatenate([b[0].numpy()[:, 0, 0, 0] for b in dataset]) for _ in range(2)]

    first, second = epochs(1)
    assert sorted(first) == list(range(64)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epochs(1)[0], first)
    for batch_x, batch_y in images.image_pipeline((x, y), 16, training=images.Augmentation(seed=1)):
        np.testing.assert_array_equal(batch_x.numpy()[:, 0, 0, 0].astype(int) % 4, batch_y.numpy())
