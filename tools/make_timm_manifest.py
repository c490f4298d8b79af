"""Write the timm entries of ``weights/manifest.json`` (the other entries are kept).

The file list comes from the registry records (``<hub id>.safetensors``), URLs from the hub's
layout: see ``keras_lightnets.weights.manifest_tools``. Run from anywhere::

    python tools/make_timm_manifest.py [--output weights/manifest.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from keras_lightnets.cli import make_manifest
from keras_lightnets.weights import manifest_tools

if __name__ == "__main__":
    sys.exit(make_manifest.main(manifest_tools.TIMM_SOURCE, prog=Path(__file__).name))
