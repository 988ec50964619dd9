"""The rules of a search folder, `tuning_runs/<task>/<name>/`, the same as a run folder's:

- it lies where `--directory` and `--name` say, and nothing is created before every check has passed;
- one process at a time works in it: its lock file is held for the search's life (in distributed mode by
  the chief; the workers share the folder under its lock), and a second process is refused, naming the
  holder;
- `search.json` records the settings the search started with, and a rerun resumes it only if they are the
  same (settings that do not change results, such as verbosity, `--max-trials` or the data folder, may
  differ); otherwise it is refused with the names of the settings that differ.
"""

import json
import os
import shutil
from pathlib import Path

from common import runs
from common.errors import UserError

SETTINGS_NAME = "search.json"


def check_location(folder):
    """Refuse, before anything is written, a folder that cannot hold a search of this project."""
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if path.exists() or path == Path(path.anchor))
    if not existing.is_dir():
        raise UserError(f"{existing} is a file where the search needs a folder; --directory (and --name) "
                        "must name folders, which are created if missing.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{existing} is not writable; make it writable or choose another --directory.")
    if existing == folder:
        # Hidden entries are the lock and the temporary files of a write that a kill interrupted.
        entries = {entry.name for entry in folder.iterdir() if not entry.name.startswith(".")}
        if entries and SETTINGS_NAME not in entries:
            raise UserError(f"{folder} exists and was not written by python -m tuning.search (no "
                            f"{SETTINGS_NAME}); choose another --name or --directory.")


def stored_settings(folder):
    """The settings in `folder/search.json`, or None for a new search."""
    path = Path(folder) / SETTINGS_NAME
    if not path.exists():
        return None
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        settings = None
    if not isinstance(settings, dict):
        raise UserError(f"{path} is not a readable search settings file; rerun with --overwrite to start the "
                        "search afresh.")
    return settings


def differences(before, now, same_anyway=()):
    """Names (with both values, when short) of the settings that differ between two `search.json`."""
    missing = "(not recorded)"
    changed = []
    for key, value in now.items():
        if key == "base_config":
            old_config = before.get(key) or {}
            changed += [_describe(name, old_config.get(name, missing), field)
                        for name, field in value.items()
                        if name not in same_anyway and old_config.get(name, missing) != field]
        elif before.get(key, missing) != value:
            changed.append(_describe(key, before.get(key, missing), value))
    return changed


def _describe(name, before, now):
    text = f"{name}: {json.dumps(before)} then, {json.dumps(now)} now"
    return text if len(text) <= 80 else name


def write_settings(folder, settings):
    """Write `search.json` whole or not at all (a kill while writing leaves no half file)."""
    runs.atomic_write_text(Path(folder) / SETTINGS_NAME, json.dumps(settings, indent=2) + "\n")


def normalized(settings):
    """The settings as they read back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(settings))


def lock(folder):
    """`with lock(folder):` one process per search folder (created here, after every check has passed).

    The lock is the operating system's (through the `filelock` package): it is released when the process
    ends, even by SIGKILL, so a killed search never leaves a stale lock behind.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    return runs.FolderLock(folder, "search")


def clear(folder):
    """Empty the folder for `--overwrite`, keeping the lock this process holds in it."""
    for entry in Path(folder).iterdir():
        if entry.name == runs.LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def check_readable(folder):
    """One sentence, instead of KerasTuner's traceback on reload, for a state file that is not JSON."""
    folder = Path(folder)
    for path in [*folder.glob("*.json"), *folder.glob("trial_*/trial.json")]:
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is damaged (not valid JSON), so the search cannot resume; rerun with "
                            "--overwrite to start it afresh.") from None


def write_keras_tuner_files_whole():
    """Make KerasTuner write its state files (oracle.json, trial.json, tuner*.json) whole or not at all.

    KerasTuner 1.4.8 writes them in place through one function, `keras_tuner.src.utils.save_json`; a
    kill while it writes leaves half a file, and the rerun dies reading it. The replacement writes to a
    temporary name and renames it into place (`common.runs.atomic_write_text`).
    """
    from keras_tuner.src import utils

    if getattr(utils.save_json, "writes_whole", False):
        return

    def save_json(path, obj):
        text = json.dumps(obj)
        runs.atomic_write_text(path, text)
        return text

    save_json.writes_whole = True
    utils.save_json = save_json
