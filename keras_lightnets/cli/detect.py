"""``lightnets detect SUBCOMMAND``: object detectors from the command line (``train``, ``eval``, ``export``, ``bench``).

A group of subcommands: each is a module of ``keras_lightnets.cli`` named in ``SUBCOMMANDS``,
with the parts of every ``lightnets`` subcommand (``cli.command``: ``HELP``, ``DESCRIPTION``,
``INTERRUPTED``, ``add_arguments``, ``run``, optionally ``error_hint``). ``add_arguments`` gives
each its own subparser and sets ``args.subcommand`` to its module, so ``lightnets`` runs (and
maps the errors of) that module directly, with its own Ctrl-C line and hints. Adding a
subcommand is one module and one entry of ``SUBCOMMANDS``. The modules
share ``cli._detect`` (the ``--data`` options and readers); the detector of a run folder is
``training.detector_record.load_detector``'s.

Runs standalone as ``python -m keras_lightnets.cli.detect SUBCOMMAND ...`` too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from keras_lightnets.cli import command

# name -> module of keras_lightnets.cli
SUBCOMMANDS = {"train": "detect_train", "eval": "detect_eval", "export": "detect_export", "bench": "detect_bench"}
HELP = ("train, evaluate and export object detectors (SSD, SSDLite, RetinaNet): "
        "`lightnets detect train|eval|export|bench --help`")
DESCRIPTION = ("Object detectors: train one on digits, VOC, COCO or TFDS data; measure its mAP and draw its boxes; "
               "convert it to TensorFlow Lite (int8, with its post-processing) and benchmark the files.")
INTERRUPTED = ""


def subcommands() -> dict[str, ModuleType]:
    """``SUBCOMMANDS`` with their modules imported (name -> module)."""
    return {name: importlib.import_module(f"keras_lightnets.cli.{module}") for name, module in SUBCOMMANDS.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subparser per subcommand (usage errors: one line, exit code 2); each sets ``subcommand``
    to its module."""
    commands = parser.add_subparsers(dest="detect_command", required=True, metavar="SUBCOMMAND",
                                     parser_class=command.Parser,
                                     help="what to do: " + ", ".join(subcommands()))
    for name, module in subcommands().items():
        subparser = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(subparser)
        subparser.set_defaults(subcommand=module)


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand (``lightnets`` itself calls it directly, see the module docstring)."""
    return args.subcommand.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m keras_lightnets.cli.detect SUBCOMMAND ...`` (the same as ``lightnets detect ...``)."""
    parser = command.Parser(prog=f"{command.PROGRAM} detect", description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a usage error (already reported) or --help
        return int(done.code or 0)
    return command.run_subcommand(args.subcommand, args, parser.name)


if __name__ == "__main__":
    sys.exit(main())
