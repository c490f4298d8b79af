#!/usr/bin/env python
"""Compression figures on the bundled digits: float vs int8 PTQ vs int8 QAT vs pruned + QAT.

A thin wrapper over ``keras_lightnets.pipelines.compression_bench`` (the training recipe,
the variants, the target checks and the report): writes ``OUTPUT/compression.md``,
``OUTPUT/compression.json`` and ``OUTPUT/compression.png`` and prints the table.
``python tools/benchmark_compression.py --help`` lists the options. Example::

    python tools/benchmark_compression.py --output bench-output
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from keras_lightnets.cli.benchmark_compression import main
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_lightnets.cli.benchmark_compression import main

if __name__ == "__main__":
    sys.exit(main(prog=Path(__file__).name))
