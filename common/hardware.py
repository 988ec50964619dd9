"""What this machine has: every probe of the CPU and the accelerators, in one place.

    cpu_model()                 "Intel(R) Xeon(R) Platinum 8488C" (/proc/cpuinfo; else what `platform` says)
    cpu_cores()                 cores this process may run on (a container or `taskset` may allow fewer)
    machine_cores()             cores the machine has (`os.cpu_count`)
    cpu_computes_bfloat16()     whether the CPU has bfloat16 arithmetic (AVX-512 BF16, AMX)
    accelerators(backend)       names of the GPUs (or TPUs) a Keras backend sees; [] on a CPU-only machine
    imported_accelerators()     the same, asking only a framework this process has already imported
    list_devices(kind)          TensorFlow's physical devices of one kind ("GPU", "CPU", or every kind)
    compute_dtype(config)       what a run computes in: float32, or the fast 16-bit type of this hardware

Nothing else in the project reads /proc/cpuinfo or asks a framework for its devices (tests/floors_test.py
checks it). This module imports only the standard library at its top; each framework is imported inside the
function that asks it, so `--help`, the pages and the benchmarks' rendering stay free of TensorFlow.
"""

import functools
import os
import platform
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags of bfloat16 arithmetic units


# ---------------------------------------------------------------------------------------------------- the CPU
@functools.cache  # the CPU does not change during a run; every model build asks
def _cpuinfo():
    try:
        return CPUINFO.read_text()
    except OSError:  # not Linux, or no /proc
        return ""


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows (often only "x86_64")."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags():
    """The CPU's feature flags (the `flags` lines of /proc/cpuinfo); empty where there is no /proc/cpuinfo."""
    return frozenset({flag for line in _cpuinfo().splitlines() if line.startswith("flags")
            for flag in line.split(":", 1)[-1].split()})


def cpu_computes_bfloat16():
    """True when the CPU has bfloat16 arithmetic (x86 flags avx512_bf16 or amx_bf16; Linux only)."""
    return any(flag in cpu_flags() for flag in BFLOAT16_FLAGS)


def cpu_cores():
    """Cores this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_cores():
    """Cores the machine has, whatever this process may use of them."""
    return os.cpu_count()


# ----------------------------------------------------------------------------------------------- accelerators
def list_devices(kind=None):
    """TensorFlow's physical devices of `kind` ("GPU", "CPU"; None: every kind). The first call probes CUDA
    (common/console.py makes it while the start-up noise is filtered)."""
    import tensorflow as tf

    return tf.config.list_physical_devices(kind)


def accelerators(backend):
    """Names of the GPUs (or TPUs) the Keras backend sees; empty on a CPU-only machine."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in list_devices("GPU")]
    if backend == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform != "cpu"]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            return ["Apple MPS"]
    return []


def imported_accelerators():
    """`accelerators` as a framework this process already imported sees them (TensorFlow first, then PyTorch
    with CUDA, then JAX), importing none; None when no framework is loaded (nothing was asked)."""
    if "tensorflow" in sys.modules:
        return accelerators("tensorflow")
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        return accelerators("torch")
    if "jax" in sys.modules:
        return accelerators("jax")
    return None


# ----------------------------------------------------------------------------------------- what to compute in
def compute_dtype(config):
    """float32, or the 16-bit type `--mixed-precision` computes in: `mixed_dtype`, with "auto" resolved to
    float16 on a GPU (or TPU), bfloat16 on a CPU with bfloat16 arithmetic (AVX-512 BF16, AMX), else float32:
    float16 on a CPU, and bfloat16 on one that emulates it, are slower than float32."""
    if not getattr(config, "mixed_precision", False):
        return "float32"
    wanted = getattr(config, "mixed_dtype", "auto")
    if wanted != "auto":
        return wanted
    import keras

    if accelerators(keras.backend.backend()):
        return "float16"
    return "bfloat16" if cpu_computes_bfloat16() else "float32"
