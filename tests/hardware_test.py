"""common/hardware.py: the one place that asks the machine what it has (tests/floors_test.py keeps it so)."""

import types

import pytest

from common import hardware

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile
processor\t: 1
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile
"""


@pytest.fixture
def cpuinfo(monkeypatch):
    """Make /proc/cpuinfo read `text` (the cached flags are cleared before and after)."""
    def use(text):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
        hardware.cpu_flags.cache_clear()

    yield use
    hardware.cpu_flags.cache_clear()


def test_the_cpu_model_comes_from_cpuinfo_else_from_platform(cpuinfo, monkeypatch):
    cpuinfo(CPUINFO)
    assert hardware.cpu_model() == "Example CPU @ 2.00GHz"
    cpuinfo("")  # not Linux
    monkeypatch.setattr(hardware.platform, "processor", lambda: "")
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")
    assert hardware.cpu_model() == "arm64"


def test_bfloat16_arithmetic_is_read_from_the_cpu_flags(cpuinfo):
    cpuinfo(CPUINFO)
    assert hardware.cpu_computes_bfloat16() and "avx2" in hardware.cpu_flags()
    cpuinfo("flags\t\t: fpu amx_bf16\n")
    assert hardware.cpu_computes_bfloat16()
    cpuinfo("model name\t: Example CPU\nflags\t\t: fpu avx2 avx512f\n")  # AVX-512 without BF16: emulated
    assert not hardware.cpu_computes_bfloat16()
    cpuinfo("")
    assert not hardware.cpu_computes_bfloat16() and hardware.cpu_flags() == frozenset()


def test_the_cores_this_process_may_use_are_at_most_the_machines():
    assert 1 <= hardware.cpu_cores() <= hardware.machine_cores()


def test_only_an_imported_framework_is_asked_for_accelerators(monkeypatch):
    monkeypatch.setattr(hardware, "sys", types.SimpleNamespace(modules={}))
    assert hardware.imported_accelerators() is None  # nothing loaded: nothing imported to ask
    monkeypatch.setattr(hardware, "sys", types.SimpleNamespace(modules={"tensorflow": object()}))
    monkeypatch.setattr(hardware, "accelerators", lambda backend: [f"{backend} GPU"])
    assert hardware.imported_accelerators() == ["tensorflow GPU"]


def test_accelerators_are_the_gpus_tensorflow_lists():
    import tensorflow as tf

    expected = len(tf.config.list_physical_devices("GPU"))
    assert len(hardware.accelerators("tensorflow")) == expected
    assert hardware.accelerators("an unknown backend") == []
