"""One home per data set (datasets/__init__.py): every module has `load(config)` returning its one `Splits`,
with `train`, `val`, `test`, `source` and `note`, and the tuner loads each lesson's data with that same
`load`."""

import dataclasses
import importlib
from pathlib import Path

import pytest

from common.config import build_config
from tasks.captioning import CaptioningConfig
from tuning import tasks

ROOT = Path(__file__).resolve().parents[1]
LOADERS = ["mobile_price", "cifar10", "imdb", "flickr8k"]  # the modules with a `load`; shapes is drawn, then
# read by flickr8k's


def test_every_data_set_module_with_splits_has_load_and_the_contracts_fields():
    modules = sorted(p.stem for p in (ROOT / "datasets").glob("*.py") if p.stem != "__init__")
    assert set(LOADERS) <= set(modules) and set(modules) - set(LOADERS) == {"shapes"}
    for name in LOADERS:
        module = importlib.import_module(f"datasets.{name}")
        assert callable(module.load), name
        fields = {f.name for f in dataclasses.fields(module.Splits)}
        assert {"source", "note"} <= fields, name
        for part in ("train", "val", "test"):
            assert part in fields or isinstance(getattr(module.Splits, part, None), property), (name, part)


@pytest.mark.parametrize("task, overrides", [
    ("phone_price", {}),
    ("cifar10", {"max_images": 100, "val_images": 20}),
    ("imdb", {"max_batches": 2}),
])
def test_the_tuner_loads_each_lesson_with_its_data_sets_load(task, overrides, request):
    spec = tasks.get(task)
    module = importlib.import_module(f"datasets.{dict(phone_price='mobile_price').get(task, task)}")
    assert spec.load_data is module.load
    root = {"phone_price": "phone_root", "cifar10": "cifar_root", "imdb": "imdb_root"}[task]
    config = build_config(spec.config_cls, profile="smoke", overrides=dict(
        data_dir=str(request.getfixturevalue(root)), **overrides))
    data = spec.load_data(config)
    assert type(data) is module.Splits
    assert all(part is not None for part in (data.train, data.val, data.test))
    assert data.source is not None and isinstance(data.note, str)


def test_captioning_loads_the_shapes_through_flickr8ks_load(tmp_path):
    from datasets import flickr8k

    config = build_config(CaptioningConfig, profile="smoke", overrides=dict(shapes_count=20, max_images=1))
    data = flickr8k.load(config)
    assert type(data) is flickr8k.Splits and data.source.is_dir()
    assert [len(part) for part in (data.train, data.val, data.test)] == [1, 1, 1]
    assert set(data.used()) == {data.train[0], data.val[0], data.test[0]}
