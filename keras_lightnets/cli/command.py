"""The one parser class and the one wrapper behind every ``lightnets`` subcommand and tool script.

A subcommand is a module of ``keras_lightnets.cli`` with:

- ``HELP``: its line in ``lightnets --help``; ``DESCRIPTION``: the top of its own ``--help``;
- ``INTERRUPTED``: what the line printed on Ctrl-C adds after ``interrupted`` ("" for nothing);
- ``add_arguments(parser)``: its options, numbers typed with ``cli._args``;
- ``run(args) -> int``: the work; returns 0 (or 1 after reporting a partial failure itself with
  ``report_error``) and raises for anything else;
- optionally ``error_hint(args, err) -> str``: text appended to the error line of ``err``.

``run_subcommand`` (through ``run_guarded``) turns whatever ``run`` raises into one line on stderr
and an exit code:
``errors.InputError`` (bad input: arguments, files, folders, numbers) ``<name>: error: <message>``
and 2; any other exception ``<name>: error: <Type>: <message>`` and 1; Ctrl-C
``<name>: interrupted...`` and 1 (a running ``fit`` first finishes its step:
``training.interrupt``). ``Parser`` reports usage errors the same way (one line, 2), and while a
command works each warning is one line (``<name>: warning: <message>``). ``<name>`` is the
program the user ran: ``lightnets``, or a tool's own name.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from keras_lightnets import errors
from keras_lightnets.cli.console import one_line_warnings
from keras_lightnets.training import interrupt

PROGRAM = "lightnets"


def report_error(name: str, message: object) -> None:
    """``<name>: error: <message>`` as one line on stderr."""
    print(f"{name}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def describe(err: BaseException) -> str:
    """``err`` in one line: an ``InputError``'s message alone, any other error's after its class name."""
    text = errors.one_line(err)
    return text if isinstance(err, errors.InputError) else f"{type(err).__name__}: {text}"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line, ``<name>: error: <message>``,
    and exit code 2. ``name`` defaults to the first word of ``prog`` (``lightnets`` for the
    subparsers of ``lightnets``)."""

    def __init__(self, *args, name: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name = name or self.prog.split()[0]

    def error(self, message: str) -> NoReturn:
        report_error(self.name, message)
        self.exit(errors.EXIT_BAD_INPUT)


def run_guarded(name: str, work: Callable[[], int], *, interrupted: str = "",
        hint: Callable[[BaseException], str] | None = None) -> int:
    """``work()``'s exit code, warnings shown as one line each; an exception becomes one line on
    stderr (``describe`` plus ``hint(err)``) and ``errors.exit_code(err)``, Ctrl-C
    ``<name>: interrupted<interrupted>`` and 1 (during training, after the current step:
    ``training.interrupt``)."""
    try:
        with warnings.catch_warnings(), interrupt.stop_between_steps(f"{name}: "):
            warnings.showwarning = one_line_warnings(name)
            return work()
    except KeyboardInterrupt:
        print(f"{name}: interrupted{interrupted}", file=sys.stderr, flush=True)
        return errors.EXIT_FAILURE
    except Exception as err:  # one line, not a traceback
        report_error(name, describe(err) + (hint(err) if hint else ""))
        return errors.exit_code(err)


def run_subcommand(module: ModuleType, args: argparse.Namespace, name: str = PROGRAM) -> int:
    """Run subcommand ``module`` with its parsed ``args`` through ``run``; returns the exit code."""
    hint = getattr(module, "error_hint", None)
    return run_guarded(name, lambda: module.run(args), interrupted=module.INTERRUPTED,
               hint=None if hint is None else functools.partial(hint, args))


def main(module: ModuleType, argv: Sequence[str] | None = None, *, prog: str, name: str | None = None) -> int:
    """Subcommand ``module`` as a program of its own (a tool script, ``python -m``): parse ``argv``
    (default ``sys.argv[1:]``) with a ``Parser`` called ``prog`` and run; returns the exit code
    (2 for a usage error, 0 after ``--help``) instead of raising ``SystemExit``."""
    parser = Parser(prog=prog, description=module.DESCRIPTION, name=name)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a usage error (already reported) or --help
        return int(done.code or 0)
    return run_subcommand(module, args, parser.name)
