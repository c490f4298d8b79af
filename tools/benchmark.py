#!/usr/bin/env python
"""Benchmark keras_lightnets models against their keras.applications twins.

A thin wrapper over ``keras_lightnets.cli.bench`` (the same command as ``lightnets bench``;
the measuring is ``keras_lightnets.pipelines.bench.benchmark_models``): prints the Markdown table
and writes ``DIR/bench.md``, ``DIR/bench.png`` and ``DIR/bench.json``.
``python tools/benchmark.py --help`` lists the options. Example::

    python tools/benchmark.py mobilenet_v2_035 'mobilenet_v3_small*' --threads 1 --output bench-output
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from keras_lightnets.cli.bench import main
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_lightnets.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="benchmark.py"))
