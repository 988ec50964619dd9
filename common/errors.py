"""One kind of error for everything a user can get wrong, and the CLI wrapper that reports it.

Missing data, malformed files and bad flag values are not bugs in the program, so they must not end in a
traceback: they raise `UserError`, and `run_cli` prints its one sentence and exits with code 2 (the same
code argparse uses for a bad command line). A folder the user cannot write to (read-only runs/ or cache),
or a full disk, is the same kind of mistake wherever it shows up, so `run_cli` reports those too.
"""

import errno
import sys
from pathlib import Path

EXIT_USER_ERROR = 2

# OSErrors that say something about the user's folders or disk, not about this program.
_ENVIRONMENT_ERRNOS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                       errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the disk",
                       errno.EDQUOT: "disk quota exceeded"}


class UserError(Exception):
    """Something the user can fix: the message says what was expected and where."""


def printable(text):
    """`text` with control characters (terminal escapes, NUL, line breaks) shown as escapes: a message that
    quotes a file name or a file's content stays one harmless line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def describe_os_error(error):
    """One sentence for a folder the user cannot write to or a full disk; None for any other OSError."""
    reason = _ENVIRONMENT_ERRNOS.get(getattr(error, "errno", None))
    if reason is None:
        return None
    if not error.filename:
        return f"{reason} ({error.strerror}); check that the output, run and cache folders are writable."
    path = Path(error.filename)
    folder = next((p for p in (path, *path.parents) if p.exists()), path)
    folder = folder if folder.is_dir() else folder.parent
    return (f"cannot write {path}: {reason} (in the folder {folder}); make it writable or choose another "
            "place (--output-dir for runs, --output for predictions, KERAS_TUTORIALS_CACHE for the cache).")


INTERRUPTED = "interrupted: rerun the same command with --run-id to resume from the last epoch."


def run_cli(main, argv=None, interrupted=INTERRUPTED):
    """Call `main(argv)` and turn a `UserError` into one line on stderr and exit code 2; on Ctrl-C, print
    `interrupted` (how this command resumes: a lesson's run by --run-id, a search by its folder) and exit
    130."""
    try:
        code = main(argv)
    except UserError as error:
        _fail(str(error))
    except OSError as error:
        message = describe_os_error(error)
        if message is None:
            raise
        _fail(message)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def _fail(message):
    print(f"error: {printable(message)}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)
