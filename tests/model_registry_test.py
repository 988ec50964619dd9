"""Adding a model is one builder function plus one entry in its factory's mapping: the lesson's --help and
config, the tuner (search space and `--compare model`) and the benchmark pick it up from there."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import cifar10 as cifar10_benchmark
from common.config import build_config
from common.errors import UserError
from models import captioning as captioning_models
from models import cnn, encoders
from models import text as text_models
from tasks import captioning, cifar10, imdb
from tuning import spaces
from tuning import tasks as tuning_tasks

IMAGES = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.full(3, 120.0),
                         variance=np.full(3, 3600.0))


def build_tiny_cnn(x, config, data):
    return cnn.dense_logits(keras.layers.GlobalAveragePooling2D(name="pool")(x), config, data)


def build_tiny_text(config, data):
    review = keras.Input(shape=(1,), dtype="string", name="review")
    x = keras.layers.Embedding(data.vectorizer.vocabulary_size(), 4,
                               name="embedding")(data.vectorizer(review))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(review, keras.layers.Dense(1, activation="sigmoid", name="positive")(x),
                       name=config.model)


def words(text):
    """The text with argparse's line wrapping undone."""
    return " ".join(text.split())


def searched_models(space):
    """The values of the `model` choice in a tuning space."""
    (choice,) = [hp for hp in spaces.describe(space) if hp["config"]["name"] == "model"]
    return choice["config"]["values"]


def test_the_tuner_lists_are_the_mappings_less_what_they_leave_out():
    assert spaces.cifar10_models() == ["vgg", "resnet20", "fast"]
    assert spaces.cifar10_models(compare=True) == ["course_cnn", "vgg", "resnet20", "fast"]
    assert spaces.imdb_models() == ["lstm", "gru", "bilstm", "bigru", "bilstm_attention", "bigru_pool"]
    assert spaces.imdb_models(compare=True) == ["simple_rnn", *spaces.imdb_models()]


def test_a_renamed_model_left_out_of_the_search_is_caught(monkeypatch):
    # A copy without it: deleting and restoring the key would move it to the end of the mapping.
    monkeypatch.setattr(cnn, "BUILDERS",
                        {name: build for name, build in cnn.BUILDERS.items() if name != "resnet32"})
    with pytest.raises(ValueError, match="resnet32"):
        spaces.cifar10_models()


def test_a_new_cifar10_model_reaches_help_tuner_benchmark_and_factory(monkeypatch, cli):
    monkeypatch.setitem(cnn.BUILDERS, "tiny_cnn", build_tiny_cnn)
    code, out, _ = cli(cifar10.main, ["--help"])
    assert code == 0 and "fast, tiny_cnn" in words(out)
    spec = tuning_tasks.get("cifar10")
    assert spec.comparisons["model"] == ["course_cnn", "vgg", "resnet20", "fast", "tiny_cnn"]
    assert searched_models(spec.space) == ["vgg", "resnet20", "fast", "tiny_cnn"]
    assert cifar10_benchmark.full_models()["tiny_cnn"] == {"model": "tiny_cnn"}
    code, out, _ = cli(cifar10_benchmark.main, ["--help"])
    assert code == 0 and "tiny_cnn" in out

    config = build_config(cifar10.Cifar10Config, profile="smoke", overrides=dict(model="tiny_cnn"))
    model = cnn.build_cnn(config, IMAGES)
    assert (model.name == "tiny_cnn"
            and sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3 * 10 + 10)
    probabilities = model.predict(np.full((2, 32, 32, 3), 128.0, "float32"), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_new_text_model_reaches_help_tuner_and_factory(monkeypatch, cli):
    monkeypatch.setitem(text_models.BUILDERS, "tiny_text", build_tiny_text)
    code, out, _ = cli(imdb.main, ["--help"])
    assert code == 0 and "nbsvm, tiny_text" in words(out)
    spec = tuning_tasks.get("imdb")
    assert spec.comparisons["model"][-1] == "tiny_text"
    assert searched_models(spec.space)[-1] == "tiny_text"

    config = build_config(imdb.ImdbConfig, profile="smoke", overrides=dict(model="tiny_text"))
    vectorizer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=6)
    vectorizer.adapt(["a good film", "a bad film"])
    model = spec.build_model(config, SimpleNamespace(vectorizer=vectorizer))
    assert (model.name == "tiny_text"
            and model.get_layer("embedding").input_dim == vectorizer.vocabulary_size())
    assert model.predict(tf.constant([["a good film"], ["bad"]]), verbose=0).shape == (2, 1)


def test_unknown_text_model_names_the_choices():
    with pytest.raises(UserError, match="unknown model 'cnn'; valid: simple_rnn, .*, nbsvm"):
        text_models.build_text_model(SimpleNamespace(model="cnn"), None)


def test_a_new_captioning_encoder_or_cell_is_accepted_by_the_lesson(monkeypatch, cli):
    def tiny_encoder(name, shape):
        inputs = keras.Input(shape)
        return keras.Model(inputs, keras.layers.AveragePooling2D(8)(inputs), name=name)

    monkeypatch.setitem(encoders.PRETRAINED, "tiny_encoder", tiny_encoder)
    monkeypatch.setitem(captioning_models.CELLS, "simple_rnn", keras.layers.SimpleRNNCell)
    config = build_config(captioning.CaptioningConfig, profile="smoke",
                          overrides=dict(encoder="tiny_encoder", cell="simple_rnn", image_size=32))
    assert config.encoder == "tiny_encoder"
    encoder = encoders.pretrained_encoder("tiny_encoder", 32)
    assert not encoder.trainable and encoder.output_shape == (None, 4, 4, 3)
    code, out, _ = cli(captioning.main, ["--help"])
    assert code == 0 and "lstm, gru, simple_rnn" in words(out)
    with pytest.raises(UserError, match="valid: cnn, efficientnet_lite0, MobileNetV2"):
        encoders.pretrained_encoder("alexnet", 32)
