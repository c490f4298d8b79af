"""Write the torchvision entries of ``weights/manifest.json``.

Lists torchvision's ImageNet checkpoints of the families ported from it --
SqueezeNet, ShuffleNetV2 and MnasNet-B1 -- by the file names the family modules
declare (``TORCHVISION_FILES``, copied from torchvision 0.24's weight enums).
Each URL is ``https://download.pytorch.org/models/<file>``; torchvision names its
files ``<name>-<first sha256 hex digits>.pth``, and that prefix is the entry's
hash (``"sha256:<prefix>"``, which ``download.hash_matches`` accepts). The
format ``"torchvision-pth"`` makes ``weights="imagenet"`` port the file and cache
the converted Keras weights (see ``keras_lightnets.weights.torchvision``).

A name prefix is a 32-40 bit check only. Where the full sha256 and byte size of
the exact file are published (``KNOWN_FILES``), the entry carries them
(``"verified": "sha256"``); the others keep the prefix (``"verified":
"name-prefix"``, which ``fetch`` warns about once) and a ``max_bytes`` bound from
the registry's parameter count (``download.max_bytes_for_parameters``).

Only entries whose ``source`` is ``torchvision`` (or whose name is one of these
files) are replaced; everything else in the file is kept. A missing manifest is
created. Run from anywhere::

    python tools/make_torchvision_manifest.py [--output weights/manifest.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from keras_lightnets.weights.download import make_entry, max_bytes_for_parameters, merge_manifest, write_manifest

SOURCE = "torchvision"
LICENSE = "BSD-3-Clause"
FORMAT = "torchvision-pth"
BASE_URL = "https://download.pytorch.org/models/"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")

# {file name: (full sha256, size in bytes)}, only where both were found published for that
# exact file (never guessed). squeezenet1_1: the same digest and size are pinned by several
# unrelated public projects that download this URL; the digest starts with the name's prefix.
KNOWN_FILES: dict[str, tuple[str, int]] = {
    "squeezenet1_1-b8a52dc0.pth": ("b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b", 4_958_839),
}


def _files_by_model() -> dict[str, str]:
    """``{registry name: torchvision file name}`` from the family modules."""
    from keras_lightnets.models import mnasnet, shufflenet_v2, squeezenet

    files = {f"squeezenet{v.replace('.', '_')}": f for v, f in squeezenet.TORCHVISION_FILES.items()}
    files.update({f"shufflenet_v2_x{shufflenet_v2.width_text(a)}": f
                  for a, f in shufflenet_v2.TORCHVISION_FILES.items()})
    files.update({f"mnasnet_b1_{round(a * 100):03d}": f for a, f in mnasnet.TORCHVISION_FILES.items()})
    return files


def torchvision_entries(files_by_model: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``{file name: manifest entry}`` of every torchvision checkpoint."""
    from keras_lightnets import model_config

    entries = {}
    for model, file_name in sorted((files_by_model or _files_by_model()).items()):
        match = _HASH_IN_NAME.search(file_name)
        if match is None:
            raise ValueError(f"torchvision file name {file_name!r} carries no sha256 prefix")
        sha256, size = KNOWN_FILES.get(file_name, (None, None))
        if sha256 is not None and not sha256.startswith(match.group(1)):
            raise ValueError(f"the known sha256 of {file_name!r} does not start with its name's prefix")
        entries[file_name] = make_entry(
            BASE_URL + file_name, hash=f"sha256:{match.group(1)}", sha256=sha256, size=size,
            max_bytes=max_bytes_for_parameters(model_config(model).params), format=FORMAT,
            input_size=224, include_top=True, models=[model], source=SOURCE, license=LICENSE,
        )
    return entries


def merge(existing: dict[str, Any] | None, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest document with ``entries`` replacing the old torchvision ones."""
    return merge_manifest(existing, entries, SOURCE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="manifest to update (created if missing)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    existing = json.loads(output.read_text(encoding="utf8")) if output.is_file() else None
    entries = torchvision_entries()
    document = merge(existing, entries)
    write_manifest(output, document)
    kept = len(document["files"]) - len(entries)
    print(f"wrote {len(entries)} torchvision entries ({kept} other entries kept) to {output}")


if __name__ == "__main__":
    main()
