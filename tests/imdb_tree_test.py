"""The aclImdb tree is checked before a lesson makes its run folder, and an archive's tree before it replaces
the cached one (issue 39)."""

import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from common.errors import UserError
from conftest import write_imdb_archive
from datasets import imdb as imdb_data
from tasks import imdb


def snapshot(root):
    """Every file and folder under `root`: relative path -> (kind, mode, content hash)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
            state[str(path.relative_to(root))] = (path.is_dir(), stat.S_IMODE(path.lstat().st_mode), digest)
    return state


def write_tree(root, per_class=3):
    """`root/imdb/aclImdb/` extracted in place: train/test x neg/pos, a few reviews each."""
    tree = root / "imdb" / "aclImdb"
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            (tree / split / label).mkdir(parents=True)
            for i in range(per_class):
                (tree / split / label / f"{i}_1.txt").write_text("a fine film")
    return tree


def test_an_archive_without_acl_imdb_keeps_the_good_cache(tmp_path, cli):
    good = tmp_path / "good"
    write_imdb_archive(good, per_class=2)
    tree = imdb_data.find_reviews(good)  # extracted once into the cache
    cached = snapshot(tree.parent)
    bad = tmp_path / "bad" / "imdb"
    bad.mkdir(parents=True)
    (tmp_path / "other.txt").write_text("not reviews")
    with tarfile.open(bad / "aclImdb.tar.gz", "w:gz") as tar:  # well formed, but something else
        tar.add(tmp_path / "other.txt", arcname="other/other.txt")
    code, out, err = cli(imdb.main, ["--profile", "smoke", "--data-dir", str(bad.parent),
                                     "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "does not contain an aclImdb/ folder" in err and "Traceback" not in err
    assert snapshot(tree.parent) == cached and not (tmp_path / "runs").exists()
    assert [p.name for p in tree.parent.parent.iterdir() if ".partial" in p.name] == []
    assert imdb_data.find_reviews(good) == tree


def test_an_archive_with_an_incomplete_tree_keeps_the_good_cache(tmp_path):
    good = tmp_path / "good"
    write_imdb_archive(good, per_class=2)
    tree = imdb_data.find_reviews(good)
    cached = snapshot(tree.parent)
    partial = tmp_path / "partial" / "aclImdb" / "train" / "pos"
    partial.mkdir(parents=True)
    (partial / "1_9.txt").write_text("great")
    archive = tmp_path / "bad" / "imdb" / "aclImdb.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "partial" / "aclImdb", arcname="aclImdb")
    with pytest.raises(UserError, match=r"aclImdb\.tar\.gz:aclImdb/train/neg is missing") as error:
        imdb_data.find_reviews(tmp_path / "bad")
    assert "partial-" not in str(error.value)  # names the archive, not the temporary folder
    assert snapshot(tree.parent) == cached


def test_the_extracted_cache_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_imdb_archive(tmp_path / "data", per_class=2)
        tree = imdb_data.find_reviews(tmp_path / "data")
    finally:
        os.umask(old)
    assert stat.S_IMODE(tree.parent.stat().st_mode) == 0o755  # mkdtemp alone: 0700


def test_a_dangling_link_in_the_tree_is_named_before_the_run_folder_is_made(tmp_path, cli):
    tree = write_tree(tmp_path / "root")
    (tree / "train" / "pos" / "9_9.txt").symlink_to(tmp_path / "gone.txt")
    code, _, err = cli(imdb.main, ["--profile", "smoke", "--data-dir", str(tmp_path / "root"),
                                   "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "train/pos/9_9.txt is a broken link" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_file_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    tree = write_tree(tmp_path / "root")
    unreadable = tree / "test" / "neg" / "1_1.txt"
    real_open = os.open

    def refusing_open(path, *args, **kwargs):  # (chmod 000 does not stop root)
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(UserError, match=r"test/neg/1_1\.txt cannot be read \(Permission denied\)"):
        imdb_data.find_reviews(tmp_path / "root")


def test_a_dangling_link_in_an_archive_keeps_the_good_cache(tmp_path):
    good = tmp_path / "good"
    write_imdb_archive(good, per_class=2)
    tree = imdb_data.find_reviews(good)
    cached = snapshot(tree.parent)
    source = write_tree(tmp_path / "src")
    (source / "test" / "pos" / "7_7.txt").symlink_to("missing.txt")
    archive = tmp_path / "bad" / "imdb" / "aclImdb.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="aclImdb")
    with pytest.raises(UserError, match=r"aclImdb/test/pos/7_7\.txt is a broken link"):
        imdb_data.find_reviews(tmp_path / "bad")
    assert snapshot(tree.parent) == cached


def test_a_dangling_link_among_the_unlabelled_reviews_is_named(tmp_path):
    tree = write_tree(tmp_path / "root")
    (tree / "train" / "unsup").mkdir()
    (tree / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (tree / "train" / "unsup" / "1_0.txt").symlink_to(tmp_path / "gone.txt")
    with pytest.raises(UserError, match=r"unsup/1_0\.txt is a broken link"):
        imdb_data.unlabelled_reviews(tree, 5)
