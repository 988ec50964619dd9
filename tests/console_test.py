"""common/console.py: TensorFlow's start-up noise is dropped on file descriptor 2, everything else passes."""

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from common import console, hardware

ROOT = Path(__file__).resolve().parents[1]

# Lines TensorFlow 2.21 printed on this CPU machine for one phone-price run, before the filter existed.
SEEN_HERE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796040051.305557    4777 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different computation "
    "orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796040051.307494    4777 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "E0000 00:00:1796040055.202933    4777 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796040058.647955    4777 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; signature=input_dataset:"
    "variant> This may be expected if your graph generating binary is newer  than this binary. Unknown "
    "attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_14}}",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.",
]
REAL = [
    "Traceback (most recent call last):",
    "lesson.py:7: UserWarning: a real warning",
    "error: --epochs must be positive, got 0.",
    "E0000 00:00:1796040058.6 4777 cuda_dnn.cc:535] Could not create cudnn handle: "
    "CUDNN_STATUS_INTERNAL_ERROR",
    "W0000 00:00:1796040058.6 4777 bfc_allocator.cc:482] Allocator (GPU_0_bfc) ran out of memory",
]
NOISE = SEEN_HERE[3].encode() + b"\n"
BANNED = ("cuInit", "cuda_", "absl::", "oneDNN")


@pytest.mark.parametrize("line", SEEN_HERE)
def test_start_up_noise_is_recognised(line):
    assert console.is_noise(line) and console.is_noise(line.encode())


@pytest.mark.parametrize("line", REAL)
def test_real_warnings_and_errors_are_not_noise(line):
    assert not console.is_noise(line)


def test_filter_chunk_drops_noise_keeps_the_rest_in_order():
    out, held = console.filter_chunk(b"", NOISE + b"first\n" + SEEN_HERE[0].encode() + b"\nsecond\n")
    assert (out, held) == (b"first\nsecond\n", b"")


def test_filter_chunk_passes_unfinished_progress_at_once_and_holds_a_native_line_until_its_end():
    out, held = console.filter_chunk(b"", b"\rextracting  40%")
    assert (out, held) == (b"\rextracting  40%", b"")
    out, held = console.filter_chunk(b"", NOISE[:30])
    assert (out, held) == (b"", NOISE[:30])
    out, held = console.filter_chunk(held, NOISE[30:] + b"\xff not utf-8\n")
    assert (out, held) == (b"\xff not utf-8\n", b"")


def test_native_and_python_writes_inside_the_block(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with console.filtered_stderr():
        os.write(2, NOISE + b"a native line that is not noise\n")
        print("a python line", file=sys.stderr, flush=True)
    # pytest's capfd also swaps sys.stderr, so the Python line may overtake the native one here.
    assert sorted(capfd.readouterr().err.splitlines()) == ["a native line that is not noise", "a python line"]


def test_everything_passes_when_native_info_logs_are_asked_for(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with console.filtered_stderr():
        os.write(2, NOISE)
    assert capfd.readouterr().err == NOISE.decode()


def test_quiet_import_filters_the_import_and_reemits_other_native_lines(capfd, monkeypatch, tmp_path):
    name = "fake_native_library_for_console_test"
    (tmp_path / f"{name}.py").write_text(
        "import os\n"
        f"os.write(2, {SEEN_HERE[0].encode()!r} + b'\\n' + {SEEN_HERE[1].encode()!r} + b'\\n')\n"
        "os.write(2, b'native: a line the user must see\\n')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delitem(sys.modules, name, raising=False)
    queried = []
    console.quiet_import(name, after=lambda module: queried.append(os.write(2, NOISE)))
    module = importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)
    assert capfd.readouterr().err == "native: a line the user must see\n"
    assert queried and module.__name__ == name
    assert not any(isinstance(finder, console._QuietImport) for finder in sys.meta_path)  # one import only


def _python(code, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(environ, PYTHONPATH=str(ROOT), **env), timeout=120)


def test_whole_run_filter_keeps_warnings_and_tracebacks_after_start_up(tmp_path):
    code = ("import os, warnings\nfrom common import console\nconsole.start_filter()\n"
            f"os.write(2, {NOISE!r})\nwarnings.warn('a real warning')\nraise RuntimeError('boom')\n")
    result = _python(code, tmp_path)
    assert result.returncode == 1
    assert "UserWarning: a real warning" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: boom")
    assert "cuInit" not in result.stderr


def test_whole_run_filter_loses_nothing_when_the_program_dies_abruptly(tmp_path):
    code = ("import os\nfrom common import console\nconsole.start_filter()\n"
            "os.write(2, b'F0000 00:00:1.0 1 check.cc:1] Check failed: the last words\\n')\nos._exit(3)\n")
    result = _python(code, tmp_path)
    assert result.returncode == 3
    assert result.stderr == "F0000 00:00:1.0 1 check.cc:1] Check failed: the last words\n"


def test_jit_summary_resolves_auto_as_keras_does():
    config = types.SimpleNamespace(jit_compile="auto", deterministic=True)
    assert console.jit_summary("tensorflow", config) == "XLA off (auto: deterministic ops)"
    assert console.jit_summary("torch", config) == "torch.compile off (auto: eager)"
    assert console.jit_summary("jax", config).startswith("XLA auto")
    assert console.jit_summary("tensorflow", types.SimpleNamespace(jit_compile="true")) == "XLA on"


def test_runtime_summary_names_backend_devices_precision_and_xla():
    import keras

    config = types.SimpleNamespace(mixed_precision=True, mixed_dtype="float16", jit_compile="false")
    line = console.runtime_summary(config)
    backend = keras.backend.backend()
    assert line.startswith(f"keras {keras.__version__} on {backend}")
    devices = hardware.accelerators(backend) or [f"CPU ({hardware.cpu_cores()} cores)"]
    assert f"devices: {', '.join(devices)} | mixed precision float16 | " in line
    assert line.endswith(" off") and "\n" not in line


@pytest.mark.slow
def test_a_lesson_run_prints_one_start_line_and_no_native_noise(tmp_path):
    """The issue's check: a smoke run of a lesson, as a user starts it (no TF_CPP_MIN_LOG_LEVEL set)."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "tasks.phone_price", "--profile", "smoke", "--no-linear-baseline",
         "--output-dir", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, env=dict(environ, KERAS_BACKEND="tensorflow"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert [word for word in BANNED if word in output] == [], output[-3000:]
    banner = [line for line in result.stdout.splitlines() if line.startswith("keras ")]
    assert len(banner) == 1
    assert " on tensorflow " in banner[0] and "| devices: " in banner[0]
    assert "| mixed precision off | XLA off (auto: deterministic ops)" in banner[0]
