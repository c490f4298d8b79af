"""Write ``keras_lightnets/data/imagenet_class_index.json`` from a timm wheel.

The ImageNet-1k class index (class id -> WordNet id and short name) in the
keras.applications format ``{"0": ["n01440764", "tench"], ...}``, built offline
from two files the ``timm`` wheel on PyPI ships (Apache-2.0):

* ``timm/data/_info/imagenet_synsets.txt``: the 1000 WordNet ids in the standard
  ImageNet-1k class order, one per line;
* ``timm/data/_info/imagenet_synset_to_lemma.txt``: ``<wnid>\\t<lemma>, <lemma>, ...``.

The name of a class is its first WordNet lemma with spaces replaced by
underscores (``great white shark`` -> ``great_white_shark``), as in keras'
own index. Usage::

    pip download --no-deps timm -d /tmp/timm
    python tools/make_imagenet_class_index.py /tmp/timm/timm-*.whl
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
NUM_CLASSES = 1000
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "keras_lightnets" / "data" / "imagenet_class_index.json"


def read_member(wheel: zipfile.ZipFile, name: str) -> list[str]:
    try:
        text = wheel.read(name).decode("utf8")
    except KeyError:
        raise SystemExit(f"{wheel.filename} has no {name}; is it a timm wheel?") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def class_index(wheel_path: str | Path) -> dict[str, list[str]]:
    """``{"<class id>": [wnid, name]}`` of the 1000 ImageNet-1k classes."""
    with zipfile.ZipFile(wheel_path) as wheel:
        wnids = [line.strip() for line in read_member(wheel, SYNSETS)]
        lemmas = {}
        for line in read_member(wheel, LEMMAS):
            wnid, _, names = line.partition("\t")
            lemmas[wnid.strip()] = names
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES:
        raise SystemExit(f"expected {NUM_CLASSES} unique WordNet ids in {SYNSETS}; found {len(set(wnids))}")
    missing = [w for w in wnids if w not in lemmas]
    if missing:
        raise SystemExit(f"no lemma for {len(missing)} WordNet id(s) in {LEMMAS}, e.g. {missing[0]}")
    index = {}
    for class_id, wnid in enumerate(wnids):
        first = lemmas[wnid].split(",")[0].strip()
        index[str(class_id)] = [wnid, first.replace(" ", "_")]
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="path to a timm-*.whl (pip download --no-deps timm)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write the JSON")
    args = parser.parse_args(argv)
    index = class_index(args.wheel)
    with open(args.output, "w", encoding="utf8") as f:
        json.dump(index, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(index)} classes to {args.output}")


if __name__ == "__main__":
    main()
