#!/usr/bin/env python
"""Convert a Keras model or a registered keras_lightnets model to TensorFlow Lite.

A thin wrapper over ``keras_lightnets.cli.export`` (the same command as
``lightnets export``); ``python tools/convert_tflite.py --help`` lists the options.
Model files that would run stored Python code (``Lambda`` layers, unknown classes)
are refused with exit code 2 unless ``--unsafe`` is given (only for files you trust).
Example::

    python tools/convert_tflite.py mobilenet_v3_small_100 -q int8 --data images/ --verify --benchmark \\
        -o mobilenet_v3_small_int8.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from keras_lightnets.cli.export import main
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_lightnets.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
