"""Online downloads go through keras.utils.get_file with the published SHA-256: a corrupted or altered file is
refused in one sentence (exit 2), a matching one is used. A file:// URL stands in for the server."""

import hashlib
import shutil

import pytest

from common import data_root
from common.errors import UserError
from conftest import write_imdb_archive
from datasets import imdb as imdb_data
from tasks import imdb


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served_archive(tmp_path):
    """A small aclImdb archive under the official file name, as a server would hand it out."""
    built = write_imdb_archive(tmp_path / "build", per_class=4)
    served = tmp_path / "server" / "aclImdb_v1.tar.gz"
    served.parent.mkdir()
    shutil.copy(built, served)
    return served


def test_download_checks_the_published_hash(tmp_path):
    served = tmp_path / "server" / "file.bin"
    served.parent.mkdir()
    served.write_bytes(b"the published bytes")
    url = served.as_uri()
    cached = data_root.keras_cache_root() / "demo" / "file.bin"
    with pytest.raises(UserError, match="does not match its published SHA-256") as error:
        data_root.download(url, "0" * 64, "demo")
    assert str(error.value).count(". ") == 0 and not cached.exists()  # one sentence; the bad copy deleted
    assert data_root.download(url, sha256(served), "demo") == cached.parent
    assert cached.read_bytes() == b"the published bytes"


def test_offline_download_is_not_found_not_an_error(tmp_path):
    assert data_root.download((tmp_path / "absent.bin").as_uri(), "0" * 64, "demo") is None


def test_imdb_download_with_another_hash_exits_2_in_one_sentence(tmp_path, served_archive, cli, monkeypatch):
    # ARCHIVE_SHA256 stays the real one
    monkeypatch.setattr(imdb_data, "ARCHIVE_URL", served_archive.as_uri())
    code, _, err = cli(imdb.main, ["--profile", "smoke", "--output-dir", str(tmp_path / "runs")])
    assert code == 2 and "does not match its published SHA-256" in err and "Traceback" not in err
    assert not (data_root.keras_cache_root() / "imdb" / "aclImdb_v1.tar.gz").exists()


def test_imdb_download_with_the_published_hash_loads(served_archive, monkeypatch):
    monkeypatch.setattr(imdb_data, "ARCHIVE_URL", served_archive.as_uri())
    monkeypatch.setattr(imdb_data, "ARCHIVE_SHA256", sha256(served_archive))
    root = imdb_data.find_reviews()
    assert root.name == "aclImdb" and len(list((root / "train" / "pos").glob("*.txt"))) == 4
    assert (data_root.keras_cache_root() / "imdb" / "aclImdb_v1.tar.gz").is_file()


def test_a_short_official_archive_in_the_keras_cache_is_refused(served_archive):
    cached = data_root.keras_cache_root() / "imdb" / "aclImdb_v1.tar.gz"  # e.g. a download killed midway
    cached.parent.mkdir(parents=True)
    cached.write_bytes(served_archive.read_bytes()[:100])
    with pytest.raises(UserError, match="does not match its published SHA-256"):
        imdb_data.find_reviews()
