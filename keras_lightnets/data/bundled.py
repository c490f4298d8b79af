"""How the data files shipped in this folder are made, once, offline (``tools/make_digits.py``,
``tools/make_imagenet_class_index.py``); the package only reads them.

``digits.npz`` (from scikit-learn's copy of the UCI digits; scikit-learn is needed only to make
it), all arrays, ``np.savez_compressed``:

- ``images``: uint8 ``(1797, 8, 8)``, grey levels 0..16 (16 = full ink),
  exactly ``sklearn.datasets.load_digits().images``;
- ``labels``: uint8 ``(1797,)``, the digit 0..9;
- ``test``: bool ``(1797,)``, the fixed held-out test split: per class, 20 % of its images
  (``sources.stratified_split`` with seed 0, its "validation" part); every other image is in
  the training split.

``imagenet_class_index.json``: the ImageNet-1k class index (class id -> WordNet id and short
name) in the keras.applications format ``{"0": ["n01440764", "tench"], ...}``, from two files
of a ``timm`` wheel (Apache-2.0): ``imagenet_synsets.txt`` (the 1000 WordNet ids in the standard
class order) and ``imagenet_synset_to_lemma.txt`` (``<wnid>\\t<lemma>, <lemma>, ...``). A
class's name is its first lemma with spaces replaced by underscores (``great white shark`` ->
``great_white_shark``), as in keras' own index.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.files import atomic_path, write_text

FOLDER = Path(__file__).resolve().parent
DIGITS_FILE = FOLDER / "digits.npz"
CLASS_INDEX_FILE = FOLDER / "imagenet_class_index.json"
TEST_FRACTION = 0.2
SEED = 0
SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
NUM_CLASSES = 1000


def digits_arrays() -> dict[str, np.ndarray]:
    """``{"images", "labels", "test"}`` as ``digits.npz`` holds them, from scikit-learn."""
    from sklearn.datasets import load_digits

    from keras_lightnets.data.sources import stratified_split

    digits = load_digits()
    images = np.asarray(digits.images)
    if images.shape != (1797, 8, 8) or images.min() < 0 or images.max() > 16 or np.any(images != np.round(images)):
        raise RuntimeError(f"unexpected digits data: shape {images.shape}, range {images.min()}..{images.max()}")
    labels = np.asarray(digits.target).astype(np.uint8)
    test = np.zeros(len(labels), dtype=bool)
    test[stratified_split(labels, "validation", seed=SEED, fraction=TEST_FRACTION)] = True
    return {"images": images.astype(np.uint8), "labels": labels, "test": test}


def write_digits(path: str | os.PathLike = DIGITS_FILE) -> dict[str, np.ndarray]:
    """Write ``digits.npz`` to ``path`` atomically; returns its arrays."""
    arrays = digits_arrays()
    with atomic_path(path) as temporary:
        np.savez_compressed(temporary, **arrays)
    return arrays


def _wheel_lines(wheel: zipfile.ZipFile, name: str) -> list[str]:
    try:
        text = wheel.read(name).decode("utf8")
    except KeyError:
        raise InputError(f"{wheel.filename} has no {name}; is it a timm wheel?") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def imagenet_class_index(wheel_path: str | os.PathLike) -> dict[str, list[str]]:
    """``{"<class id>": [wnid, name]}`` of the 1000 ImageNet-1k classes, from a timm wheel."""
    try:
        wheel = zipfile.ZipFile(wheel_path)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{os.fspath(wheel_path)!r} is not a readable wheel ({err})") from None
    with wheel:
        wnids = [line.strip() for line in _wheel_lines(wheel, SYNSETS)]
        lemmas = {}
        for line in _wheel_lines(wheel, LEMMAS):
            wnid, _, names = line.partition("\t")
            lemmas[wnid.strip()] = names
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES:
        raise InputError(f"expected {NUM_CLASSES} unique WordNet ids in {SYNSETS}; found {len(set(wnids))}")
    missing = [w for w in wnids if w not in lemmas]
    if missing:
        raise InputError(f"no lemma for {len(missing)} WordNet id(s) in {LEMMAS}, e.g. {missing[0]}")
    return {str(class_id): [wnid, lemmas[wnid].split(",")[0].strip().replace(" ", "_")]
            for class_id, wnid in enumerate(wnids)}


def write_imagenet_class_index(wheel_path: str | os.PathLike, path: str | os.PathLike = CLASS_INDEX_FILE) -> int:
    """Write the class index of the timm wheel at ``wheel_path`` to ``path`` as JSON; returns the class count."""
    index = imagenet_class_index(wheel_path)
    write_text(path, json.dumps(index, ensure_ascii=False) + "\n")
    return len(index)
