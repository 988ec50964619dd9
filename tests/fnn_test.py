import types

import keras
import numpy as np
import pytest

from conftest import ACTIVATION_FORMULAS
from common import registry
from models import build_fnn, build_softmax_regression
from models.fnn import fnn_parameter_count


def config(**overrides):
    values = dict(hidden_units=(32, 16), activation="relu", initializer="he_normal", dropout=0.0,
                  batch_norm=False, l2=0.0, input_l1=0.0)
    return types.SimpleNamespace(**{**values, **overrides})


DATA = types.SimpleNamespace(num_features=20, num_classes=4,
                             x_train=np.random.default_rng(0).normal(5, 3, (64, 20)).astype("float32"))


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("units,batch_norm", [
    ((32, 16), False),
    ((64,), True),
    ((), False),
    ((8, 8, 8), True),
])
def test_parameter_count_matches_the_formula(units, batch_norm):
    model = build_fnn(config(hidden_units=units, batch_norm=batch_norm), DATA)
    assert trainable(model) == fnn_parameter_count(20, units, 4, batch_norm)
    assert model.output_shape == (None, 4)


def test_softmax_regression_is_one_linear_layer():
    model = build_softmax_regression(config(), DATA)
    assert trainable(model) == 20 * 4 + 4
    assert [layer.name for layer in model.layers] == ["features", "normalize", "logits", "probabilities"]


def test_normalization_uses_training_statistics_and_takes_raw_rows():
    model = build_fnn(config(), DATA)
    normalized = keras.ops.convert_to_numpy(model.get_layer("normalize")(DATA.x_train))
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-2)
    probabilities = model.predict(DATA.x_train[:5], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("activation", registry.names("activation"))
@pytest.mark.parametrize("initializer", ["glorot_uniform", "he_normal", "lecun_normal"])
def test_every_activation_and_initializer_builds(activation, initializer):
    model = build_fnn(config(activation=activation, initializer=initializer, dropout=0.2), DATA)
    assert model.predict(DATA.x_train[:3], verbose=0).shape == (3, 4)


@pytest.mark.parametrize("activation", registry.names("activation"))
def test_the_hidden_layer_applies_the_configured_activation(activation):
    """By value: the layer after the hidden Dense computes the formula of the configured activation."""
    model = build_fnn(config(activation=activation, hidden_units=(8,)), DATA)
    after = model.layers[[layer.name for layer in model.layers].index("hidden_1") + 1]
    probe = keras.Model(model.input, [model.get_layer("hidden_1").output, after.output])
    before, activated = (keras.ops.convert_to_numpy(t) for t in probe(DATA.x_train[:4]))
    np.testing.assert_allclose(activated, ACTIVATION_FORMULAS[activation](before.astype("float64")),
                               rtol=1e-5, atol=1e-6)


def test_dropout_and_l2_appear_where_configured():
    model = build_fnn(config(dropout=0.3, l2=1e-3), DATA)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3, 0.3]
    model(DATA.x_train[:2])
    assert len(model.losses) == 3  # one L2 term per Dense kernel


def test_input_l1_penalises_only_the_first_kernel():
    model = build_fnn(config(input_l1=1e-2), DATA)
    model(DATA.x_train[:2])
    assert len(model.losses) == 1
    first = model.get_layer("hidden_1").kernel
    expected = 1e-2 * np.abs(keras.ops.convert_to_numpy(first)).sum()
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-5)


def test_same_seed_same_weights():
    keras.utils.set_random_seed(5)
    first = build_fnn(config(), DATA).get_weights()
    keras.utils.set_random_seed(5)
    second = build_fnn(config(), DATA).get_weights()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
