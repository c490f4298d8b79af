#!/usr/bin/env python
"""Write ``keras_lightnets/data/digits.npz`` from scikit-learn's copy of the UCI digits.

A thin wrapper over ``keras_lightnets.data.bundled`` (the file's layout is described there).
The package ships the result so that it needs no scikit-learn at run time; scikit-learn is
needed only to run this script once::

    pip install scikit-learn && python tools/make_digits.py
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
    parser = Parser(prog="make_digits.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(bundled.DIGITS_FILE), help="where to write the .npz file")
    args = parser.parse_args(argv)

    def write() -> int:
        arrays = bundled.write_digits(args.output)
        print(f"wrote {args.output}: {len(arrays['images'])} images, {int(arrays['test'].sum())} in the test split, "
              f"{Path(args.output).stat().st_size} bytes")
        return 0

    return run_guarded(parser.name, write)


if __name__ == "__main__":
    sys.exit(main())
