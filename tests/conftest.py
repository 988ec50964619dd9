"""Shared fixtures: an isolated environment per test, tiny generated data sets, and a CLI runner."""

import collections
import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The real data root, if CI or the Makefile gave one; tests that want real data ask for `real_data_root`.
REAL_DATA_ROOT = os.environ.get("KERAS_TUTORIALS_DATA")

PHONE_FEATURES = ["battery_power", "blue", "clock_speed", "dual_sim", "fc", "four_g", "int_memory", "m_dep",
                  "mobile_wt", "n_cores", "pc", "px_height", "px_width", "ram", "sc_h", "sc_w", "talk_time",
                  "three_g", "touch_screen", "wifi"]


def pytest_terminal_summary(terminalreporter):
    """One line at the end: how many tests skipped, by reason (README: "What a skipped test means")."""
    reasons = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.write_line(f"skipped {sum(reasons.values())}: " + "; ".join(
            f"{count} x {reason}" for reason, count in reasons.most_common()))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """No test sees the user's data root, Keras cache or extraction cache, or writes into the repo."""
    monkeypatch.delenv("KERAS_TUTORIALS_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    monkeypatch.setenv("KERAS_TUTORIALS_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def real_data_root():
    if not REAL_DATA_ROOT or not os.path.isdir(REAL_DATA_ROOT):
        pytest.skip("no real data root: set KERAS_TUTORIALS_DATA (CI sets it to ../shared/datasets)")
    return REAL_DATA_ROOT


def write_phone_csv(path, rows=400, seed=0, labelled=True, with_id=False):
    """A learnable phone-price CSV: the label is the quartile of RAM + battery power, as in the real data."""
    rng = np.random.default_rng(seed)
    data = {name: rng.integers(0, 2000, rows) for name in PHONE_FEATURES}
    data["clock_speed"] = np.round(rng.uniform(0.5, 3.0, rows), 1)
    score = data["ram"] + 0.5 * data["battery_power"]
    labels = np.searchsorted(np.quantile(score, [0.25, 0.5, 0.75]), score)
    columns = (["id"] if with_id else []) + PHONE_FEATURES + (["price_range"] if labelled else [])
    values = dict(data, id=np.arange(1, rows + 1), price_range=labels)
    lines = [",".join(columns)] + [",".join(str(values[c][i]) for c in columns) for i in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def phone_root(tmp_path):
    """A data root with mobile_price/train.csv (labelled) and test.csv (unlabelled, with id)."""
    root = tmp_path / "data"
    write_phone_csv(root / "mobile_price" / "train.csv", rows=400, seed=0)
    write_phone_csv(root / "mobile_price" / "test.csv", rows=50, seed=1, labelled=False, with_id=True)
    return root


def _erf(x):
    import math

    return np.vectorize(math.erf)(x)


# What each activation of common/registry.py computes, written out: tests compare values, not only shapes.
# leaky_relu's slope is the registry's 0.01 (Keras' own default is 0.3), gelu is the exact erf form (Keras'
# default; the tanh approximation differs by 1e-4 at -2), selu has Klambauer et al.'s constants.
ACTIVATION_FORMULAS = {
    "relu": lambda x: np.maximum(x, 0), "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh, "swish": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "linear": lambda x: x,
}


POSITIVE = ["great", "wonderful", "excellent", "moving", "superb", "loved", "brilliant", "beautiful"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "waste", "hated", "poor", "worst"]
NEUTRAL = ["the", "movie", "film", "plot", "actor", "scene", "story", "and", "was", "a", "it", "director"]


def write_imdb_archive(root, per_class=40, seed=0, extra=None):
    """`root/imdb/aclImdb.tar.gz` in the real layout: train/test x pos/neg, plus train/unsup (never read).

    Reviews are learnable: neutral words with sentiment words of their class mixed in. `extra` maps
    relative paths (e.g. "train/pos/odd.txt") to bytes, for edge cases.
    """
    import tarfile

    rng = np.random.default_rng(seed)
    tree = root / "build" / "aclImdb"
    for split in ("train", "test"):
        for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = tree / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                length = int(rng.integers(8, 30))
                tokens = [str(rng.choice(NEUTRAL)) for _ in range(length)]
                for _ in range(3):
                    tokens.insert(int(rng.integers(0, len(tokens))), str(rng.choice(words)))
                (folder / f"{i}_{int(rng.integers(1, 10))}.txt").write_text(
                    " ".join(tokens).capitalize() + ".<br /><br />" + str(rng.choice(NEUTRAL)) + "!")
    (tree / "train" / "unsup").mkdir(exist_ok=True)
    for i in range(30):
        (tree / "train" / "unsup" / f"{i}_0.txt").write_text("unlabelled " * 5)
    for relative, content in (extra or {}).items():
        (tree / relative).write_bytes(content)
    archive = root / "imdb" / "aclImdb.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="aclImdb")
    return archive


@pytest.fixture
def imdb_root(tmp_path):
    root = tmp_path / "data"
    write_imdb_archive(root)
    return root


@pytest.fixture
def cli(capsys):
    """Run a task's main through run_cli as a user would; returns (exit code, stdout, stderr)."""
    from common.errors import run_cli

    def call(main, argv):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, argv)
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return call


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synthetic_images(per_class, num_classes=10, size=32, seed=0):
    """Learnable images: class k is a noisy patch of its own colour on a noisy grey background."""
    palette = np.random.default_rng(1234).integers(0, 256, (num_classes, 3))  # the same for every split
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(num_classes):
        for _ in range(per_class):
            image = rng.normal(128, 30, (size, size, 3))
            top, left = rng.integers(0, size // 2, 2)
            image[top:top + size // 2, left:left + size // 2] = palette[k] + rng.normal(0, 20, 3)
            images.append(np.clip(image, 0, 255).astype("uint8"))
            labels.append(k)
    return np.stack(images), np.array(labels)


def write_image_tree(folder, per_class, class_names=CIFAR_CLASSES, size=32, seed=0, suffix=".png"):
    """folder/<class>/<n>.png with synthetic_images; returns (images, labels) in file order."""
    from PIL import Image

    x, y = synthetic_images(per_class, len(class_names), size, seed)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        path = folder / class_names[label] / f"{i % per_class:04d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return x, y


@pytest.fixture
def cifar_root(tmp_path):
    """A data root with cifar10/train and cifar10/test trees of learnable PNG images, and labels.txt."""
    root = tmp_path / "data"
    write_image_tree(root / "cifar10" / "train", per_class=40, seed=0)
    write_image_tree(root / "cifar10" / "test", per_class=10, seed=1)
    (root / "cifar10" / "labels.txt").write_text("\n".join(CIFAR_CLASSES) + "\n")
    return root


@dataclasses.dataclass
class CnnConfig:
    """The fields models.cnn reads, small: for building CNNs without a lesson config."""

    model: str = "course_cnn"
    widths: tuple = (8, 16, 16)
    stem_width: int = 8
    logit_scale: float = 0.125
    activation: str = "relu"
    initializer: str = "he_normal"
    bn_momentum: float = 0.9
    dropout: float = 0.0
    l2: float = 0.0


def kill_worker_after_epoch(state, epoch, timeout_s, worker=1):
    """A launcher-output callback for fault tests: once the launcher says worker `worker` started, a thread
    SIGKILLs it as soon as the chief's saved training state (`state`, a backup/state.json) reaches `epoch`.
    Returns (the callback, the list the killed pid is appended to)."""
    import json
    import re
    import signal
    import threading
    import time

    killed = []

    def watch(pid):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if json.loads(state.read_text())["epoch"] >= epoch:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    def on_line(line, *_):
        pid = re.match(rf"started worker{worker} \(pid (\d+)\)", line)
        if pid and not killed:
            threading.Thread(target=watch, args=(int(pid.group(1)),), daemon=True).start()

    return on_line, killed


@pytest.fixture
def committed_tree(monkeypatch):
    """Benchmark stamps refuse uncommitted code (benchmarks/common.py: stamp); a test that runs a benchmark
    while you edit the repo stamps HEAD's commit instead, as a clean clone (CI) would."""
    from benchmarks import common

    head = common._git_commit().split()[0]
    monkeypatch.setattr(common, "_git_commit", lambda: head)
    return head

