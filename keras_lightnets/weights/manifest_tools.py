"""Write the entries of ``weights/manifest.json``: the facts about the bytes of every weight
file a registry record names (``ModelConfig.weight_files``).

Which files exist, for which variant, input size and top, is on the records; this
module adds where each file is downloaded from and how it is checked, by its upstream:

* keras.applications (``.h5``; the variants with a keras.applications twin: MobileNet,
  MobileNetV2, MobileNetV3, NASNetMobile): the URL is ``KERAS_BASE`` + the folder of the
  twin's keras.applications module + the file name, exactly as keras.applications and
  tf_keras build it; NASNetMobile's URLs name its files ``NASNet-mobile[-no-top].h5``,
  cached as ``nasnet_mobile[_no_top].h5``. md5 hashes where keras.applications publishes
  them (MobileNetV3's ``WEIGHTS_HASHES``, NASNet's ``file_hash`` arguments); MobileNet V1
  and V2 have none.
* timm (``.safetensors``; the families that are exact twins of timm models): the file name
  is the Hugging Face hub id of the checkpoint plus ``.safetensors`` (e.g.
  ``tf_efficientnet_lite0.in1k.safetensors``), the URL ``TIMM_BASE`` + hub id +
  ``/resolve/main/model.safetensors``. The hub publishes no digest in a form this project
  could check offline, so the entries carry no hash (``verified: "none"``, bounded by
  ``max_bytes``; ``fetch`` warns once). Format ``"timm-safetensors"``: ported like torchvision's.
* torchvision (``.pth``; SqueezeNet, ShuffleNetV2, MnasNet-B1): the URL is
  ``TORCHVISION_BASE`` + the file name; torchvision names its files
  ``<name>-<first sha256 hex digits>.pth`` and that prefix is the entry's hash
  (``"sha256:<prefix>"``, which ``download.hash_matches`` accepts). The format
  ``"torchvision-pth"`` makes ``weights="imagenet"`` port the file and cache the
  converted Keras weights (see ``keras_lightnets.weights.torchvision``).

Every entry also gets the check fields of ``keras_lightnets.weights.download``:
``sha256`` and ``size`` where a full digest and byte size of that exact file were found
published (``KNOWN_FILES``; never guessed, ``null`` otherwise), ``max_bytes`` from the
largest parameter count of the variants using the file
(``download.max_bytes_for_parameters``) and the derived ``verified`` level. A name
prefix is a 32-40 bit check only (``"name-prefix"``, which ``fetch`` warns about once).

``update_manifest(source, path)`` replaces the entries of one upstream in a manifest file and
keeps the others (``tools/make_keras_manifest.py``, ``tools/make_torchvision_manifest.py``; their
command line is ``keras_lightnets.cli.make_manifest``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from keras_lightnets.models.registry import ModelConfig, registered
from keras_lightnets.weights.download import make_entry, max_bytes_for_parameters, merge_manifest, write_manifest

KERAS_SOURCE = "keras.applications"
TORCHVISION_SOURCE = "torchvision"
TIMM_SOURCE = "timm"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "weights" / "manifest.json"

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
# The folder of each keras.applications module's files, by the twin's builder name.
KERAS_FOLDERS = {
    "MobileNet": "mobilenet/", "MobileNetV2": "mobilenet_v2/", "MobileNetV3Small": "mobilenet_v3/",
    "MobileNetV3Large": "mobilenet_v3/", "NASNetMobile": "nasnet/",
}
# File names under which keras.applications caches a file its URL names otherwise.
KERAS_URL_NAMES = {"nasnet_mobile.h5": "NASNet-mobile.h5", "nasnet_mobile_no_top.h5": "NASNet-mobile-no-top.h5"}
# md5 hashes keras.applications publishes: mobilenet_v3.WEIGHTS_HASHES and NASNetMobile's file_hash.
KERAS_MD5 = {
    "weights_mobilenet_v3_large_224_0.75_float.h5": "765b44a33ad4005b3ac83185abf1d0eb",
    "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5": "40af19a13ebea4e2ee0c676887f69a2e",
    "weights_mobilenet_v3_large_224_1.0_float.h5": "59e551e166be033d707958cf9e29a6a7",
    "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5": "07fb09a5933dd0c8eaafa16978110389",
    "weights_mobilenet_v3_large_minimalistic_224_1.0_float.h5": "675e7b876c45c57e9e63e6d90a36599c",
    "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5": "ec5221f64a2f6d1ef965a614bdae7973",
    "weights_mobilenet_v3_small_224_0.75_float.h5": "cb65d4e5be93758266aa0a7f2c6708b7",
    "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5": "ebdb5cc8e0b497cd13a7c275d475c819",
    "weights_mobilenet_v3_small_224_1.0_float.h5": "8768d4c2e7dee89b9d02b2d03d65d862",
    "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5": "d3e8ec802a04aa4fc771ee12a9a9b836",
    "weights_mobilenet_v3_small_minimalistic_224_1.0_float.h5": "99cd97fb2fcdad2bf028eb838de69e37",
    "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5": "cde8136e733e811080d9fcd8a252f7e4",
    "nasnet_mobile.h5": "020fb642bf7360b370c678b08e0adf61",
    "nasnet_mobile_no_top.h5": "1ed92395b5b598bdda52abe5c0dbfd63",
}

TORCHVISION_BASE = "https://download.pytorch.org/models/"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")

# {file name: (full sha256, size in bytes)}, only where both were found published for that
# exact file (never guessed). squeezenet1_1: the same digest and size are pinned by several
# unrelated public projects that download this URL; the digest starts with the name's prefix.
KNOWN_FILES: dict[str, tuple[str, int]] = {
    "squeezenet1_1-b8a52dc0.pth": ("b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b", 4_958_839),
}
TIMM_BASE = "https://huggingface.co/timm/"
TIMM_SUFFIX = ".safetensors"
# timm's ImageNet checkpoints of the families here are published under Apache-2.0 (their hub model cards).
LICENSES = {KERAS_SOURCE: "Apache-2.0", TORCHVISION_SOURCE: "BSD-3-Clause", TIMM_SOURCE: "Apache-2.0"}
FORMATS = {KERAS_SOURCE: "keras-legacy-h5", TORCHVISION_SOURCE: "torchvision-pth", TIMM_SOURCE: "timm-safetensors"}
SOURCE_SUFFIXES = {".pth": TORCHVISION_SOURCE, ".h5": KERAS_SOURCE, TIMM_SUFFIX: TIMM_SOURCE}


def files_by_source() -> dict[str, dict[str, list[ModelConfig]]]:
    """``{source: {file name: [records naming it]}}`` of every registered weight file:
    ``.pth`` files are torchvision's, ``.h5`` files keras.applications', ``.safetensors`` timm's."""
    found: dict[str, dict[str, list[ModelConfig]]] = {source: {} for source in SOURCE_SUFFIXES.values()}
    for config in registered():
        for file in config.weight_files:
            suffix = next((s for s in SOURCE_SUFFIXES if file.name.endswith(s)), None)
            if suffix is None:
                raise ValueError(f"{config.name}: weight file {file.name!r} is neither a torchvision .pth, "
                                 "a keras.applications .h5 nor a timm .safetensors file")
            found[SOURCE_SUFFIXES[suffix]].setdefault(file.name, []).append(config)
    return found


def _entry(source: str, file_name: str, url: str, hash: str | None, configs: list[ModelConfig]) -> dict[str, Any]:
    sha256, size = KNOWN_FILES.get(file_name, (None, None))
    return make_entry(
        url, hash=hash, sha256=sha256, size=size,
        max_bytes=max(max_bytes_for_parameters(config.params) for config in configs),
        format=FORMATS[source], source=source, license=LICENSES[source],
    )


def keras_entries() -> dict[str, dict[str, Any]]:
    """``{file name: manifest entry}`` of every keras.applications file a record names."""
    entries = {}
    for file_name, configs in sorted(files_by_source()[KERAS_SOURCE].items()):
        twin = configs[0].twin
        if twin is None or twin.builder not in KERAS_FOLDERS:
            raise ValueError(f"{configs[0].name}: {file_name!r} needs a keras.applications twin in KERAS_FOLDERS")
        url = KERAS_BASE + KERAS_FOLDERS[twin.builder] + KERAS_URL_NAMES.get(file_name, file_name)
        md5 = KERAS_MD5.get(file_name)
        entries[file_name] = _entry(KERAS_SOURCE, file_name, url, f"md5:{md5}" if md5 else None, configs)
    return entries


def torchvision_entries() -> dict[str, dict[str, Any]]:
    """``{file name: manifest entry}`` of every torchvision checkpoint a record names."""
    entries = {}
    for file_name, configs in sorted(files_by_source()[TORCHVISION_SOURCE].items()):
        match = _HASH_IN_NAME.search(file_name)
        if match is None:
            raise ValueError(f"torchvision file name {file_name!r} carries no sha256 prefix")
        sha256 = KNOWN_FILES.get(file_name, (None,))[0]
        if sha256 is not None and not sha256.startswith(match.group(1)):
            raise ValueError(f"the known sha256 of {file_name!r} does not start with its name's prefix")
        entries[file_name] = _entry(
            TORCHVISION_SOURCE, file_name, TORCHVISION_BASE + file_name, f"sha256:{match.group(1)}", configs,
        )
    return entries


def timm_url(file_name: str) -> str:
    """The hub URL of timm's checkpoint ``<hub id>.safetensors`` (e.g. ``ghostnet_100.in1k.safetensors``)."""
    hub_id = file_name[: -len(TIMM_SUFFIX)] if file_name.endswith(TIMM_SUFFIX) else ""
    if not re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", hub_id):
        raise ValueError(f"timm file name {file_name!r} is not '<model>.<pretrained tag>{TIMM_SUFFIX}'")
    return f"{TIMM_BASE}{hub_id}/resolve/main/model{TIMM_SUFFIX}"


def timm_entries() -> dict[str, dict[str, Any]]:
    """``{file name: manifest entry}`` of every timm checkpoint a record names."""
    return {
        file_name: _entry(TIMM_SOURCE, file_name, timm_url(file_name), None, configs)
        for file_name, configs in sorted(files_by_source()[TIMM_SOURCE].items())
    }


ENTRIES = {KERAS_SOURCE: keras_entries, TORCHVISION_SOURCE: torchvision_entries, TIMM_SOURCE: timm_entries}


def update_manifest(source: str, path: str | Path = DEFAULT_OUTPUT) -> tuple[int, int]:
    """Replace the ``source`` entries of the manifest at ``path`` (created if missing), atomically;
    returns ``(entries written, other entries kept)``."""
    path = Path(path)
    existing = json.loads(path.read_text(encoding="utf8")) if path.is_file() else None
    entries = ENTRIES[source]()
    document = merge_manifest(existing, entries, source)
    write_manifest(path, document)
    return len(entries), len(document["files"]) - len(entries)
