"""One kind of error for everything a user can get wrong, and the CLI wrapper that reports it.

Missing data, malformed files and bad flag values are not bugs in the program, so they must not end in a
traceback: they raise `UserError`, and `run_cli` prints its one sentence and exits with code 2 (the same
code argparse uses for a bad command line).
"""

import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix: the message says what was expected and where."""


def run_cli(main, argv=None):
    """Call `main(argv)` and turn a `UserError` into one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command with --run-id to resume from the last epoch.",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
