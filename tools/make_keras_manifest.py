"""Write the keras.applications entries of ``weights/manifest.json``.

Lists every official keras.applications ImageNet weight file of the families
this package rebuilds -- MobileNet (V1), MobileNetV2, MobileNetV3 and
NASNetMobile -- with its URL and hash exactly as keras.applications
(``keras/src/applications/*.py``) and tf_keras build them:

* MobileNet: ``BASE_WEIGHT_PATH + "mobilenet_{alpha_text}_{rows}_tf[_no_top].h5"``;
  no published hash.
* MobileNetV2: ``BASE_WEIGHT_PATH +
  "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}[_no_top].h5"``;
  no published hash.
* MobileNetV3: ``BASE_WEIGHT_PATH + "weights_mobilenet_v3_{model}.h5"`` (with the
  top) or ``"..._no_top_v2.h5"`` (without); md5 hashes from ``WEIGHTS_HASHES``.
* NASNetMobile: ``NASNet-mobile[-no-top].h5`` cached as ``nasnet_mobile[_no_top].h5``;
  md5 hashes from the ``file_hash`` arguments.

Every entry also gets the check fields of ``keras_lightnets.weights.download``:
``sha256`` and ``size`` where a full digest and byte size of that exact file are
known (``KNOWN_FILES``; none is published for these files so far, so they are
``null``), ``max_bytes`` from the registry's parameter count of the model
(``download.max_bytes_for_parameters``) and the derived ``verified`` level
(``"md5"`` for MobileNetV3 and NASNetMobile, ``"none"`` for MobileNet V1/V2,
whose files are then checked only against ``max_bytes``).

Entries from other sources already in the file (e.g. torchvision ports) are kept
as they are; this script only replaces the entries whose ``source`` is
``keras.applications``. Run from anywhere::

    python tools/make_keras_manifest.py [--output weights/manifest.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from keras_lightnets.weights.download import make_entry, max_bytes_for_parameters, merge_manifest, write_manifest

SOURCE = "keras.applications"
LICENSE = "Apache-2.0"
FORMAT = "keras-legacy-h5"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"
BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"

V1_URL = BASE + "mobilenet/"
V1_ALPHAS = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
V1_SIZES = (128, 160, 192, 224)

V2_URL = BASE + "mobilenet_v2/"
V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
V2_SIZES = (96, 128, 160, 192, 224)

V3_URL = BASE + "mobilenet_v3/"
# keras.applications.mobilenet_v3.WEIGHTS_HASHES: model -> (md5 with top, md5 without).
V3_HASHES = {
    "large_224_0.75_float": ("765b44a33ad4005b3ac83185abf1d0eb", "40af19a13ebea4e2ee0c676887f69a2e"),
    "large_224_1.0_float": ("59e551e166be033d707958cf9e29a6a7", "07fb09a5933dd0c8eaafa16978110389"),
    "large_minimalistic_224_1.0_float": ("675e7b876c45c57e9e63e6d90a36599c", "ec5221f64a2f6d1ef965a614bdae7973"),
    "small_224_0.75_float": ("cb65d4e5be93758266aa0a7f2c6708b7", "ebdb5cc8e0b497cd13a7c275d475c819"),
    "small_224_1.0_float": ("8768d4c2e7dee89b9d02b2d03d65d862", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "small_minimalistic_224_1.0_float": ("99cd97fb2fcdad2bf028eb838de69e37", "cde8136e733e811080d9fcd8a252f7e4"),
}

NASNET_URL = BASE + "nasnet/"
# (cache file name, URL file name, md5) as in keras.applications.nasnet.NASNetMobile.
NASNET_MOBILE = {
    True: ("nasnet_mobile.h5", "NASNet-mobile.h5", "020fb642bf7360b370c678b08e0adf61"),
    False: ("nasnet_mobile_no_top.h5", "NASNet-mobile-no-top.h5", "1ed92395b5b598bdda52abe5c0dbfd63"),
}
NASNET_MOBILE_MODEL = "nasnet_mobile"

# {file name: (full sha256, size in bytes)} of files whose digest and size were found
# published for that exact file. Never filled from a guess: an entry stays null until then.
KNOWN_FILES: dict[str, tuple[str, int]] = {}


def _width_name(alpha: float) -> str:
    """The registry's width suffix: 0.25 -> "025", 1.4 -> "140"."""
    return f"{round(alpha * 100):03d}"


def _entry(name: str, url: str, md5: str | None, input_size: int, include_top: bool,
           models: list[str]) -> dict[str, Any]:
    from keras_lightnets import model_config

    sha256, size = KNOWN_FILES.get(name, (None, None))
    return make_entry(
        url, hash=f"md5:{md5}" if md5 else None, sha256=sha256, size=size,
        max_bytes=max(max_bytes_for_parameters(model_config(m).params) for m in models),
        format=FORMAT, input_size=input_size, include_top=include_top, models=models,
        source=SOURCE, license=LICENSE,
    )


def keras_entries() -> dict[str, dict[str, Any]]:
    """``{file name: manifest entry}`` of every keras.applications file listed above."""
    entries: dict[str, dict[str, Any]] = {}
    for include_top in (True, False):
        suffix = "" if include_top else "_no_top"
        for alpha, alpha_text in V1_ALPHAS.items():
            for rows in V1_SIZES:
                name = f"mobilenet_{alpha_text}_{rows}_tf{suffix}.h5"
                model = f"mobilenet_v1_{_width_name(alpha)}"
                entries[name] = _entry(name, V1_URL + name, None, rows, include_top, [model])
        for alpha in V2_ALPHAS:
            for rows in V2_SIZES:
                name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{suffix}.h5"
                model = f"mobilenet_v2_{_width_name(alpha)}"
                entries[name] = _entry(name, V2_URL + name, None, rows, include_top, [model])
        for model, hashes in V3_HASHES.items():
            name = f"weights_mobilenet_v3_{model}{'.h5' if include_top else '_no_top_v2.h5'}"
            model_type, rest = model.split("_", 1)
            alpha = float(model.split("_")[-2])
            minimal = "_minimal" if "minimalistic" in rest else ""
            registry_name = f"mobilenet_v3_{model_type}{minimal}_{_width_name(alpha)}"
            md5 = hashes[0 if include_top else 1]
            entries[name] = _entry(name, V3_URL + name, md5, 224, include_top, [registry_name])
        cache_name, url_name, md5 = NASNET_MOBILE[include_top]
        entries[cache_name] = _entry(cache_name, NASNET_URL + url_name, md5, 224, include_top, [NASNET_MOBILE_MODEL])
    return entries


def merge(existing: dict[str, Any] | None, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest document with ``entries`` replacing the old keras.applications ones."""
    return merge_manifest(existing, entries, SOURCE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="manifest to update (created if missing)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    existing = json.loads(output.read_text(encoding="utf8")) if output.is_file() else None
    document = merge(existing, keras_entries())
    write_manifest(output, document)
    kept = len(document["files"]) - len(keras_entries())
    print(f"wrote {len(keras_entries())} keras.applications entries ({kept} other entries kept) to {output}")


if __name__ == "__main__":
    main()
