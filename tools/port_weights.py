"""Convert a torchvision checkpoint into a Keras 3 ``.weights.h5`` file, once::

    python tools/port_weights.py SRC --arch NAME -o OUT.weights.h5

See ``keras_lightnets.cli.port_weights`` (arguments, exit codes). Run from anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from keras_lightnets.cli import port_weights

if __name__ == "__main__":
    sys.exit(port_weights.main(prog=Path(__file__).name))
