import numpy as np
import pytest

from datasets import mobile_price
from common.errors import UserError
from conftest import PHONE_FEATURES, write_phone_csv


def test_reads_features_and_labels(tmp_path):
    path = write_phone_csv(tmp_path / "train.csv", rows=40)
    frame, x, y = mobile_price.read_csv(path, PHONE_FEATURES, "price_range", num_classes=4)
    assert x.shape == (40, 20) and x.dtype == np.float32
    assert set(np.unique(y)) == {0, 1, 2, 3}


def test_crlf_file_with_id_reads_like_lf(tmp_path):
    path = write_phone_csv(tmp_path / "test.csv", rows=10, labelled=False, with_id=True)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    frame, x, y = mobile_price.read_csv(path, PHONE_FEATURES)
    assert x.shape == (10, 20) and y is None and list(frame["id"]) == list(range(1, 11))


def corrupt(path, column, row, value):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = value
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("setup,fragment", [
    (lambda p: p.unlink(), "does not exist"),
    (lambda p: p.write_text(""), "not a readable CSV"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00bin\x00ary\xff" * 20), "not a readable CSV"),
    (lambda p: p.write_text(p.read_text().replace("ram,", "memory,", 1)), "lacks the column(s) ram"),
    (lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"), "header but no rows"),
    (lambda p: corrupt(p, "ram", 4, ""), "column ram has an empty cell in data row 5"),
    (lambda p: corrupt(p, "battery_power", 2, "NaN"), "column battery_power has an empty cell in data row 3"),
    (lambda p: corrupt(p, "px_width", 0, "wide"), "column px_width has 'wide' in data row 1"),
    (lambda p: corrupt(p, "price_range", 7, "4"), "expected an integer class from 0 to 3"),
    (lambda p: corrupt(p, "price_range", 7, "1.5"), "expected an integer class from 0 to 3"),
])
def test_every_bad_input_gives_one_clear_sentence(tmp_path, setup, fragment):
    path = write_phone_csv(tmp_path / "train.csv", rows=20)
    setup(path)
    with pytest.raises(UserError) as error:
        mobile_price.read_csv(path, PHONE_FEATURES, "price_range", num_classes=4)
    assert fragment in str(error.value)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    x = np.arange(400, dtype="float32").reshape(-1, 1)
    y = np.repeat(np.arange(4), 100)
    parts = mobile_price.split_stratified(x, y, val_fraction=0.15, test_fraction=0.2, seed=0)
    x_train, y_train, x_val, y_val, x_test, y_test = parts
    assert (len(y_train), len(y_val), len(y_test)) == (260, 60, 80)
    assert list(np.bincount(y_test)) == [20] * 4 and list(np.bincount(y_val)) == [15] * 4
    assert not set(x_test[:, 0]) & set(x_train[:, 0])
    again = mobile_price.split_stratified(x, y, 0.15, 0.2, seed=0)
    np.testing.assert_array_equal(again[4], x_test)


def test_folds_cover_every_row_once():
    y = np.repeat(np.arange(4), 10)
    held_out = np.concatenate([test for _, test in mobile_price.stratified_folds(y, 5, seed=0)])
    assert sorted(held_out) == list(range(40))
    with pytest.raises(UserError, match="--cv must be between 2"):
        mobile_price.stratified_folds(y, 11, seed=0)
