"""``lightnets export``: the TFLite converter as a subcommand (see ``keras_lightnets.export.convert``).

Model files are loaded by ``keras_lightnets.model_files`` (no stored Python code runs
without ``--unsafe``); exit codes 0, 2 (bad input, unsafe model file), 1 (failure).

Wiring, in ``build_parser``::

    p = commands.add_parser("export", help="convert a model to TensorFlow Lite")
    export.add_arguments(p)
    p.set_defaults(run=export.run)
"""

from __future__ import annotations

import argparse

from keras_lightnets.export import convert

PROG = "lightnets export"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the converter's options to the ``export`` subparser."""
    convert.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Convert as ``tools/convert_tflite.py`` does; exit code 0, 1 (failure) or 2 (bad arguments or data)."""
    return convert.run(args, prog=PROG)
