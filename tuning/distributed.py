"""A distributed search on this machine: one KerasTuner chief (the oracle) and N workers (the trials).

    python -m tuning.distributed --workers 2 -- --task phone_price --tuner random --max-trials 12

Everything after `--` goes to `python -m tuning.search` unchanged. This is KerasTuner's own chief/worker
protocol (gRPC), nothing re-implemented: each process gets the environment variables

    KERASTUNER_TUNER_ID      chief, tuner0, tuner1, ...
    KERASTUNER_ORACLE_IP     address the chief listens on (here 127.0.0.1)
    KERASTUNER_ORACLE_PORT   its port

On several machines, start the same search command on each with those three variables set by hand: the
chief on one machine (`KERASTUNER_TUNER_ID=chief`, `KERASTUNER_ORACLE_IP=<its address>`), one worker per
GPU elsewhere (`KERASTUNER_TUNER_ID=tuner<i>`, the chief's address and port). All of them must see the
same `--directory` (a shared file system) and use the same search arguments. The chief hands out trials,
collects results, writes the report when the last trial ends, and exits by itself; workers exit when the
oracle has no more trials.

A search folder is the same in both modes: a search started with `python -m tuning.search` resumes here
(same --directory and --name), and a distributed one resumes as a plain search; finished trials are kept
and count towards --max-trials.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import EXIT_USER_ERROR, UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tuner_id, search_args, ip, port):
    env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=ip,
               KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "tuning.search", *search_args], cwd=ROOT, env=env)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    search_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own_args = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m tuning.distributed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes")
    parser.add_argument("--port", type=int, help="oracle port (default: a free one)")
    parser.add_argument("--timeout", type=float, help="seconds before every process is stopped")
    args = parser.parse_args(own_args)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}.")
    if not search_args:
        raise UserError("give the search arguments after --, e.g. -- --task phone_price --max-trials 12.")
    port = args.port or free_port()
    print(f"chief on 127.0.0.1:{port}, {args.workers} worker(s): "
          f"python -m tuning.search {' '.join(search_args)}", flush=True)
    chief = start("chief", search_args, "127.0.0.1", port)
    workers = [start(f"tuner{i}", search_args, "127.0.0.1", port) for i in range(args.workers)]
    deadline = time.monotonic() + args.timeout if args.timeout else None
    processes = [*workers, chief]  # the chief ends last: it waits for the last trial to end
    stopped = []
    try:
        while any(process.poll() is None for process in processes):
            if chief.poll() not in (None, 0):
                break  # the chief refused or failed: with no oracle, the workers would wait for ever
            if deadline is not None and time.monotonic() > deadline:
                raise UserError(f"the search did not finish within --timeout {args.timeout:g} s; "
                                "processes stopped.")
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
                stopped.append(process)
    if chief.returncode == EXIT_USER_ERROR:  # the chief's own sentence is above: say what became of the rest
        rest = f"; {len(stopped)} worker(s) waiting for trials were stopped" if stopped else ""
        raise UserError(f"the search's chief process ended with the error above{rest}.")
    codes = [process.returncode for process in processes]
    names = [f"tuner{i}" for i in range(args.workers)] + ["chief"]
    failed = [name for name, code in zip(names, codes, strict=True) if code]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main, interrupted="interrupted: rerun the same command to resume the search from its folder; "
            "finished trials are kept.")
