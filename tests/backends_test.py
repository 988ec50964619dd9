"""Every model factory builds and trains on each Keras backend (a subprocess per backend): five steps on one
batch, every loss finite, the last below the first."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Builds every factory with its lesson's smoke config and runs five train_on_batch; prints one JSON line.
SCRIPT = r"""
import json, keras, numpy as np
from types import SimpleNamespace
from common.config import build_config
from models import cnn, fnn, text
from tasks.cifar10 import Cifar10Config
from tasks.imdb import ImdbConfig
from tasks.phone_price import PhonePriceConfig

rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
losses, STEPS = {}, 5

def step(name, model, x, y, loss):
    model.compile(keras.optimizers.Adam(1e-3), loss)
    losses[name] = [float(model.train_on_batch(x, y)) for _ in range(STEPS)]

phone = build_config(PhonePriceConfig, profile="smoke")
x = rng.normal(size=(16, 20)).astype("float32")
data = SimpleNamespace(num_features=20, num_classes=4, x_train=x)
step("fnn", fnn.build_fnn(phone, data), x, np.arange(16) % 4, "sparse_categorical_crossentropy")
step("softmax_regression", fnn.build_softmax_regression(phone, data), x, np.arange(16) % 4,
     "sparse_categorical_crossentropy")
images = SimpleNamespace(image_shape=(32, 32, 3), num_classes=10, mean=np.full(3, 120.0),
                         variance=np.full(3, 3600.0))
x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
for name in cnn.BUILDERS:
    config = build_config(Cifar10Config, profile="smoke", overrides=dict(model=name, widths=(8, 16, 16)))
    step(name, cnn.build_cnn(config, images), x, np.arange(4), "sparse_categorical_crossentropy")
# airbench94's layers (whitening stem computed from training images, shift-only batch norm with the scaled
# shift, dirac init, logit scale), in float32: the recipe's bfloat16 is a CPU speed choice.
airbench = build_config(Cifar10Config, config_file="recipes/cifar10_airbench94.json",
                        overrides=dict(widths=(8, 16, 16), mixed_precision=False))
images.x_train = rng.uniform(0, 255, (64, 32, 32, 3)).astype("uint8")
step("fast_airbench94", cnn.build_cnn(airbench, images), x, np.arange(4), "sparse_categorical_crossentropy")
ids = rng.integers(0, 50, (4, 12)).astype("int32")
for name in text.ARCHITECTURES:
    bigrams = 20 if name == "bigru_pool" else 0  # the bigram input layer too, on every backend
    config = build_config(ImdbConfig, profile="smoke", overrides=dict(model=name, ngram_buckets=20,
                                                                     bigram_buckets=bigrams, dropout=0.0))
    step(name, text.build_token_classifier(config, 50, 12), ids, np.array([[0.0], [1], [0], [1]]),
         "binary_crossentropy")
from models import captioning, efficientnet_lite
from tasks.captioning import CaptioningConfig

config = build_config(CaptioningConfig, profile="smoke", overrides=dict(max_words=5))
tokens = rng.integers(1, 20, (4, 7)).astype("int32")
for name, shape in (("captioner_cnn", (32, 32, 3)), ("captioner_features", (9, 24))):
    model = captioning.build_captioner(config, 20, shape)
    x = rng.uniform(0, 255, (4,) + shape).astype("float32")
    step(name, model, (x, tokens[:, :-1]), tokens[:, 1:], captioning.masked_crossentropy)
model = efficientnet_lite.build_efficientnet_lite0(input_shape=(64, 64, 3))
step("efficientnet_lite0", model, rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32"), np.arange(2),
     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
print(json.dumps({"backend": keras.backend.backend(), "losses": losses}))
"""

EXPECTED = 2 + 7 + 8 + 3  # FNN and baseline, the CNNs and airbench94's, the text models, captioners and
# EfficientNet-Lite0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_factory_trains_and_lowers_its_loss(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (optional: pip install -r requirements-compare.txt)")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert len(report["losses"]) == EXPECTED
    for name, losses in report["losses"].items():
        assert all(math.isfinite(v) for v in losses), (name, losses)
        # Five steps on one batch lower the loss (measured here on every backend; the text models without
        # dropout so the steps compare): excludes a model whose gradients do not reach its weights, or
        # whose loss turns NaN after the first step.
        assert losses[-1] < losses[0], (name, losses)
