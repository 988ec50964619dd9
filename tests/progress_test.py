"""The long steps that are not training draw a Keras progress bar (issue 21.4)."""

import tarfile

from common import data_root
from common.progress import progress


def test_progress_yields_every_item_lazily_and_draws_a_bar(capsys):
    seen = []

    def numbers():
        for number in range(5):
            seen.append(number)  # consumed one at a time, not read ahead
            yield number

    consumed = []
    for item in progress(numbers(), "counting"):
        consumed.append(item)
        assert seen == consumed
    out = capsys.readouterr().out
    assert consumed == [0, 1, 2, 3, 4]
    assert "counting:" in out and "5" in out.splitlines()[-1]


def test_progress_with_a_length_shows_the_target(capsys):
    assert list(progress(["a", "b", "c"], "three", unit="file")) == ["a", "b", "c"]
    assert "3/3" in capsys.readouterr().out


def test_archive_extraction_shows_its_progress_and_extracts_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_TUTORIALS_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source"
    (source / "pos").mkdir(parents=True)
    for index in range(4):
        (source / "pos" / f"{index}.txt").write_text(f"review {index}")
    archive = tmp_path / "reviews.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="reviews")
    folder = data_root.extract_once(archive, "reviews")
    assert sorted(p.name for p in (folder / "reviews" / "pos").iterdir()) == [f"{i}.txt" for i in range(4)]
    assert (folder / "reviews" / "pos" / "3.txt").read_text() == "review 3"
    assert "extracting reviews.tar.gz:" in capsys.readouterr().out
