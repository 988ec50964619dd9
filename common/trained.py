"""A finished run, read back by the `predict` and `caption` commands: checked, loaded safely, never modified.

- `open_run(folder, task)`: the folder must be a finished run of this lesson (its marker or `config.json`
  names the task, and `metrics.json` is a readable JSON object); returns the metrics.
- `load_model(path)`: `keras.saving.load_model` in Keras' safe mode. A file that holds Python code (a
  `Lambda` layer) is refused, never loaded with `safe_mode=False`; a damaged or foreign file is one sentence.
- `check_output(path)` / `write_output(path, text)`: what a command writes goes to `--output` (its folder is
  created) or to stdout, never into a run folder, and appears whole (temp file, then rename) or not at all.
- `read_review_lines(path)`: a text file of one item per line; binary files are refused, not echoed.
"""

import json
import sys
import zipfile
from pathlib import Path

from common.errors import UserError, printable

# What a damaged, truncated or foreign model file raises inside keras.saving.load_model (zip, JSON, h5py and
# deserialisation errors); anything else is a bug and keeps its traceback.
_LOAD_ERRORS = (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile)


def read_json_file(path, what):
    """A JSON object from `path`, or a UserError saying that the file `what` is missing, empty or damaged."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; {what}.") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is empty or not valid JSON; {what}.") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object; {what}.")
    return data


def run_task(folder):
    """The lesson a run folder belongs to (from its marker, else its config.json), or None."""
    from common import runs

    marker = runs.read_marker(folder)
    if marker is not None:
        return marker.get("task")
    try:
        data = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("task") if isinstance(data, dict) else None


def open_run(folder, task):
    """Check that `folder` is a finished `task` run and return its metrics.json (a dict)."""
    folder = Path(folder)
    expected = f"--run must be a finished {task} run folder (runs/{task}/<run-id>)"
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; {expected}.")
    owner = run_task(folder)
    if owner is None:
        raise UserError(f"{folder} is not a run folder of this project (no run marker or config.json); "
                        f"{expected}.")
    if owner != task:
        raise UserError(f"{folder} is a run of the {owner} lesson; {expected}.")
    if not (folder / "metrics.json").exists():
        raise UserError(f"{folder} has not finished (no metrics.json); {expected}.")
    metrics = read_json_file(folder / "metrics.json", f"the run did not finish writing it: {expected}")
    if not (folder / "model.keras").is_file():
        raise UserError(f"{folder / 'model.keras'} does not exist; {expected}.")
    return metrics


def load_model(path, compile=True):
    """`keras.saving.load_model` in safe mode, with every way a file can be unusable said in one sentence."""
    import keras

    path = Path(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except _LOAD_ERRORS as error:
        if "safe_mode" in str(error):
            raise UserError(f"{path} holds Python code (a Lambda layer) and was not loaded: Keras' safe mode "
                            "refuses to run code from a model file; use a model trained by this "
                            "project.") from None
        raise UserError(f"{path} is not a readable Keras model ({type(error).__name__}); the file is damaged "
                        "or was not written by this project: train the run again.") from None


def expect_input(model, path, ok, expected):
    """Refuse a model whose inputs or outputs are not this lesson's (another lesson's model file)."""
    if not ok:
        raise UserError(f"{path} is not this lesson's model (input {model.input_shape}, output "
                        f"{model.output_shape}; expected {expected}).")


def run_folder_of(path):
    """The run folder holding `path` (a folder with a run marker, or config.json and metrics.json) or None."""
    from common import runs

    for folder in Path(path).resolve().parents:
        if (folder / runs.MARKER).exists() or ((folder / "config.json").exists()
                                               and (folder / "metrics.json").exists()):
            return folder
    return None


def check_output(path, flag="--output", inputs=()):
    """Refuse, before any work, an output file that cannot be written where asked: a folder, a link or a
    device (outputs are written only as regular files, never through a link), one of the command's own
    `inputs`, or a file inside a run folder (a finished run is never modified)."""
    if path is None:
        return
    path = Path(path).expanduser()
    if path.is_symlink():
        raise UserError(f"{flag} {path} is a symbolic link; outputs are written only as regular files, never "
                        "through a link: name a new file or a regular one.")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; expected a file name.")
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path} is a device, pipe or socket, not a regular file; name a new file or "
                        "a regular one (leave --output out to print the rows).")
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
            raise UserError(f"{flag} {path} is also the input; writing there would destroy it: name another "
                            "file.")
    run = run_folder_of(path)
    if run is not None:
        raise UserError(f"{flag} {path} is inside the run folder {run}; runs are never modified after they "
                        "finish: write to a file outside it.")
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a folder.")
            break


def write_output(path, text):
    """`text` to the file `path` (its folder created; written whole or not at all, with the user's umask), or
    to stdout if None. Commands call `check_output` first, before any work."""
    from common import runs

    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(path, text)  # os.replace swaps the name: nothing is written through a link


def read_review_lines(path, what="a text file with one review per line"):
    """The non-empty lines of a text file; a binary file (NUL or other control bytes) is refused."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; expected {what}.")
    if not path.is_file():
        raise UserError(f"{path} does not exist; expected {what}.")
    data = path.read_bytes()
    control = next((i for i, byte in enumerate(data) if byte < 32 and byte not in b"\t\n\r\f\v"), None)
    if control is not None:
        raise UserError(f"{path} is not a text file (control byte 0x{data[control]:02x} at offset "
                        f"{control}); expected {what}.")
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def shown(text, width=80):
    """The start of a user-supplied text, safe to print on a terminal."""
    return printable(text[:width])
