import keras
import numpy as np
import pytest

from common.errors import UserError
from conftest import ACTIVATION_FORMULAS
from common import registry


@pytest.mark.parametrize("kind", ["activation", "initializer", "loss", "optimizer", "schedule"])
def test_unknown_name_lists_the_valid_ones(kind):
    with pytest.raises(UserError) as error:
        registry.check_name(kind, "no_such_thing")
    message = str(error.value)
    assert "no_such_thing" in message
    for name in registry.names(kind):
        assert name in message


@pytest.mark.parametrize("alias,canonical", [
    ("xavier_uniform", "glorot_uniform"), ("kaiming_normal", "he_normal"), ("smooth_l1", "huber"),
    ("silu", "swish"), ("bce", "binary_crossentropy"), ("cross_entropy", "sparse_categorical_crossentropy"),
    ("RELU", "relu")])
def test_aliases_resolve_to_canonical_names(alias, canonical):
    kinds = ["activation", "initializer", "loss"]
    assert canonical in [registry.check_name(k, alias) for k in kinds if _resolves(k, alias)]


def _resolves(kind, name):
    try:
        registry.check_name(kind, name)
        return True
    except UserError:
        return False


def test_every_activation_has_its_formula_written_out():
    assert sorted(ACTIVATION_FORMULAS) == sorted(registry.names("activation"))


@pytest.mark.parametrize("name", registry.names("activation"))
def test_every_activation_is_a_layer_with_the_expected_values(name):
    x = np.array([[-3.0, -2.0, -0.5, 0.0, 0.5, 3.0]], dtype="float32")
    y = keras.ops.convert_to_numpy(registry.activation(name)(x))
    assert y.shape == x.shape
    # float32 rounding only; a wrong slope, constant or approximation (gelu's tanh form: 1e-4) is far above
    # it.
    np.testing.assert_allclose(y, ACTIVATION_FORMULAS[name](x.astype("float64")), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", registry.names("initializer"))
def test_every_initializer_draws_the_right_scale(name):
    values = keras.ops.convert_to_numpy(registry.initializer(name, seed=1)((400, 400)))
    assert values.shape == (400, 400)
    std = values.std()
    fan_in = fan_avg = 400
    expected = {"glorot": np.sqrt(1 / fan_avg), "he": np.sqrt(2 / fan_in), "lecun": np.sqrt(1 / fan_in),
                "orthogonal": np.sqrt(1 / 400), "torch": np.sqrt(1 / (3 * fan_in))}
    assert std == pytest.approx(expected[name.split("_")[0]], rel=0.1)


@pytest.mark.parametrize("name", registry.names("loss"))
def test_every_loss_computes_a_finite_positive_value(name):
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 2])
    target = labels if registry.loss_target(name) == "index" else np.eye(3, dtype="float32")[labels]
    value = float(registry.loss(name)(target, probabilities))
    assert np.isfinite(value) and value > 0
    # Better predictions score lower: catches a loss with the wrong sign or one that ignores its inputs.
    right = np.array([[0.98, 0.01, 0.01], [0.01, 0.01, 0.98]], dtype="float32")
    wrong = np.array([[0.01, 0.98, 0.01], [0.98, 0.01, 0.01]], dtype="float32")
    assert float(registry.loss(name)(target, right)) < value < float(registry.loss(name)(target, wrong))


def test_sparse_cross_entropy_with_label_smoothing_equals_the_categorical_one():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 2])
    sparse = float(registry.loss("sparse_categorical_crossentropy", 0.1)(labels, probabilities))
    dense = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[labels], probabilities))
    plain = float(registry.loss("sparse_categorical_crossentropy")(labels, probabilities))
    assert sparse == pytest.approx(dense, rel=1e-6)
    assert sparse != pytest.approx(plain)


def test_huber_is_smooth_l1():
    y_true, y_pred = np.array([[0.0, 0.0]]), np.array([[0.5, 3.0]])
    smooth_l1 = np.mean([0.5 * 0.5**2, 3.0 - 0.5])  # PyTorch SmoothL1Loss, beta=1
    assert float(registry.loss("smooth_l1")(y_true, y_pred)) == pytest.approx(smooth_l1)


@pytest.mark.parametrize("name", registry.names("optimizer"))
def test_every_optimizer_takes_a_step_downhill(name):
    weight = keras.Variable(np.array([1.0, -2.0], dtype="float32"))
    optimizer = registry.optimizer(name, 0.1, weight_decay=0.0, clipnorm=1.0)
    gradient = keras.ops.convert_to_tensor(np.array([1.0, -1.0], dtype="float32"))
    optimizer.apply_gradients([(gradient, weight)])
    after = keras.ops.convert_to_numpy(weight)
    assert after[0] < 1.0 and after[1] > -2.0


def test_momentum_only_where_it_applies():
    assert registry.optimizer("momentum", 0.1, momentum=0.8).momentum == pytest.approx(0.8)
    assert registry.optimizer("nesterov", 0.1).nesterov is True
    assert registry.optimizer("sgd", 0.1).momentum == 0.0


def _lr(schedule, step):
    return float(schedule(step)) if callable(schedule) else schedule


def test_step_schedule_drops_by_gamma_every_step_epochs():
    s = registry.schedule("step", 0.1, steps_per_epoch=10, epochs=100, step_epochs=30, gamma=0.1)
    assert _lr(s, 0) == pytest.approx(0.1)
    assert _lr(s, 299) == pytest.approx(0.1)
    assert _lr(s, 301) == pytest.approx(0.01)
    assert _lr(s, 650) == pytest.approx(0.001)


def test_multistep_schedule_drops_at_milestones():
    s = registry.schedule("multistep", 1.0, steps_per_epoch=5, epochs=50, milestones=(10, 40), gamma=0.5)
    assert [_lr(s, e * 5 + 1) for e in (5, 20, 45)] == pytest.approx([1.0, 0.5, 0.25])


def test_exponential_schedule_decays_each_epoch():
    s = registry.schedule("exponential", 1.0, steps_per_epoch=4, epochs=10, gamma=0.9)
    assert _lr(s, 3) == pytest.approx(1.0)
    assert _lr(s, 8) == pytest.approx(0.81)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    s = registry.schedule("cosine", 0.2, steps_per_epoch=10, epochs=20, warmup_epochs=2)
    assert _lr(s, 10) == pytest.approx(0.1, rel=1e-3)
    assert _lr(s, 20) == pytest.approx(0.2, rel=1e-3)
    assert _lr(s, 200) == pytest.approx(0.0, abs=1e-6)


def test_warmup_schedule_ramps_then_stays():
    s = registry.schedule("warmup", 0.2, steps_per_epoch=10, epochs=20, warmup_epochs=1)
    assert _lr(s, 5) == pytest.approx(0.1, rel=1e-3)
    assert _lr(s, 150) == pytest.approx(0.2, rel=1e-3)


def test_constant_schedule_is_the_rate_itself():
    assert registry.schedule("constant", 0.3, 10, 10) == 0.3


def test_regularizer_is_none_without_a_penalty():
    assert registry.regularizer() is None
    assert isinstance(registry.regularizer(l2=1e-3), keras.regularizers.L2)


def test_onecycle_schedule_rises_linearly_then_falls_to_zero():
    s = registry.schedule("onecycle", 0.4, steps_per_epoch=10, epochs=10, warmup_epochs=2)
    assert _lr(s, 10) == pytest.approx(0.2, rel=1e-3)
    assert _lr(s, 20) == pytest.approx(0.4, rel=1e-3)
    assert _lr(s, 60) == pytest.approx(0.2, rel=1e-3)
    assert _lr(s, 100) == pytest.approx(0.0, abs=1e-6)


def test_triangular_schedule_is_airbenchs_triangle():
    s = registry.schedule("triangular", 1.0, steps_per_epoch=10, epochs=10)  # peak at 23 of 100 steps
    assert _lr(s, 0) == pytest.approx(0.2)
    assert _lr(s, 23) == pytest.approx(1.0)
    assert _lr(s, 100) == pytest.approx(0.07)
    assert _lr(s, 23 + 77 // 2) == pytest.approx(0.07 + 0.93 * (77 - 77 // 2) / 77, rel=1e-5)


def test_onecycle_schedule_survives_save_and_load():
    s = registry.schedule("onecycle", 0.4, steps_per_epoch=10, epochs=10)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert _lr(restored, 37) == pytest.approx(_lr(s, 37))


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-6), ("bfloat16", 2e-2)])
def test_gelu_gradient_is_the_exact_derivative(dtype, tolerance):
    """The written-out GELU derivative, Phi(x) + x * phi(x), against autodiff of TensorFlow's own exact GELU.
    A derivative that dropped the x * phi(x) term or used the tanh form is off by more than 1e-3."""
    import tensorflow as tf

    x = tf.cast(tf.linspace(-5.0, 5.0, 201), dtype)
    gradients = []
    for function in (lambda t: registry.GELU()(t, training=True), lambda t: tf.nn.gelu(t, approximate=False)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        gradients.append(tf.cast(tape.gradient(y, x), "float32").numpy())
        np.testing.assert_allclose(tf.cast(y, "float32"), tf.cast(tf.nn.gelu(x), "float32"), atol=tolerance)
    np.testing.assert_allclose(*gradients, atol=tolerance)
