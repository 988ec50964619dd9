"""Train one lesson with several worker processes on this machine: the launcher for
`--distribution multi_worker` (TensorFlow).

    python -m tasks.distributed --workers 2 -- python -m tasks.cifar10 --profile quick --run-id cifar-2w

`--mode data_parallel` starts JAX processes (keras.distribution.initialize) the same way; they train, but the
lessons refuse to run so for now (Keras 3.15's predict cannot gather outputs across JAX processes, see
common/distribution.py), so it serves scripts that only train, such as tests/distribution_probe.py.

Everything after `--` is the lesson's command, unchanged but for three flags the launcher adds:
`--distribution <mode>` (unless the command names multi_worker or data_parallel itself), `--workers` (a free
loopback port per process, the chief first) and `--worker-index`. The processes run in the current folder, so
relative paths in the command mean what they mean to the lesson run alone. Each process's output comes back
line by line behind its name (`[chief]`, `[worker1]`, ...). Worker 0, the chief, writes the run folder; the
others write scratch folders that are removed at the end.

The launcher returns the chief's exit code. When a worker fails first, the cluster cannot go on (the engines'
collectives wait for every worker): the launcher stops the other processes and returns that worker's code (1
for a process killed by a signal); only the first failed process's error output is shown, not the tracebacks
of the others' collectives that failed with it. With `--max-restarts N` it instead starts the whole cluster
again, up to N times, after a crash or a kill (not after a usage error, exit code 2); the command must then
name a `--run-id`, so that the chief resumes from its last finished epoch and the workers take its state.

On several machines there is no launcher: start the same command on every host with the same `--workers` list
and its own `--worker-index` (0 on the chief), or with TF_CONFIG; see the README and deploy/ for Slurm and
Kubernetes.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import EXIT_USER_ERROR, UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
MODES = ("multi_worker", "data_parallel")
STOP_GRACE_S = 10  # how long a stopped process may take to exit before it is killed
FINISH_GRACE_S = 60  # how long workers may take to exit after the chief finished


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports free on `host` now (held together while chosen, so none is picked twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def names(workers):
    return ["chief"] + [f"worker{i}" for i in range(1, workers)]


def lesson_command(command, mode, addresses, index):
    """The lesson's command for process `index`: `python` is this interpreter; the cluster flags added."""
    command = list(command)
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    flags = ["--workers", ",".join(addresses), "--worker-index", str(index)]
    if not any(arg == "--distribution" or arg.startswith("--distribution=") for arg in command):
        flags = ["--distribution", mode, *flags]
    return command + flags


def check_command(command, restarts):
    if not command:
        raise UserError("give the lesson's command after --, e.g. -- python -m tasks.phone_price "
                        "--profile smoke.")
    for flag in ("--workers", "--worker-index"):
        if any(arg == flag or arg.startswith(flag + "=") for arg in command):
            raise UserError(f"the launcher sets {flag} itself; remove it from the lesson's command.")
    for i, arg in enumerate(command):
        value = arg.split("=", 1)[1] if arg.startswith("--distribution=") else (
            command[i + 1] if arg == "--distribution" and i + 1 < len(command) else None)
        if value is not None and value not in MODES:
            raise UserError(f"the lesson's command asks for --distribution {value}; the launcher runs "
                            f"{' or '.join(MODES)}.")
    if restarts and not any(arg == "--run-id" or arg.startswith("--run-id=") for arg in command):
        raise UserError("--max-restarts needs a --run-id in the lesson's command, so that a restarted "
                        "cluster resumes that run instead of starting a new one.")


class Output:
    """One process's stderr, copied line by line behind its name, except what a failing cluster repeats: when
    a worker dies, the others' collectives fail too, and the chief prints a long TensorFlow traceback. So from
    a `Traceback` line on, and for every line once a process has failed, a process's stderr is held; when
    every process has ended, the process that failed first shows what it held and the others' is left out."""

    def __init__(self, prefix, failing):
        self.prefix, self.failing = prefix, failing
        self.held = []
        self.lock = threading.Lock()

    def write(self, line):
        with self.lock:
            if self.held or self.failing.is_set() or line.startswith("Traceback (most recent call last)"):
                self.held.append(line)
            else:
                _write(sys.stderr, self.prefix, [line])

    def release(self, show):
        """Print the held lines (show) or drop them; returns how many were dropped."""
        with self.lock:
            held, self.held = self.held, []
            if show:
                _write(sys.stderr, self.prefix, held)
        return 0 if show else len(held)


def _write(out, prefix, lines):
    for line in lines:
        out.write(f"{prefix}{line}")
    out.flush()


def stream(pipe, write):
    """Copy a process's output line by line."""
    for line in iter(pipe.readline, ""):
        write(line if line.endswith("\n") else line + "\n")
    pipe.close()


class Cluster:
    """The processes of one attempt, and the order in which they ended."""

    def __init__(self):
        self.processes, self.ended = [], []
        self.changed = threading.Condition()
        self.failing = threading.Event()  # set as soon as a process ends with an error

    def start(self, command, name, env):
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       bufsize=1, errors="replace", env=env)
        except OSError as error:
            message = (f"cannot start the lesson's command '{command[0]}' ({error.strerror}); expected a "
                       "program such as python, e.g. -- python -m tasks.phone_price --profile smoke.")
            raise UserError(message) from None
        prefix = f"[{name}] "
        process.name, process.err = name, Output(prefix, self.failing)
        process.threads = [threading.Thread(target=target, args=args, daemon=True) for target, args in (
            (stream, (process.stdout, lambda line: _write(sys.stdout, prefix, [line]))),
            (stream, (process.stderr, process.err.write)),
            (self._wait, (process,)))]
        self.processes.append(process)
        for thread in process.threads:
            thread.start()
        print(f"started {name} (pid {process.pid})", flush=True)
        return process

    def _wait(self, process):
        code = process.wait()
        if code:
            self.failing.set()
        with self.changed:
            self.ended.append(process)
            self.changed.notify_all()

    def wait_until(self, done, deadline=None):
        """Wait until `done()` (called under the lock) or the deadline; returns whether it is done."""
        with self.changed:
            while not done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.changed.wait(timeout=1 if left is None else min(1, left))  # 1 s: signals get through
            return True

    def first_failed(self):
        with self.changed:
            return next((p for p in self.ended if p.returncode), None)

    def stop(self):
        """Terminate every process still running; kill those that do not exit within the grace period."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for process in self.processes:
            for thread in process.threads:
                thread.join(timeout=5)


def run_once(command, mode, workers, host, deadline):
    """Start the cluster, wait for it; returns (exit code, whether a restart may help)."""
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    cluster = Cluster()
    # The processes run in the caller's folder, so relative paths in the command (--output-dir, --config,
    # --data-dir, files) mean what they mean to the lesson run alone; PYTHONPATH finds `-m tasks.<lesson>`.
    # Their temporary files (workers' scratch folders) go to a private folder removed at the end, even after a
    # kill.
    temporary = tempfile.mkdtemp(prefix="keras-tutorials-cluster-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": temporary,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        for i, name in enumerate(names(workers)):
            cluster.start(lesson_command(command, mode, addresses, i), name, env)
        chief = cluster.processes[0]
        if not cluster.wait_until(lambda: chief in cluster.ended or any(p.returncode for p in cluster.ended),
                                  deadline):
            raise TimeoutError
        if chief.returncode == 0:  # the run is complete; workers end right after the last collective
            cluster.wait_until(lambda: len(cluster.ended) == workers, time.monotonic() + FINISH_GRACE_S)
        culprit = None if chief.returncode == 0 else (cluster.first_failed() or chief)
    finally:
        cluster.stop()
        shutil.rmtree(temporary, ignore_errors=True)
    dropped = sum(p.err.release(show=culprit in (None, p)) for p in cluster.processes)
    if culprit is None:
        return 0, False
    code = culprit.returncode if culprit.returncode > 0 else 1  # negative: killed by a signal
    left_out = "; their error output after that is left out" if dropped else ""
    print(f"{culprit.name} ended with exit code {culprit.returncode}; every other process was "
          f"stopped{left_out}", file=sys.stderr, flush=True)
    return code, code != EXIT_USER_ERROR


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    own_args, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m tasks.distributed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="number of processes, the chief included")
    parser.add_argument("--mode", choices=MODES, default="multi_worker",
                        help="--distribution given to the lesson, unless its command names one")
    parser.add_argument("--host", default="127.0.0.1", help="address the processes listen on")
    parser.add_argument("--max-restarts", type=int, default=0,
                        help="start the whole cluster again after a crash or a kill, up to this many times")
    parser.add_argument("--timeout", type=float, help="seconds before every process is stopped")
    args = parser.parse_args(own_args)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}.")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts must be 0 or more, got {args.max_restarts}.")
    check_command(command, args.max_restarts)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ends through `finally`: children stopped
    for attempt in range(args.max_restarts + 1):
        if attempt:
            print(f"restarting all {args.workers} processes ({attempt} of {args.max_restarts})", flush=True)
        try:
            code, retry = run_once(command, args.mode, args.workers, args.host, deadline)
        except TimeoutError:
            raise UserError(f"the run did not finish within --timeout {args.timeout:g} s; every process was "
                            "stopped.") from None
        if code == 0 or not retry:
            return code
    return code


if __name__ == "__main__":
    run_cli(main)
