"""Sample images for int8 calibration and for verifying a converted model, from a ``.npy`` array
file, an image source (``data.sources``) or random pixels.

Every function returns ``{purpose: Samples}`` for the purposes asked (``PURPOSES``, in that
order): float32 pixels ``(N, H, W, C)`` in ``[0, 255]``. When both purposes are asked the two
sets of images are disjoint: a ``.npy`` file's first half calibrates and its second half
verifies; an image source calibrates on its training split and verifies on its held-out
images (``sources.HELD_OUT``), never the images a model from ``lightnets train`` learned.
Unusable input raises ``errors.InputError`` whose message starts with the source's ``repr``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError, one_line

PURPOSES = ("calibration", "verification")


@dataclass
class Samples:
    """Images for one purpose: float32 ``(N, H, W, C)`` pixels; ``labels`` ``(N,)`` and
    ``class_names`` when the source has them; ``skipped``: unreadable files left out; ``which``:
    the images, in words, for a report."""

    images: Any
    labels: Any = None
    class_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    which: str = ""


def _npy_array(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The file's array, memory-mapped, after checking its shape and dtype against ``shape`` (H, W, C)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{path!r} is not a readable .npy array ({err})") from None
    if array.ndim != 4 or tuple(array.shape[1:]) != shape:
        raise InputError(f"{path!r} has shape {array.shape}; the model takes (N, {', '.join(map(str, shape))}) images")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{path!r} has dtype {array.dtype}; expected pixels as float or integers")
    if len(array) == 0:
        raise InputError(f"{path!r} holds no image")
    return array


def npy_samples(path: str, shape: tuple[int, int, int], limit: int, purposes: Sequence[str]) -> dict[str, Samples]:
    """At most ``limit`` images per purpose from a ``.npy`` file of ``(N, *shape)`` pixels: its
    first images for one purpose; for both, its first half calibrates and its second half
    verifies (the same single image when the file holds only one)."""
    array = _npy_array(path, shape)
    count = len(array)
    both = len(purposes) == 2
    half = (count + 1) // 2 if both and count > 1 else 0
    ranges = {"calibration": (0, min(limit, half or count)), "verification": (half, min(count, half + limit))}
    shared = " (the file holds one image: calibration and verification share it)" if both and count == 1 else ""
    parts = {}
    for purpose in purposes:
        start, stop = ranges[purpose]
        images = np.asarray(array[start:stop], dtype=np.float32)
        if not np.all(np.isfinite(images)):
            raise InputError(f"{path!r} holds NaN or infinite values")
        parts[purpose] = Samples(images, which=f"images {start}..{stop - 1} of {path}{shared}")
    return parts


def image_samples(source: str, shape: tuple[int, int, int], limit: int, purposes: Sequence[str], *,
                  data_dir: str | None = None) -> dict[str, Samples]:
    """At most ``limit`` images per purpose from an image source (``sources.load_images``: digits,
    a folder, ``tfds:NAME[:SPLIT]``) at ``shape`` (H, W, C with C 1 or 3), seed 0: calibration
    from its training split, verification from its held-out images. Unreadable files are
    counted in ``skipped``, not warned about."""
    from keras_lightnets.data.sources import load_images

    if shape[2] not in (1, 3):
        raise InputError(f"{source!r}: image sources give 1 or 3 channels; the model takes {shape[2]}")
    parts = {}
    for purpose in purposes:
        split = "train" if purpose == "calibration" else "test"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped files are counted instead
            try:
                loaded = load_images(source, image_size=shape[:2], channels=shape[2], split=split, limit=limit,
                                     data_dir=data_dir)
            except (ValueError, OSError) as err:
                raise InputError(f"{source!r}: {one_line(err)}") from None
        which = ("training split" if split == "train" else "held-out split") + f" of {source} (seed 0)"
        parts[purpose] = Samples(loaded.images, loaded.labels, list(loaded.class_names), list(loaded.skipped), which)
    return parts


def random_samples(shape: tuple[int, int, int], count: int, purposes: Sequence[str]) -> dict[str, Samples]:
    """``count`` images of uniform random pixels per purpose (seed: the purpose's position in ``purposes``)."""
    return {purpose: Samples(np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype(np.float32),
                             which=f"random pixels (seed {seed})") for seed, purpose in enumerate(purposes)}
