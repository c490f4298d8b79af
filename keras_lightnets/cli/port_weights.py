"""``tools/port_weights.py SRC --arch NAME -o OUT.weights.h5``: a torchvision checkpoint as a Keras
``.weights.h5`` file (the porting itself: ``keras_lightnets.weights.port_tool``).

Exit codes as every command: 0 written, 2 bad input (paths, an unknown or torchvision-less
``--arch``, a hostile checkpoint or one that does not fit the architecture), 1 a failure while
working; nothing is written unless the whole file is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from keras_lightnets.cli import command
from keras_lightnets.errors import InputError

PROG = "port_weights"
HELP = "convert a torchvision checkpoint into a Keras .weights.h5 file"
DESCRIPTION = "Convert a torchvision checkpoint into a Keras .weights.h5 file."
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_lightnets.weights.port_tool import OUTPUT_SUFFIX

    parser.add_argument("src", metavar="SRC", help="torchvision state_dict: .safetensors, .pth or .pt")
    parser.add_argument("--arch", required=True, metavar="NAME", help="registered model name, e.g. squeezenet1_1")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help=f"output file, ending in {OUTPUT_SUFFIX}")


def run(args: argparse.Namespace) -> int:
    from keras_lightnets.models.registry import model_config
    from keras_lightnets.weights import port_tool
    from keras_lightnets.weights.torchvision import NoTorchCounterpartError

    src, output = Path(args.src), Path(args.output)
    problem = port_tool.check_paths(src, output)
    if problem:
        raise InputError(problem)
    try:
        model_config(args.arch)
    except ValueError as err:
        raise InputError(f"--arch: {err}") from err
    try:
        written = port_tool.port(src, args.arch, output)
    except NoTorchCounterpartError as err:
        raise InputError(f"--arch {args.arch!r}: {err}") from err
    print(f"{PROG}: wrote {written} ({args.arch}, from {src})")
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run as a program of its own called ``prog`` (a tool script); returns the exit code."""
    return command.main(sys.modules[__name__], argv, prog=prog)
