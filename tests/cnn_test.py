from types import SimpleNamespace

import keras
import numpy as np
import pytest

from conftest import CnnConfig as Config
from models import cnn


DATA = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.full(3, 120.0),
                       variance=np.full(3, 3600.0))


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_course_cnn_matches_the_course_layers_and_formula():
    model = cnn.build_cnn(Config(), DATA)
    assert model.output_shape == (None, 10)
    assert trainable(model) == cnn.course_cnn_parameter_count() == 34_538
    kernels = [layer.kernel.shape for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert kernels == [(5, 5, 3, 16), (5, 5, 16, 32)]


@pytest.mark.parametrize("name, blocks, paper", [("resnet20", 3, 0.27e6), ("resnet32", 5, 0.46e6),
                                                 ("resnet56", 9, 0.85e6)])
def test_resnet_parameter_counts_match_the_formula_and_the_paper(name, blocks, paper):
    model = cnn.build_cnn(Config(model=name), DATA)
    assert trainable(model) == cnn.resnet_parameter_count(blocks)
    assert abs(trainable(model) - paper) / paper < 0.01  # He et al. (2016), table 6
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) + 1 == 6 * blocks + 2  # depth = conv layers + the dense layer
    assert model.output_shape == (None, 10)


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    y = cnn.ShortcutA(32)(x).numpy()
    assert y.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(y[..., 8:24], x[:, ::2, ::2, :])
    assert np.all(y[..., :8] == 0) and np.all(y[..., 24:] == 0)


@pytest.mark.parametrize("name", ["vgg", "fast"])
def test_width_configurable_models_build_with_their_widths(name):
    model = cnn.build_cnn(Config(model=name, dropout=0.2), DATA)
    assert model.output_shape == (None, 10)
    filters = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted(set(filters) - {8}) == [16]
    probabilities = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet_saves_and_loads_with_its_custom_layer(tmp_path):
    model = cnn.build_cnn(Config(model="resnet20"), DATA)
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_unknown_architecture_is_refused():
    from common.errors import UserError

    with pytest.raises(UserError, match="valid: course_cnn"):
        cnn.build_cnn(Config(model="alexnet"), DATA)
