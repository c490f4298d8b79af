"""Convert a torchvision checkpoint into a Keras 3 ``.weights.h5`` file, once::

    python tools/port_weights.py SRC --arch NAME -o OUT.weights.h5

See ``keras_lightnets.weights.port_tool`` (arguments, exit codes). Run from anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from keras_lightnets.weights import port_tool

if __name__ == "__main__":
    sys.exit(port_tool.main())
