"""Run folders that cannot lose data: plain names, a marker, one process at a time, atomic writes.

A run folder `<output-dir>/<task>/<run-id>/` is

- **created by its run**: the id is a plain name (never a path), and a marker file written when the folder is
  created records the project, the lesson and the recipe's fingerprint. A folder without this marker is not
  ours: it is never written to, let alone "resumed";
- **locked while it runs**: a second process on the same folder is refused, naming the holder's process id
  (the lock is a `filelock` lock: the operating system releases it when the holder dies, even by SIGKILL);
- **resumed only with an unchanged recipe**: settings that change the result must equal the marker's;
- **never modified after it finished**: `metrics.json`, written last, marks a finished run.

Every state file is written to a temporary name beside its target and renamed into place (`os.replace` is
atomic on one file system), so a kill at any instant leaves either the previous complete file or the new one.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common.config import check_plain_name, settings_block
from common.errors import UserError
from common.umask import follow_umask

MARKER = ".keras-tutorials-run.json"
LOCK = ".lock"
PROJECT = "keras-tutorials"
# Settings that may differ when an interrupted run is resumed: they do not change the numbers.
# (--data-dir may move: the data's own identity is in the fingerprint. --steps-per-execution and --jit-compile
# are not here: both change the numbers, the first by when batch-level callbacks run, the second by XLA's
# fused arithmetic.)
RESUMABLE_CHANGES = {"verbose", "tensorboard", "data_dir", "output_dir", "run_id",
                     "workers", "worker_index"}  # a restarted cluster may get new ports


# ---------------------------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path, data):
    """Write `data` to `path` through a temporary file in the same folder, then rename it into place. The file
    gets the user's umask, as `open` would give it."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        follow_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def atomic_save(save, path):
    """Call `save(temporary_path)` (a Keras saver insisting on the file's ending), then rename into place."""
    path = Path(path)
    ending = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    temporary = path.with_name(f".{path.name[:-len(ending)]}.partial{ending}")
    try:
        save(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_model(model, path):
    atomic_save(model.save, path)


# ------------------------------------------------------------------------------------------------------ lock
class FolderLock:
    """One process per folder: `with FolderLock(folder, "run")`; a second holder is refused with its pid."""

    def __init__(self, folder, what):
        from filelock import FileLock

        self.path = Path(folder) / LOCK
        self.what = what
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self):
        from filelock import Timeout

        # This process's own earlier lock on the folder (a run that ended by an exception in a REPL or a test)
        # is stale: let it go instead of refusing ourselves.
        stale = _HELD.pop(str(self.path.resolve()), None)
        if stale is not None:
            stale.release()
        try:
            self._lock.acquire()
        except Timeout:
            holder = _read_holder(self.path)
            raise UserError(f"{self.what} {self.path.parent} is in use by another process{holder}; wait for "
                            "it to finish or stop it, then rerun.") from None
        except PermissionError:
            raise UserError(f"cannot write to {self.path.parent} (permission denied); choose a folder you "
                            "can write to.") from None
        # No truncation by a contender (filelock opens without O_TRUNC), so the pid stays readable.
        with open(self.path, "w") as file:
            file.write(f"{os.getpid()}\n")
        _HELD[str(self.path.resolve())] = self
        return self

    def release(self):
        if self._lock.is_locked:
            _HELD.pop(str(self.path.resolve()), None)
            self.path.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


_HELD = {}  # lock path -> the FolderLock this process holds on it


def _read_holder(path):
    try:
        pid = Path(path).read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


# ------------------------------------------------------------------------------------------------ run folder
def recipe(config):
    """The settings that decide the numbers: everything but where and how verbosely the run is written."""
    return {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in RESUMABLE_CHANGES}


def fingerprint(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def run_identity(config, data_source=None):
    """Everything that decides a run's numbers: its recipe, the Keras backend that computes it, and the
    identity of the data it reads (`data_fingerprint`). A resume must match all three."""
    import keras

    return {**recipe(config), "backend": keras.backend.backend(), "data": data_fingerprint(data_source)}


def data_fingerprint(source):
    """One digest of what a run reads: the content of every file in the data folder (or the file) it was
    loaded from, so another CSV under the same name, or another --data-dir with other files, is another
    data set; an extracted cache folder is named by what it was extracted from (its stamp); a copy held by a
    library (keras.datasets, TFDS) by its name."""
    from common import data_root

    if source is None or not isinstance(source, Path) or not source.exists():
        return None if source is None else str(source)
    stamp = source / data_root.MARKER
    if stamp.is_file():
        return "extracted " + stamp.read_text()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    digest = hashlib.sha256()
    for path in files:
        relative = path.relative_to(source).as_posix() if source.is_dir() else path.name
        digest.update(f"{relative}\0{data_root.sha256_of(path)}\n".encode())
    return digest.hexdigest()


@dataclasses.dataclass
class Run:
    path: Path
    resumed: bool
    lock: FolderLock

    def folder(self, name=None):
        """The folder for one trained model: the run folder itself, or a named sub-folder."""
        folder = self.path / name if name else self.path
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"{folder} should be a folder of run {self.path} but is a file or a link: the "
                            "run was altered after it stopped; choose another --run-id.")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self):
        self.lock.release()


def start_run(config, data_source=None):
    """Create a new run folder (or reopen this project's own unfinished one with the same recipe, backend and
    data), lock it and write `config.json`. Every refusal happens before anything is written.

    Args:
        config: the lesson's config.
        data_source: the data folder or file the run reads (its splits' `source`), or a library copy's name.
    """
    if config.run_id is not None:
        check_plain_name(config.run_id)
    task_dir = Path(config.output_dir) / config.TASK
    if task_dir.exists() and not task_dir.is_dir():
        raise UserError(f"{task_dir} is a file; --output-dir must name a folder for the runs.")
    settings = run_identity(config, data_source)
    if config.run_id is not None and (task_dir / config.run_id).exists():
        return _reopen(task_dir / config.run_id, config, settings)
    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S") + f"-seed{config.seed}"
    path = task_dir / run_id
    try:
        task_dir.mkdir(parents=True, exist_ok=True)
        if config.run_id is None and path.exists():  # two runs started in the same second: keep both
            path = Path(f"{path}-{os.getpid()}")
        path.mkdir()
    except FileExistsError:
        raise UserError(f"{path} was created by another process just now; choose another --run-id.") from None
    except PermissionError:
        raise UserError(f"cannot create a run folder in {task_dir} (permission denied); choose a writable "
                        "--output-dir.") from None
    lock = FolderLock(path, "run").acquire()
    write_json(path / MARKER, {"project": PROJECT, "task": config.TASK, "fingerprint": fingerprint(settings),
                               "recipe": settings, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    # What the run printed at start: the settings that differ from the lesson file, each with its source.
    atomic_write_text(path / "settings.txt", settings_block(config) + "\n")
    config.run_id = path.name
    write_json(path / "config.json", {"task": config.TASK, **config.to_dict()})
    print(f"run: {path}")
    return Run(path, False, lock)


def _reopen(path, config, settings):
    """Resume `path` if it is this project's own unfinished run with the same `settings` (`run_identity`);
    otherwise refuse."""
    marker = read_marker(path)
    if marker is None or marker.get("task") != config.TASK:
        raise UserError(f"{path} exists but is not a {config.TASK} run folder of this project (no valid "
                        f"{MARKER}); it was left untouched: choose another --run-id.")
    lock = FolderLock(path, "run").acquire()
    try:
        if (path / "metrics.json").exists():
            raise UserError(f"run {path} already finished; choose another --run-id to train again.")
        if fingerprint(settings) != marker.get("fingerprint"):
            before = marker.get("recipe", {})
            changed = sorted(k for k in set(settings) | set(before) if settings.get(k) != before.get(k))
            said = [f"backend {before.get('backend')} -> {settings['backend']}" if k == "backend"
                    else "other data files" if k == "data" else k for k in changed]
            raise UserError(f"run {path} was started with other settings ({', '.join(said)}); rerun the "
                            "original command (same data, same KERAS_BACKEND) to resume it, or choose "
                            "another --run-id.")
        check_run_contents(path)
    except BaseException:
        lock.release()
        raise
    print(f"resuming: {path}")
    return Run(path, True, lock)


# What a run writes has a kind: these endings are files, everything else without one a folder.
FILE_ENDINGS = (".csv", ".json", ".keras", ".h5", ".npz", ".png", ".txt", ".md", ".html", ".partial", LOCK)


def check_run_contents(path):
    """Refuse to resume a run whose files were replaced by folders, folders by files, or anything by a link
    (a resume follows nothing it did not write itself)."""
    for entry in sorted(Path(path).rglob("*")):
        if "tensorboard" in entry.relative_to(path).parts:
            continue  # TensorBoard's own event files and folders
        wrong = ("a link" if entry.is_symlink()
                 else "a folder" if entry.name.endswith(FILE_ENDINGS) and entry.is_dir()
                 else "a file" if "." not in entry.name and not entry.is_dir() else None)
        if wrong:
            raise UserError(f"{entry} is {wrong}, which run {path} never writes there: the run was altered "
                            "after it stopped; choose another --run-id.")


def read_marker(path):
    """The marker of a run folder, or None when the folder is not one of this project's runs."""
    try:
        marker = read_json(Path(path) / MARKER)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("project") == PROJECT else None
