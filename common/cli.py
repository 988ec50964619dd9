"""The command line of a task script: `train` (the default) with one flag per config field, plus sub-commands.

    python -m tasks.phone_price --profile smoke --epochs 3
    python -m tasks.phone_price predict --run runs/phone_price/<run-id>
"""

import argparse
import logging
import os
import sys

from common import console
from common.config import add_config_arguments, config_from_namespace, help_legend, settings_block
from common.errors import run_cli


def quiet_tensorflow():
    """Hide TensorFlow's start-up noise (CUDA probing, oneDNN notices); real warnings and errors still show.

    Call it before anything imports TensorFlow: the native lines of its import are filtered on file
    descriptor 2 (see common/console.py), the later C++ info logs by TF_CPP_MIN_LOG_LEVEL.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Retracing notices appear whenever a script builds several models; they are advice, not errors.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    console.quiet_import("tensorflow")


# Where the help of a flag starts in `--help`: flags up to this wide share its line.
FLAG_COLUMN = 28


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """A lesson's `--help`: the description as written, a wider flag column, `--[no-]flip` for a switch."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=FLAG_COLUMN)

    def _format_action_invocation(self, action):
        if isinstance(action, argparse.BooleanOptionalAction) and len(action.option_strings) == 2:
            return action.option_strings[0].replace("--", "--[no-]", 1)
        return super()._format_action_invocation(action)


def task_main(config_cls, train, description, commands=None, prog=None):
    """Return `main(argv)` for a task: `[train] [flags]`, or `<command> [args]` for each extra command.

    Args:
        config_cls: the lesson's config dataclass (its fields are the flags).
        train: train(config) -> exit code, run for `[train] [flags]`.
        description: the text of `--help`.
        commands: extra commands: name -> (add_arguments(parser), handler(namespace)).
        prog: the program name in usage lines; default `python -m tasks.<task>`.
    """
    commands = dict(commands or {})
    prog = prog or f"python -m tasks.{config_cls.TASK}"

    def main(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in commands:
            name = argv.pop(0)
            add_arguments, handler = commands[name]
            parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=handler.__doc__)
            add_arguments(parser)
            return handler(parser.parse_args(argv))
        if argv and argv[0] == "train":
            argv.pop(0)
        parser = argparse.ArgumentParser(
            prog=prog, usage=f"{prog} [train] [--profile NAME] [--config JSON] [--FLAG VALUE ...]",
            description=description, formatter_class=HelpFormatter,
            epilog=help_legend(config_cls) + "\ncommands: train (default)"
            + "".join(f", {name}" for name in commands) + f"; '{prog} <command> --help' explains one.")
        add_config_arguments(parser, config_cls)
        config = config_from_namespace(config_cls, parser.parse_args(argv))
        print(settings_block(config), flush=True)
        from common import distribution

        distribution.setup(config)  # before the backend lists its devices: multi-process engines come first
        print(console.runtime_summary(config), flush=True)
        return train(config)

    return main


def run(main, interrupted=None):
    """Entry point used by `if __name__ == "__main__"` blocks: stderr filtered for the whole run (noise
    such as tf.data's NodeDef error comes long after start-up), user errors as one line; `interrupted`: what
    Ctrl-C says (default: how a lesson run resumes)."""
    console.start_filter()
    run_cli(main, **({"interrupted": interrupted} if interrupted else {}))
