"""The ``lightnets`` command: ``list``, ``info``, ``train``, ``compress``, ``export``, ``bench``, ``demo``, ``detect``.

Each subcommand is a module of this package (``list_models``, ``info``, ``train``, ...) that
parses its arguments and calls the library; ``cli.command`` holds the one parser class and the one
wrapper that maps errors to exit codes (see there for a subcommand's parts). ``detect`` is a
group (``detect train``, ``detect eval``): its own subparsers set ``args.subcommand`` to the
chosen module (``cli.detect``).

Exit codes: 0 success, 2 bad input (arguments, files, folders, numbers:
``errors.InputError``), 1 a failure while working; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_lightnets.cli.command import PROGRAM, Parser, run_subcommand


def build_parser() -> argparse.ArgumentParser:
    """The ``lightnets`` parser with every subcommand (usage errors exit 2 with one line)."""
    from keras_lightnets._version import __version__

    # imported here: `python -m keras_lightnets.cli.train` imports this package before running that module
    from keras_lightnets.cli import bench, compress, demo, detect, export, info, list_models, train

    subcommands = {"list": list_models, "info": info, "train": train, "compress": compress, "export": export,
                   "bench": bench, "demo": demo, "detect": detect}
    parser = Parser(prog=PROGRAM, description="Lightweight image classifiers for Keras.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, module in subcommands.items():
        subparser = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(subparser)
        subparser.set_defaults(subcommand=module)  # a group's subparsers set their own module
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightnets`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code (usage
    errors and ``--help``/``--version`` exit through ``SystemExit``, as argparse does)."""
    args = build_parser().parse_args(argv)
    return run_subcommand(args.subcommand, args)


if __name__ == "__main__":
    sys.exit(main())
