"""`--encoder auto` on photos resolves from what the machine has, like the data root: cached Lite0 weights,
Keras' cached EfficientNetB0 weights, the PyTorch extras that can port Lite0, else a Keras download."""

import pytest

from common.errors import UserError
from models import encoders
from models.efficientnet_lite import weights_path


@pytest.fixture
def bare_machine(tmp_path, monkeypatch):
    """Empty caches and no PyTorch extras, whatever this machine really has."""
    monkeypatch.setenv("KERAS_TUTORIALS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(encoders, "lite0_port_installed", lambda: False)
    return tmp_path


def test_cached_lite0_weights_win(bare_machine):
    weights_path().parent.mkdir(parents=True)
    weights_path().write_bytes(b"weights")
    (bare_machine / "keras" / "models").mkdir(parents=True)
    (bare_machine / "keras" / "models" / "efficientnetb0_notop.h5").write_bytes(b"weights")
    assert encoders.resolve_auto()[0] == "efficientnet_lite0"


def test_keras_cached_weights_come_before_the_port(bare_machine, monkeypatch):
    monkeypatch.setattr(encoders, "lite0_port_installed", lambda: True)
    assert encoders.resolve_auto()[0] == "efficientnet_lite0"  # nothing cached: the extras port Lite0
    (bare_machine / "keras" / "models").mkdir(parents=True)
    (bare_machine / "keras" / "models" / "efficientnetb0_notop.h5").write_bytes(b"weights")
    name, why = encoders.resolve_auto()
    assert name == "EfficientNetB0" and "cached" in why


def test_nothing_here_means_a_keras_download_and_the_lesson_follows(bare_machine):
    from common.config import build_config
    from tasks.captioning import CaptioningConfig

    assert encoders.resolve_auto()[0] == "EfficientNetB0"
    assert (build_config(CaptioningConfig, overrides={"dataset": "flickr8k"}).resolved_encoder()
            == "EfficientNetB0")
    assert build_config(CaptioningConfig, overrides={"dataset": "shapes"}).resolved_encoder() == "cnn"
    assert build_config(CaptioningConfig, overrides={"encoder": "ResNet50"}).resolved_encoder() == "ResNet50"


def test_needs_extras_only_when_keras_cannot_download(bare_machine, monkeypatch):
    def offline(name, shape):
        raise UserError("could not be downloaded")

    monkeypatch.setattr(encoders, "keras_application", offline)
    assert encoders.needs_extras()
    monkeypatch.setattr(encoders, "keras_application", lambda name, shape: None)  # online: downloaded
    assert not encoders.needs_extras()
    monkeypatch.setattr(encoders, "lite0_port_installed", lambda: True)
    monkeypatch.setattr(encoders, "keras_application", offline)
    assert not encoders.needs_extras()  # the extras are already there
