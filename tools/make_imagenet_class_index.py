#!/usr/bin/env python
"""Write ``keras_lightnets/data/imagenet_class_index.json`` from a timm wheel.

A thin wrapper over ``keras_lightnets.data.bundled`` (where the files read from the wheel and
the naming rule are described). Usage::

    pip download --no-deps timm -d /tmp/timm
    python tools/make_imagenet_class_index.py /tmp/timm/timm-*.whl
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from keras_lightnets.cli.command import Parser, run_guarded
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_lightnets.cli.command import Parser, run_guarded
from keras_lightnets.data import bundled


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="make_imagenet_class_index.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="path to a timm-*.whl (pip download --no-deps timm)")
    parser.add_argument("--output", default=str(bundled.CLASS_INDEX_FILE), help="where to write the JSON")
    args = parser.parse_args(argv)

    def write() -> int:
        print(f"wrote {bundled.write_imagenet_class_index(args.wheel, args.output)} classes to {args.output}")
        return 0

    return run_guarded(parser.name, write)


if __name__ == "__main__":
    sys.exit(main())
