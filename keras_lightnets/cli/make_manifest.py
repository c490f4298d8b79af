"""``tools/make_keras_manifest.py`` and ``tools/make_torchvision_manifest.py``: write one source's
entries of ``weights/manifest.json``, keeping the other entries (the entries themselves:
``keras_lightnets.weights.manifest_tools``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_lightnets.cli import command

HELP = "write one source's entries of weights/manifest.json"
DESCRIPTION = "Write the entries of one weights source in weights/manifest.json (the other entries are kept)."
INTERRUPTED = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from keras_lightnets.weights import manifest_tools

    parser.add_argument("--source", required=True, choices=sorted(manifest_tools.ENTRIES),
                        help="whose files: keras.applications or torchvision")
    parser.add_argument("--output", default=str(manifest_tools.DEFAULT_OUTPUT),
                        help="manifest to update (created if missing)")


def run(args: argparse.Namespace) -> int:
    from keras_lightnets.weights import manifest_tools

    written, kept = manifest_tools.update_manifest(args.source, args.output)
    print(f"wrote {written} {args.source} entries ({kept} other entries kept) to {args.output}")
    return 0


def main(source: str, argv: Sequence[str] | None = None, *, prog: str) -> int:
    """The tool of ``source``: ``argv`` (default ``sys.argv[1:]``) with ``--source source`` first."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return command.main(sys.modules[__name__], ["--source", source, *arguments], prog=prog)
