"""PyTorch twins: weight transfer both ways, forward parity, one-step training parity, parameter counts."""

import dataclasses
from types import SimpleNamespace

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install -r requirements-compare.txt")

from conftest import CnnConfig  # noqa: E402
from models import cnn, fnn  # noqa: E402
from models import text as text_models  # noqa: E402
from twins import torch_models, transfer  # noqa: E402

RNG = np.random.default_rng(0)


@dataclasses.dataclass
class FnnConfig:
    hidden_units: tuple = (16, 8)
    activation: str = "gelu"
    initializer: str = "he_normal"
    dropout: float = 0.0
    batch_norm: bool = True
    l2: float = 0.0
    input_l1: float = 0.0


@dataclasses.dataclass
class TextConfig:
    model: str = "lstm"
    embedding_dim: int = 8
    units: int = 6
    num_layers: int = 1
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    initializer: str = "glorot_uniform"


def seeded():
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)


def randomize_statistics(keras_model):
    """Trained-looking batch-norm statistics, so eval-mode parity is not a trivial identity."""
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(RNG.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(RNG.uniform(0.5, 2.0, layer.moving_variance.shape))


def fnn_pair(config=None):
    seeded()
    config = config or FnnConfig()
    x = RNG.normal(5, 3, (32, 20)).astype("float32")
    data = SimpleNamespace(num_features=20, num_classes=4, x_train=x)
    model = fnn.build_fnn(config, data)
    randomize_statistics(model)
    return model, transfer.keras_to_torch(model, torch_models.FNN(config, 20, 4)), x


def cnn_pair(name="course_cnn", **overrides):
    seeded()
    config = CnnConfig(model=name, **{"widths": (), "logit_scale": 1.0, **overrides})
    data = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.array([120.0, 110, 100]),
                           variance=np.array([3600.0, 3000, 2500]))
    model = cnn.build_cnn(config, data)
    randomize_statistics(model)
    twin = (torch_models.CourseCNN(config) if name == "course_cnn" else torch_models.FastNet(config)
            if name == "fast" else torch_models.ResNetCIFAR(config, cnn.RESNET_BLOCKS[name]))
    x = RNG.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    return model, transfer.keras_to_torch(model, twin), x


def text_pair(kind, num_layers=1):
    """A text model on token ids: the Keras model from the embedding on (the vectoriser stays outside)."""
    seeded()
    config = TextConfig(model=kind, num_layers=num_layers)
    model = text_models.build_token_classifier(config, vocabulary_size=32, sequence_length=12)
    ids = RNG.integers(1, 32, (5, 12))
    for row, length in enumerate([12, 9, 5, 3, 1]):
        ids[row, length:] = 0  # padding at the end, as TextVectorization writes it
    twin = torch_models.TextRNN(config, vocabulary_size=32)
    return model, transfer.keras_to_torch(model, twin), ids


def torch_output(twin, x):
    twin.eval()
    with torch.no_grad():
        return twin.probabilities(torch.as_tensor(x)).numpy()


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------ forward parity
def test_fnn_outputs_agree():
    model, twin, x = fnn_pair()
    np.testing.assert_allclose(torch_output(twin, x), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", ["course_cnn", "resnet20", "fast"])
def test_cnn_outputs_agree(name):
    model, twin, x = cnn_pair(name, **({"widths": (8, 16, 16), "logit_scale": 0.125} if name == "fast"
                                       else {}))
    np.testing.assert_allclose(torch_output(twin, nchw(x)), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("kind, num_layers", [("simple_rnn", 1), ("lstm", 1), ("gru", 1), ("lstm", 2),
                                              ("bilstm", 1), ("bigru", 2)])
def test_recurrent_outputs_agree_with_padding(kind, num_layers):
    model, twin, ids = text_pair(kind, num_layers)
    np.testing.assert_allclose(torch_output(twin, ids), model.predict(ids, verbose=0), atol=1e-5)


# ------------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("make", [fnn_pair, cnn_pair, lambda: text_pair("bigru", 2),
                                  lambda: text_pair("lstm")])
def test_transfer_back_restores_every_keras_weight(make):
    model, twin, _ = make()
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    for w in model.weights:
        w.assign(np.zeros(w.shape, dtype=keras.backend.standardize_dtype(w.dtype)))
    transfer.torch_to_keras(twin, model)
    for old, new in zip(before, model.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(new), old, rtol=1e-6, atol=1e-6,
                                   err_msg=new.path)


# --------------------------------------------------------------------------------------- one training step
def keras_step(model, x, y, loss):
    model.compile(keras.optimizers.SGD(0.1), loss)
    model.train_on_batch(x, y)


def torch_step(twin, x, y, loss):
    twin.train()
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss(twin(torch.as_tensor(x)), torch.as_tensor(y)).backward()
    optimizer.step()


def assert_same_parameters(model, twin, make_twin):
    expected = transfer.keras_to_torch(model, make_twin())
    actual = dict(twin.named_parameters())
    for name, value in expected.named_parameters():
        np.testing.assert_allclose(actual[name].detach().numpy(), value.detach().numpy(), atol=2e-5,
                                   err_msg=name)


def test_one_sgd_step_updates_fnn_weights_alike():
    model, twin, x = fnn_pair()
    y = RNG.integers(0, 4, 32)
    keras_step(model, x, y, "sparse_categorical_crossentropy")
    torch_step(twin, x, y, torch.nn.CrossEntropyLoss())
    assert_same_parameters(model, twin, lambda: torch_models.FNN(FnnConfig(), 20, 4))


def test_one_sgd_step_updates_course_cnn_weights_alike():
    model, twin, x = cnn_pair()
    y = RNG.integers(0, 10, 4)
    keras_step(model, x, y, "sparse_categorical_crossentropy")
    torch_step(twin, nchw(x), y, torch.nn.CrossEntropyLoss())
    assert_same_parameters(model, twin, lambda: torch_models.CourseCNN(CnnConfig()))


@pytest.mark.parametrize("name", ["resnet20", "fast"])
def test_one_sgd_step_updates_residual_and_fast_net_weights_alike(name):
    """Trainable weights only: in training mode PyTorch updates its running variance with the unbiased
    batch variance (n - 1) and Keras with the biased one (n), and those are buffers, not parameters."""
    overrides = {"widths": (8, 16, 16), "logit_scale": 0.125} if name == "fast" else {}
    model, twin, x = cnn_pair(name, **overrides)
    y = RNG.integers(0, 10, 4)
    keras_step(model, x, y, "sparse_categorical_crossentropy")
    torch_step(twin, nchw(x), y, torch.nn.CrossEntropyLoss())
    config = CnnConfig(model=name, **{"widths": (), "logit_scale": 1.0, **overrides})
    make = (lambda: torch_models.FastNet(config)) if name == "fast" else (
        lambda: torch_models.ResNetCIFAR(config, cnn.RESNET_BLOCKS[name]))
    assert_same_parameters(model, twin, make)


def test_one_sgd_step_updates_bilstm_weights_alike():
    model, twin, ids = text_pair("bilstm")
    y = np.array([1, 0, 1, 1, 0], dtype="float32")[:, None]
    keras_step(model, ids, y, "binary_crossentropy")
    torch_step(twin, ids, y, torch.nn.BCEWithLogitsLoss())
    assert_same_parameters(model, twin, lambda: torch_models.TextRNN(TextConfig(model="bilstm"), 32))


# ------------------------------------------------------------------------------------- errors and counts
def test_mismatched_shapes_are_refused_with_both_names():
    model, _, _ = fnn_pair()
    with pytest.raises(transfer.TransferError, match=r"shape mismatch: .*hidden_1.* but hidden\.0\.weight"):
        transfer.keras_to_torch(model, torch_models.FNN(FnnConfig(hidden_units=(32, 8)), 20, 4))
    with pytest.raises(transfer.TransferError, match="layer orders differ|no layer left|without a PyTorch"):
        transfer.keras_to_torch(model, torch_models.CourseCNN(CnnConfig()))


def test_parameter_table_explains_each_difference():
    model, twin, _ = text_pair("bilstm")
    rows = {r["torch module"]: r for r in transfer.parameter_rows(model, twin)}
    assert rows["embedding"]["keras params"] == rows["embedding"]["torch params"] == 32 * 8
    lstm = rows["rnn"]
    assert lstm["torch params"] - lstm["keras params"] == 2 * 4 * 6  # a second bias, both directions
    assert "second bias" in lstm["why they differ"]
    gru_model, gru_twin, _ = text_pair("gru")
    gru = {r["torch module"]: r for r in transfer.parameter_rows(gru_model, gru_twin)}["rnn"]
    assert gru["keras params"] == gru["torch params"]  # reset_after=True: two biases in both
    resnet, resnet_twin, _ = cnn_pair("resnet20")
    total = sum(p.numel() for p in resnet_twin.parameters())
    assert total == cnn.resnet_parameter_count(3)


# ---------------------------------------------------------------------------------------- caption decoder
def caption_pair(cell):
    from common.config import build_config
    from models import captioning
    from tasks.captioning import CaptioningConfig

    seeded()
    config = build_config(CaptioningConfig, "smoke", overrides=dict(
        cell=cell, max_words=5, embedding_dim=6, units=7, attention_units=5, feature_units=8, dropout=0.0,
        feature_dropout=0.0, attention_penalty=1.0))
    model = captioning.build_captioner(config, vocabulary_size=11, input_shape=(9, 12))
    twin = transfer.keras_to_torch(model, torch_models.Captioner(config, 11, feature_dim=12))
    features = RNG.normal(0, 1, (3, 9, 12)).astype("float32")
    tokens = np.array([[2, 5, 6, 7, 3, 0, 0], [2, 4, 3, 0, 0, 0, 0], [2, 8, 9, 10, 5, 6, 3]], dtype="int32")
    return model, twin, features, tokens, config


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_caption_decoder_outputs_agree(cell):
    model, twin, features, tokens, _ = caption_pair(cell)
    twin.eval()
    with torch.no_grad():
        logits, weights = twin(torch.as_tensor(features), torch.as_tensor(tokens[:, :-1]))
    np.testing.assert_allclose(logits.numpy(), model.predict((features, tokens[:, :-1]), verbose=0),
                               atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_sgd_step_updates_caption_decoder_weights_alike(cell):
    """Masked cross-entropy plus the doubly stochastic attention penalty, one SGD step on each side."""
    from models import captioning

    model, twin, features, tokens, config = caption_pair(cell)
    keras_step(model, (features, tokens[:, :-1]), tokens[:, 1:], captioning.masked_crossentropy)

    inputs = torch.as_tensor(tokens[:, :-1])
    twin.train()
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    optimizer.zero_grad()
    twin.loss(twin(torch.as_tensor(features), inputs), torch.as_tensor(tokens[:, 1:]), inputs, 1.0).backward()
    optimizer.step()
    assert_same_parameters(model, twin, lambda: torch_models.Captioner(config, 11, feature_dim=12))


def test_caption_decoder_transfer_back_restores_every_weight():
    model, twin, _, _, _ = caption_pair("lstm")
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    for w in model.weights:
        w.assign(np.zeros(w.shape, dtype="float32"))
    transfer.torch_to_keras(twin, model)
    for old, new in zip(before, model.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(new), old, rtol=1e-6, atol=1e-6,
                                   err_msg=new.path)
