"""Helpers for benchmark scripts: machine/version facts and rewriting one section of RESULTS.md."""

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEvery section is written by the script named in it; rerun the command to "
          "reproduce it. Timings are wall-clock on the machine stated.\n")


def machine_facts():
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu}, {os.cpu_count()} cores, " + (f"{len(gpus)} GPU(s)" if gpus else "no GPU"),
        "versions": f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}"
                    f" ({keras.backend.backend()} backend)",
        "commit": _git_commit(),
    }


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=RESULTS.parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measured():
    """Date, CPU and commit in one line: the provenance of a table row that is kept across runs."""
    facts = machine_facts()
    return f"{facts['date']}, {facts['machine'].split(',')[0]}, commit {facts['commit']}"


def facts_block(command):
    facts = machine_facts()
    return (f"- date: {facts['date']}\n- machine: {facts['machine']}\n- versions: {facts['versions']}\n"
            f"- commit: {facts['commit']}\n- command: `{command}`\n")


def write_section(name, body):
    """Replace (or append) the section between the markers for `name` in RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def publish(name, body):
    """Write a benchmark's section into RESULTS.md and show it."""
    write_section(name, body)
    print(body)


def command_line(module):
    """How this benchmark was started, for the results file: `python -m benchmarks.<name> [args]`."""
    return " ".join(["python -m", module, *sys.argv[1:]])
