"""Write ``keras_lightnets/data/digits.npz`` from scikit-learn's copy of the UCI digits.

The package ships the result so that it needs no scikit-learn at run time;
scikit-learn is needed only to run this script once:

    pip install scikit-learn && python tools/make_digits.py

The file holds (all arrays, ``np.savez_compressed``):

- ``images``: uint8 ``(1797, 8, 8)``, grey levels 0..16 (16 = full ink),
  exactly ``sklearn.datasets.load_digits().images``;
- ``labels``: uint8 ``(1797,)``, the digit 0..9;
- ``test``: bool ``(1797,)``, the fixed held-out test split: per class, 20 % of
  its images (rounded to the nearest integer) chosen by
  ``numpy.random.default_rng(0).permutation`` over that class's indices
  (stratified, seed 0); every other image is in the training split.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

TEST_FRACTION = 0.2
SEED = 0
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "keras_lightnets" / "data" / "digits.npz"


def stratified_test_mask(labels: np.ndarray, fraction: float = TEST_FRACTION, seed: int = SEED) -> np.ndarray:
    """Boolean mask of the held-out images: ``round(fraction * n_c)`` of each class ``c``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen = rng.permutation(members)[: round(fraction * len(members))]
        mask[chosen] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images)
    if images.shape != (1797, 8, 8) or images.min() < 0 or images.max() > 16 or np.any(images != np.round(images)):
        raise SystemExit(f"unexpected digits data: shape {images.shape}, range {images.min()}..{images.max()}")
    images = images.astype(np.uint8)
    labels = np.asarray(digits.target).astype(np.uint8)
    test = stratified_test_mask(labels)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.output.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, images=images, labels=labels, test=test)
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.output}: {len(images)} images, {int(test.sum())} in the test split, "
          f"{args.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
