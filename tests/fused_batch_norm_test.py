"""models/fused_batch_norm.py: the fused layer computes what Keras' BatchNormalization computes (outputs,
moving statistics, gradients), falls back to it where the fused kernel does not apply, and saves and loads.
A fused layer that kept the kernel's sample variance, dropped the shift or the scale, or skipped the moving
averages fails the first test."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.fused_batch_norm import FusedBatchNormalization


def pair(**kwargs):
    """A fused layer and Keras' own, built alike with the same (non-trivial) weights."""
    fused, plain = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build((None, 6, 5, 4))
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in plain.weights]
    for layer in (fused, plain):
        layer.set_weights(weights)
    return fused, plain


def images(seed=1, shape=(8, 6, 5, 4)):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, shape).astype("float32"))


@pytest.mark.parametrize("scale,center", [(True, True), (False, True), (True, False), (False, False)])
def test_training_step_matches_keras(scale, center):
    fused, plain = pair(momentum=0.6, epsilon=1e-5, scale=scale, center=center)
    x = images()
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(1.0, 5.0))  # not a plain sum: its gradient through BN is zero
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append((y, grads, [w.numpy() for w in layer.non_trainable_weights]))
    (y_fused, g_fused, stats_fused), (y_plain, g_plain, stats_plain) = results
    np.testing.assert_allclose(y_fused, y_plain, atol=1e-4)
    for a, b in zip(g_fused, g_plain, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-3)
    for a, b in zip(stats_fused, stats_plain, strict=True):  # moving mean and (population) variance
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_inference_matches_keras():
    fused, plain = pair()
    x = images(2)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-4)


def test_bfloat16_compute_matches_keras():
    """Under mixed_bfloat16 the fused kernel reads bfloat16 and returns it, close to Keras' float32 path."""
    fused, plain = pair(dtype="mixed_bfloat16")
    x = tf.cast(images(3), "bfloat16")
    y_fused, y_plain = fused(x, training=True), plain(x, training=True)
    assert y_fused.dtype == y_plain.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y_fused, "float32"), tf.cast(y_plain, "float32"), atol=0.05)


def test_other_inputs_fall_back_to_keras():
    """A 2-D input (a dense layer's) is not fusable: the layer is Keras' own there."""
    fused, plain = FusedBatchNormalization(), keras.layers.BatchNormalization()
    x = tf.constant(np.random.default_rng(4).normal(size=(16, 3)).astype("float32"))
    assert not fused._fusable(x, None)
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-6)
    fused.synchronized = True  # a multi-worker run's statistics: Keras' cross-replica path
    assert not fused._fusable(images(), None)


def test_saves_and_loads(tmp_path):
    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, FusedBatchNormalization(momentum=0.6, scale=False)(inputs))
    model(images(), training=True)  # moves the statistics away from their initial values
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[-1], FusedBatchNormalization) and not loaded.layers[-1].scale
    np.testing.assert_allclose(loaded(images(5)), model(images(5)), atol=1e-6)
