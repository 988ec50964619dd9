"""Train one lesson with several worker processes on this machine: the launcher for
`--distribution multi_worker` (TensorFlow).

    python -m tasks.distributed --workers 2 -- python -m tasks.cifar10 --profile quick --run-id cifar-2w

`--mode data_parallel` starts JAX processes (keras.distribution.initialize) the same way; they train, but the
lessons refuse to run so for now (Keras 3.15's predict cannot gather outputs across JAX processes, see
common/distribution.py), so it serves scripts that only train, such as tests/distribution_probe.py.

Everything after `--` is the lesson's command, unchanged but for three flags the launcher adds:
`--distribution <mode>` (unless the command names multi_worker or data_parallel itself), `--workers` (a free
loopback port per process, the chief first) and `--worker-index`. Each process's output comes back line by
line behind its name (`[chief]`, `[worker1]`, ...). Worker 0, the chief, writes the run folder; the others
write scratch folders that are removed at the end.

The launcher returns the chief's exit code. When a worker fails first, the cluster cannot go on (the engines'
collectives wait for every worker): the launcher stops the other processes and returns that worker's code (1
for a process killed by a signal). With `--max-restarts N` it instead starts the whole cluster again, up to N
times, after a crash or a kill (not after a usage error, exit code 2); the command must then name a
`--run-id`, so that the chief resumes from its last finished epoch and the workers take its state.

On several machines there is no launcher: start the same command on every host with the same `--workers` list
and its own `--worker-index` (0 on the chief), or with TF_CONFIG; see the README and deploy/ for Slurm and
Kubernetes.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
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


def stream(pipe, prefix, out):
    """Copy a process's output line by line, each behind its name."""
    for line in iter(pipe.readline, ""):
        out.write(f"{prefix}{line}" if line.endswith("\n") else f"{prefix}{line}\n")
        out.flush()
    pipe.close()


def start(command, name):
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               bufsize=1, errors="replace", env={**os.environ, "PYTHONUNBUFFERED": "1"})
    process.readers = [threading.Thread(target=stream, args=(pipe, f"[{name}] ", out), daemon=True)
                       for pipe, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))]
    for reader in process.readers:
        reader.start()
    print(f"started {name} (pid {process.pid})", flush=True)
    return process


def stop(processes):
    """Terminate every process still running; kill those that do not exit within the grace period."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for process in processes:
        for reader in process.readers:
            reader.join(timeout=5)


def run_once(command, mode, workers, host, deadline):
    """Start the cluster, wait for it; returns (exit code, whether a restart may help)."""
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    processes = [start(lesson_command(command, mode, addresses, i), name)
                 for i, name in enumerate(names(workers))]
    chief = processes[0]
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
            failed = [(name, p) for name, p in zip(names(workers), processes, strict=True) if p.poll()]
            if chief.poll() is not None or failed:
                break
            time.sleep(0.2)
        if chief.poll() == 0:  # the run is complete; workers end right after the last collective
            finish_by = time.monotonic() + FINISH_GRACE_S
            while any(p.poll() is None for p in processes) and time.monotonic() < finish_by:
                time.sleep(0.2)
    finally:
        stop(processes)
    if chief.returncode == 0:
        return 0, False
    name, culprit = failed[0] if failed else ("chief", chief)
    code = culprit.returncode if culprit.returncode > 0 else 1  # negative: killed by a signal
    print(f"{name} ended with exit code {culprit.returncode}; every other process was stopped",
          file=sys.stderr, flush=True)
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
