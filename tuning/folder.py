"""The rules of a search folder, `tuning_runs/<task>/<name>/`, the same as a run folder's:

- it lies where `--directory` and `--name` say, and nothing is created before every check has passed;
- one process at a time works in it: its lock file is held for the search's life (in distributed mode by
  the chief; the workers share the folder under its lock), and a second process is refused, naming the
  holder;
- `search.json` records the settings the search started with, and a rerun resumes it only if they are the
  same (settings that do not change results, such as verbosity, `--max-trials` or the data folder, may
  differ); otherwise it is refused with the names of the settings that differ;
- a folder whose KerasTuner files were removed or edited (`oracle.json`, a `trial_<id>/trial.json`) is
  refused, naming the file, before KerasTuner reads it.
"""

import json
import os
import shutil
from pathlib import Path

from common import runs
from common.errors import UserError

SETTINGS_NAME = "search.json"
ORACLE_NAME = "oracle.json"
# What a search whose KerasTuner files are damaged or gone can do instead of resuming.
START_AFRESH = "rerun with --overwrite to start it afresh, or choose another --name"


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
    # The profile (and any other setting recorded both for the search and in its base config) is named once.
    return list(dict.fromkeys(changed))


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
    """One sentence, instead of KerasTuner's traceback on reload, for a state file that is damaged or gone.

    KerasTuner reloads a search from `oracle.json` (the order of its trials, the ones running, the retry
    queue) and one `trial_<id>/trial.json` per trial. The oracle is saved right after the first trial's file,
    and every trial's file before the oracle lists it, so two states come only from files removed or edited
    by hand: a started search without `oracle.json`, and a trial the oracle lists without its trial.json.
    """
    folder = Path(folder)
    for path in folder.glob("*.json"):
        _read_object(path, "not a JSON object")
    trials = {path.parent.name.removeprefix("trial_"): _load_trial(path)
              for path in sorted(folder.glob("trial_*/trial.json"))}
    oracle_path = folder / ORACLE_NAME
    if not oracle_path.exists():
        tuner_files = [path.name for path in folder.glob("*.json")
                       if path.name not in (SETTINGS_NAME, ORACLE_NAME, "best.json")]
        # A kill between the first trial's two saves leaves that one trial, RUNNING, and no oracle yet.
        first_trial_only = len(trials) == 1 and next(iter(trials.values())).status == "RUNNING"
        if tuner_files or (trials and not first_trial_only):
            raise UserError(f"{oracle_path} is missing (KerasTuner's record of the search), so search "
                            f"{folder} cannot resume; {START_AFRESH}.")
        return
    listed = _listed_trials(oracle_path)
    missing = sorted((tid for tid in listed if tid not in trials), key=lambda tid: (len(tid), tid))
    if missing:
        path = folder / f"trial_{missing[0]}" / "trial.json"
        raise UserError(f"{path} is missing (oracle.json lists trial {missing[0]}), so search {folder} "
                        f"cannot resume; {START_AFRESH}.")


def _damaged(path, why):
    return UserError(f"{path} is damaged ({why}), so the search cannot resume; {START_AFRESH}.")


def _read_object(path, why):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _damaged(path, "not valid JSON") from None
    except IsADirectoryError:
        raise _damaged(path, "a folder where a file belongs") from None
    if not isinstance(data, dict):
        raise _damaged(path, why)
    return data


def _load_trial(path):
    """The trial in `path` as KerasTuner's reload reads it, or one sentence naming the file."""
    from keras_tuner.engine.trial import Trial

    try:
        trial = Trial.from_state(_read_object(path, "not a JSON object"))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _damaged(path, "not a KerasTuner trial") from None
    if trial.trial_id != path.parent.name.removeprefix("trial_"):
        raise _damaged(path, f"it holds trial {trial.trial_id}, not the one its folder is named after")
    return trial


def _listed_trials(path):
    """The trial ids `oracle.json` refers to (KerasTuner 1.4.8's `Oracle.get_state`)."""
    state = _read_object(path, "not a JSON object")
    lists = [state.get(key) for key in ("start_order", "end_order", "retry_queue")]
    ongoing = state.get("ongoing_trials")
    if not all(isinstance(ids, list) for ids in lists) or not isinstance(ongoing, dict):
        raise _damaged(path, "not KerasTuner's record of a search")
    return {str(tid) for ids in [*lists, list(ongoing.values())] for tid in ids}


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
