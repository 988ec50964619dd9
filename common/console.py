"""A quiet, honest console: TensorFlow's native start-up noise filtered out, one line saying what runs where.

On a machine without GPU, every TensorFlow import prints lines like

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796040051.305557    4777 port.cc:153] oneDNN custom operations are on. ...
    E0000 00:00:1796040055.202933    4777 cuda_platform.cc:52] failed call to cuInit: ...

which a learner takes for errors. C++ code writes them straight to file descriptor 2 before absl logging is
set up, so TF_CPP_MIN_LOG_LEVEL, GLOG_minloglevel and ABSL_MIN_LOG_LEVEL cannot hide them (measured with
TensorFlow 2.21). The filter therefore works on descriptor 2 itself: it points it at a pipe read by a small
filter process that drops the lines in `NOISE` and passes everything else through unchanged, as it comes.
A separate process, not a thread, so that nothing is lost when the program dies (a native abort, a segfault,
`os._exit`): the filter still drains the pipe and exits when the last writer has gone.

`quiet_import` filters while TensorFlow is imported and its devices are first listed (where the CUDA
probing happens), whoever imports it; `start_filter` filters for the rest of a command-line run (the
tf.data NodeDef error comes only when a pipeline is first run). `TF_CPP_MIN_LOG_LEVEL=0` or `1` in the
environment turns the filter off: whoever asks for TensorFlow's info logs gets all of them.

This module imports only the standard library at its top: `python common/console.py` is the filter process.
The start line asks common/hardware.py (the machine) and Keras inside its functions.
"""

import atexit
import contextlib
import importlib.abc
import importlib.util
import os
import re
import subprocess
import sys

# Messages TensorFlow (2.21, CPU and GPU wheels) prints on every start, none of which a user can act on.
# Each is matched as a substring of one line; a line is dropped only when it carries one of them.
NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",                    # port.cc, at import
    "Could not find cuda drivers on your machine",        # cudart_stub.cc, at import on a machine without GPU
    "failed call to cuInit",                              # cuda_platform.cc, at the first device query
    "NodeDef mentions attribute use_unbounded_threadpool",  # node_def_util.cc, when tf.data first runs a map
    "Unable to register cuDNN factory",                   # GPU wheels: plugins registered twice
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "rebuild TensorFlow with the appropriate compiler flags",  # the second line of the message above
    "successful NUMA node read from SysFS had negative value",  # WSL and some VMs
)
# A native (absl) log line starts like "E0000 00:00:1796040055.202933 ..."; absl writes each line in one
# write() call, so a partial line is held back only while it looks like the start of one of those.
NATIVE_HEADER = re.compile(rb"[IWEF]\d{4} |WARNING: All log messages")
# Only these imports are filtered: the other backends start quietly.
FILTERED_IMPORTS = ("tensorflow",)
FILTER_WAIT_S = 5  # at exit, how long to wait for the filter to pass on the last lines


def is_noise(line):
    """Whether one line (str or bytes, without its newline) is known start-up noise."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return any(message in text for message in NOISE)


def filter_chunk(pending, chunk):
    """Split `pending + chunk` (bytes) into what to write now and what to hold back (an unfinished line).

    Whole lines are written unless they are noise; an unfinished one goes out at once (a progress bar
    redrawn with \\r has no newline) unless it starts like a native log line, which is held until its end.
    """
    *lines, tail = (pending + chunk).split(b"\n")
    out = b"".join(line + b"\n" for line in lines if not is_noise(line))
    if tail and not NATIVE_HEADER.match(tail):
        out, tail = out + tail, b""
    return out, tail


def _pump(source=0, sink=1):
    """The filter process: its stdin (the pipe) to its stdout (the real stderr) until every writer is gone."""
    pending, broken = b"", False
    while True:
        chunk = os.read(source, 65536)
        if chunk:
            out, pending = filter_chunk(pending, chunk)
        else:
            out, pending = (b"" if is_noise(pending) else pending), b""
        while out and not broken:
            try:
                out = out[os.write(sink, out):]
            except BrokenPipeError:  # the reader of stderr has gone: keep draining so writers never block
                broken = True
        if not chunk:
            return


def _flush_python_stderr():
    if sys.stderr is not None:  # None under pythonw
        sys.stderr.flush()


def _filter_wanted():
    return (os.name == "posix" and bool(sys.executable)
            and os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() not in ("0", "1"))


class _Filter:
    """Descriptor 2 sent through the filter process until `stop`."""

    def __init__(self):
        _flush_python_stderr()
        self.saved = os.dup(2)
        read, write = os.pipe()
        try:
            # -I: the filter needs nothing from the environment or the current folder. Its own session keeps
            # a Ctrl-C meant for the program from killing it before the program has said "interrupted".
            self.process = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)], stdin=read,
                                            stdout=self.saved, stderr=self.saved, start_new_session=True)
        except OSError:
            os.close(write)
            os.close(self.saved)
            raise
        finally:
            os.close(read)
        os.dup2(write, 2)
        os.close(write)

    def stop(self):
        _flush_python_stderr()
        os.dup2(self.saved, 2)  # closes this process's end of the pipe: the filter drains it and exits
        os.close(self.saved)
        try:
            self.process.wait(FILTER_WAIT_S)
        except subprocess.TimeoutExpired:
            pass  # a process this one started still holds the pipe; the filter ends when that one does


@contextlib.contextmanager
def filtered_stderr():
    """Drop known start-up noise from descriptor 2 (Python and native writers alike) inside the block."""
    try:
        active = _Filter() if _filter_wanted() else None
    except OSError:  # no descriptor 2, no process to spare: run unfiltered rather than not at all
        active = None
    try:
        yield
    finally:
        if active:
            active.stop()


_run_filter = None


def start_filter():
    """Filter descriptor 2 for the rest of this process (a command-line run); stopped, drained, at exit."""
    global _run_filter
    if _run_filter is not None or not _filter_wanted():
        return
    try:
        _run_filter = _Filter()
    except OSError:
        return
    atexit.register(_run_filter.stop)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the import of one module (TensorFlow) inside `filtered_stderr`, then `after(module)` there too."""

    def __init__(self, name, after=None):
        self.name, self.after = name, after

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once: the real finders locate the module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module, after = spec.loader.exec_module, self.after

        def quiet_exec_module(module):
            with filtered_stderr():
                exec_module(module)
                if after:
                    after(module)

        spec.loader.exec_module = quiet_exec_module
        return spec


def _list_tensorflow_devices(tf):
    """The first device query probes CUDA (cuInit): done here, while the filter runs, and cached by TF."""
    from common import hardware

    try:
        hardware.list_devices()
    except Exception:  # noqa: BLE001 - the same query fails again, visibly, where the program asks for devices
        pass


def quiet_import(name="tensorflow", after=_list_tensorflow_devices):
    """Filter the start-up noise of `name`'s import, whenever and by whomever it is imported."""
    if name in sys.modules or any(isinstance(f, _QuietImport) and f.name == name for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport(name, after))


# ------------------------------------------------------------------------------------------- the start line
def precision_summary(config):
    """Mixed precision off, or on with the dtype it computes in (`--mixed-dtype auto` resolved)."""
    if not getattr(config, "mixed_precision", False):
        return "mixed precision off"
    from common import hardware

    dtype = hardware.compute_dtype(config)
    if dtype == "float32":
        return "mixed precision: float32 (auto: no 16-bit arithmetic on this CPU)"
    return f"mixed precision {dtype}"


def jit_summary(backend, config):
    """What the config's jit_compile means on this backend, with "auto" resolved as Keras resolves it."""
    setting = str(getattr(config, "jit_compile", "auto")).lower()
    name = "torch.compile" if backend == "torch" else "XLA"
    deterministic = backend == "tensorflow" and getattr(config, "deterministic", False)
    if setting == "true" and deterministic:  # Keras turns XLA off under op determinism, with a warning
        return f"{name} off (deterministic ops; --no-deterministic lets --jit-compile true turn it on)"
    if setting in ("true", "false"):
        return f"{name} {'on' if setting == 'true' else 'off'}"
    if backend == "torch":
        return f"{name} off (auto: eager)"
    if deterministic:
        return f"{name} off (auto: deterministic ops)"  # Keras turns XLA off when op determinism is on
    return f"{name} auto (on where every layer supports it)"


def runtime_summary(config=None):
    """One line: Keras and backend versions, devices, and (given a config) mixed precision and XLA."""
    import keras

    from common import hardware

    backend = keras.backend.backend()
    try:
        version = " " + importlib.import_module(backend).__version__
    except (ImportError, AttributeError):
        version = ""
    found = hardware.accelerators(backend)
    parts = [f"keras {keras.__version__} on {backend}{version}",
             "devices: " + (", ".join(found) if found else f"CPU ({hardware.cpu_cores()} cores)")]
    if config is not None:
        parts.append(precision_summary(config))
        parts.append(jit_summary(backend, config))
    return " | ".join(parts)


if __name__ == "__main__":
    _pump()
