import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from common.data_root import extract_once, fill_once, find_dataset
from common.errors import UserError


def make_root(path, name="mobile_price"):
    (path / name).mkdir(parents=True)
    (path / name / "train.csv").write_text("x\n")
    return path


def test_order_is_flag_then_env_then_keras_cache_then_fallback(tmp_path, monkeypatch):
    flag, env, cache = make_root(tmp_path / "flag"), make_root(tmp_path / "env"), tmp_path / "keras"
    make_root(cache / "datasets")
    monkeypatch.setenv("KERAS_HOME", str(cache))
    fallback = lambda: tmp_path / "embedded"  # noqa: E731
    assert find_dataset("mobile_price", fallback=fallback) == cache / "datasets" / "mobile_price"
    monkeypatch.setenv("KERAS_TUTORIALS_DATA", str(env))
    assert find_dataset("mobile_price", fallback=fallback) == env / "mobile_price"
    assert find_dataset("mobile_price", str(flag), fallback=fallback) == flag / "mobile_price"


def test_env_root_without_the_data_set_falls_through_to_the_fallback(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("KERAS_TUTORIALS_DATA", str(tmp_path / "env"))
    assert find_dataset("mobile_price", fallback=lambda: tmp_path / "embedded") == tmp_path / "embedded"


def test_missing_everywhere_names_every_place_searched(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("KERAS_TUTORIALS_DATA", str(tmp_path / "env"))
    with pytest.raises(UserError) as error:
        find_dataset("imdb")
    assert str(tmp_path / "env" / "imdb") in str(error.value) and "--data-dir" in str(error.value)


def test_explicit_data_dir_is_strict(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        find_dataset("mobile_price", tmp_path / "nope", fallback=lambda: tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not found"):
        find_dataset("mobile_price", tmp_path / "empty", fallback=lambda: tmp_path)


def test_env_pointing_nowhere_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TUTORIALS_DATA", str(tmp_path / "typo"))
    with pytest.raises(UserError, match="KERAS_TUTORIALS_DATA"):
        find_dataset("mobile_price")


def test_required_files_are_checked(tmp_path):
    make_root(tmp_path)
    with pytest.raises(UserError, match="missing test.csv"):
        find_dataset("mobile_price", tmp_path, required=("train.csv", "test.csv"))


def test_extract_once_unpacks_into_the_cache_and_reuses_it(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("hello")
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "src" / "a.txt", arcname="inner/a.txt")
    first = extract_once(archive, "demo")
    assert (first / "inner" / "a.txt").read_text() == "hello"
    (first / "inner" / "a.txt").write_text("changed")  # a second call must not extract again
    assert (extract_once(archive, "demo") / "inner" / "a.txt").read_text() == "changed"


def test_extract_once_checks_sha256sums(tmp_path):
    (tmp_path / "a.txt").write_text("data")
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "a.txt", arcname="a.txt")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{good}  data.tar\n")
    assert (extract_once(archive, "checked") / "a.txt").is_file()
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  data.tar\n")
    os.utime(archive, (1, 1))  # a changed archive is extracted (and checked) again
    with pytest.raises(UserError, match="does not match its checksum"):
        extract_once(archive, "checked")


def test_extract_once_reports_a_broken_archive(tmp_path):
    archive = tmp_path / "broken.tar"
    archive.write_bytes(b"this is not a tar file at all" * 50)
    with pytest.raises(UserError, match="could not extract"):
        extract_once(archive, "broken")


def test_a_bad_archive_never_costs_the_good_cache(tmp_path):
    """A truncated copy of an archive that was extracted before leaves the extracted cache untouched."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("good")
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "a.txt", arcname="inner/a.txt")
    good = extract_once(archive, "kept")
    before = sorted(p.relative_to(good) for p in good.rglob("*"))
    archive.write_bytes(archive.read_bytes()[:40])  # truncated: a new size, so it is extracted again
    with pytest.raises(UserError, match=r"could not extract .* \(the cache was left as it was\)"):
        extract_once(archive, "kept")
    assert (good / "inner" / "a.txt").read_text() == "good"
    assert sorted(p.relative_to(good) for p in good.rglob("*")) == before
    assert [p.name for p in good.parent.iterdir() if ".partial" in p.name] == []  # no leftovers


def test_a_failed_fill_leaves_no_folder_and_a_later_fill_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "cache" / "thing"

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        fill_once(target, "v1", broken)
    assert not target.exists() and list(target.parent.iterdir()) == [target.parent / ".thing.lock"]
    fill_once(target, "v1", lambda folder: (folder / "one.txt").write_text("1"))
    assert fill_once(target, "v1", broken) == target  # already built with this stamp: not rebuilt
    fill_once(target, "v2", lambda folder: (folder / "two.txt").write_text("2"))
    assert sorted(p.name for p in target.iterdir()) == [".extracted", "two.txt"]


def test_a_stale_partial_folder_of_a_killed_extraction_is_cleaned_up(tmp_path):
    target = tmp_path / "cache" / "thing"
    (tmp_path / "cache" / ".thing.partial-abc").mkdir(parents=True)
    fill_once(target, "v1", lambda folder: (folder / "one.txt").write_text("1"))
    assert sorted(p.name for p in target.parent.iterdir()) == [".thing.lock", "thing"]


def test_the_files_a_lesson_reads_directly_are_checked_against_sha256sums_every_time(tmp_path, cli):
    """The phone-price CSVs are read as they are (no cache): a copy that differs from its SHA256SUMS line
    is refused before anything trains, on every run, and the files that ship in datasets/data/ match
    theirs."""
    from conftest import write_phone_csv
    from datasets import mobile_price
    from tasks import phone_price

    shipped = Path(mobile_price.EMBEDDED_DATA) / "mobile_price"
    assert find_dataset("mobile_price", shipped.parent, required=("train.csv", "test.csv")) == shipped
    folder = tmp_path / "root" / "mobile_price"
    write_phone_csv(folder / "train.csv")
    good = hashlib.sha256((folder / "train.csv").read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{good}  train.csv\n")
    assert find_dataset("mobile_price", tmp_path / "root", required=("train.csv",)) == folder
    with open(folder / "train.csv", "a") as handle:
        # one row added: same name, new bytes
        handle.write("1,0,1.0,0,1,0,1,0.1,100,1,1,1,1,1,1,1,1,0,0,0,3\n")
    with pytest.raises(UserError, match="train.csv does not match its checksum"):
        find_dataset("mobile_price", tmp_path / "root", required=("train.csv",))
    code, _, err = cli(phone_price.main, ["--profile", "smoke", "--data-dir", str(tmp_path / "root"),
                                          "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and "does not match its checksum" in err and not (tmp_path / "runs").exists()


def test_a_reused_cache_is_not_rehashed_but_a_changed_archive_is(tmp_path, monkeypatch):
    """The decision documented in common/data_root.py: an archive is hashed when it is unpacked; its cache is
    reused while path, size and mtime stay, and any change of those unpacks and checks it again."""
    from common import data_root

    (tmp_path / "a.txt").write_text("data")
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "a.txt", arcname="a.txt")
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  data.tar\n")
    checked = []
    real = data_root.verify_checksum
    monkeypatch.setattr(data_root, "verify_checksum", lambda path: checked.append(path) or real(path))
    extract_once(archive, "reused")
    extract_once(archive, "reused")
    assert checked == [archive]
    os.utime(archive, (2, 2))
    extract_once(archive, "reused")
    assert checked == [archive, archive]


def test_a_tree_that_fails_its_check_never_replaces_the_cache_and_the_cache_follows_the_umask(tmp_path):
    """extract_once's `check` sees the unpacked tree before the swap; the cache folder gets the umask's mode
    (mkdtemp alone gives 0700)."""
    import stat

    (tmp_path / "a.txt").write_text("good")
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "a.txt", arcname="inner/a.txt")

    def needs_inner(folder):
        if not (folder / "inner").is_dir():
            raise UserError("no inner/ folder")

    old = os.umask(0o022)
    try:
        good = extract_once(archive, "checked-tree", check=needs_inner)
    finally:
        os.umask(old)
    assert stat.S_IMODE(good.stat().st_mode) == 0o755
    with tarfile.open(archive, "w") as tar:  # well formed, but something else
        tar.add(tmp_path / "a.txt", arcname="other/a.txt")
    os.utime(archive, (2, 2))  # a changed archive (the same size: tar rounds up to blocks): extracted again
    with pytest.raises(UserError, match="no inner/ folder"):
        extract_once(archive, "checked-tree", check=needs_inner)
    assert sorted(p.relative_to(good).as_posix() for p in good.rglob("*")) == [".extracted", "inner",
                                                                                 "inner/a.txt"]
    assert [p.name for p in good.parent.iterdir() if ".partial" in p.name] == []
