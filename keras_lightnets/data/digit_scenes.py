"""Digit scenes: a small, deterministic object-detection dataset made from the bundled UCI digits.

``make_digit_scenes(count, image_size=128, split="train", digits_per_image=(1, 4), seed=0)``
draws ``count`` RGB scenes, each a textured background with one to four hand-written digits
pasted onto it, and returns a ``DigitScenes``: uint8 images, x1 y1 x2 y2 pixel boxes, class
ids (the digit, 0..9), the number of digits in each scene and the source digit of every box.

How a scene is drawn (all from one ``numpy.random.Generator`` keyed by ``seed``, ``split``
and the scene's index, so scene ``i`` is the same whatever ``count`` is):

* background (``background="texture"``): a base colour plus a low-contrast linear gradient,
  smooth noise (a 3x3 to 8x8 grid of random values upscaled bilinearly) and, in about a third of
  the scenes, stripes (a sinusoid at a random angle); at the end a little per-pixel noise over the
  whole image. ``background="plain"``: one flat colour and nothing else (every pixel that differs
  from it is ink; the tests use it to check that the boxes are tight);
* digits: ``digits_per_image`` gives the range of the number drawn (uniform). Each is an 8x8
  UCI digit (grey levels 0..16) of the split, upscaled **bilinearly** (half-pixel centres, edges
  clamped, as ``tf.image.resize``) to a square of a random side in ``[16, 48]`` pixels (scaled
  by ``image_size / 128``, at least 8), used as opacity: ``level / 16``, where it is below
  ``INK_THRESHOLD`` (0.1) the digit is not drawn at all. The digit is painted in one random
  colour whose luminance differs by at least ``MIN_CONTRAST`` (80 of 255) from the mean of the
  background under it;
* placement: the digit's box is its ink (opacity > 0) exactly, and lies inside the image (the
  empty margin of the square may not). A position is drawn among ``PLACEMENT_CANDIDATES``
  random ones whose box overlaps no box already placed by more than ``MAX_OVERLAP`` (0.1) of the
  smaller box's area (so the IoU of two boxes is at most 0.1 too, and a small digit never hides
  inside a large one's box; where two overlap, the later digit is painted over the earlier);
  when none has, the digit is tried once more at the smallest side, and then left out (so a
  scene can hold fewer digits than drawn; measured: rare at the defaults).

Splits follow the package's classification split of the digits (``sources.read_digits``):
``"train"`` scenes use the digits ``sources.load_images("digits", split="train")`` trains on,
and the held-out digits are divided once, per class, with a fixed permutation (``SPLIT_SEED``),
into ``"validation"`` and ``"test"`` halves (see ``split_indices``). So no digit image is in
two splits, and a backbone trained on the digits' training split never saw a detection
validation or test digit.

NumPy only (importing it and making scenes import neither TensorFlow nor Keras).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from keras_lightnets.data.sources import read_digits
from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_choice, check_positive_int, is_int

CLASS_NAMES = tuple(str(d) for d in range(10))
SPLITS = ("train", "validation", "test")
SPLIT_SEED = 0  # the fixed permutation that halves the held-out digits into validation and test
BACKGROUNDS = ("texture", "plain")
MIN_IMAGE_SIZE = 32
MAX_DIGITS = 10  # the largest upper bound of digits_per_image
REFERENCE_SIZE = 128  # the digit sides below are for this image size and scale with it
DIGIT_SIDES = (16, 48)  # smallest and largest side of a digit's square, pixels at REFERENCE_SIZE
MIN_DIGIT_SIDE = 8  # never smaller than the 8x8 source
INK_THRESHOLD = 0.1  # opacity below this is not drawn (and not in the box)
MIN_CONTRAST = 80.0  # luminance difference between a digit's colour and the background under it (of 255)
MAX_OVERLAP = 0.1  # the largest part of a box's area inside another box of its scene (bounds the IoU too)
PLACEMENT_CANDIDATES = 64  # random positions tried for a digit (then once more at the smallest side)
_SCENE_STREAM = 0x5CE7E5  # keeps scene generators apart from other uses of the same seed
_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class DigitScenes:
    """Scenes of one split, with their boxes; ``M = max_objects``, the upper bound of ``digits_per_image``.

    * ``images``: uint8 ``(N, S, S, 3)`` RGB, ``S = image_size``;
    * ``boxes``: float32 ``(N, M, 4)``, x1 y1 x2 y2 in pixels of the image, whole numbers: the
      digit's ink covers columns ``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1`` and touches all four
      sides; ``0 <= x1 < x2 <= S``; rows past ``counts[i]`` are zeros;
    * ``classes``: int32 ``(N, M)``, the digit 0..9 (an index into ``class_names``), ``-1`` past ``counts[i]``;
    * ``counts``: int32 ``(N,)``, the digits in each scene;
    * ``source_indices``: int32 ``(N, M)``, the index of each box's digit among the 1797 UCI
      digits (in ``split_indices(split)``), ``-1`` past ``counts[i]``;
    * ``class_names``: ``("0", ..., "9")``; ``split``: the split the digits come from.
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    source_indices: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    split: str = "train"

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def max_objects(self) -> int:
        return self.boxes.shape[1]


# --------------------------------------------------------------------------- source digits and splits


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, labels, test)`` of ``sources.read_digits``, read once, read-only."""
    arrays = read_digits()
    for array in arrays:
        array.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def _split_table() -> dict[str, np.ndarray]:
    _, labels, test = _digits()
    rng = np.random.default_rng(SPLIT_SEED)
    validation, held_out = [], []
    for label in range(len(CLASS_NAMES)):
        members = rng.permutation(np.flatnonzero(test & (labels == label)))
        half = len(members) // 2
        validation.append(members[:half])
        held_out.append(members[half:])
    table = {"train": np.flatnonzero(~test), "validation": np.sort(np.concatenate(validation)),
             "test": np.sort(np.concatenate(held_out))}
    for array in table.values():
        array.setflags(write=False)
    return table


def split_indices(split: str) -> np.ndarray:
    """Sorted int64 indices (into the 1797 bundled UCI digits, file order) of the digits ``split`` uses.

    ``"train"``: the digits of the package's classification training split (1438);
    ``"validation"`` / ``"test"``: per class, a fixed permutation (``SPLIT_SEED``) halves the
    held-out digits (the smaller half to validation: 178 / 181). The three are disjoint and
    together hold every digit.
    """
    check_choice("split", split, SPLITS)
    return _split_table()[split].copy()


# --------------------------------------------------------------------------- drawing helpers


@functools.lru_cache(maxsize=256)
def _resize_matrix(source: int, target: int) -> np.ndarray:
    """float32 ``(target, source)`` bilinear resampling matrix (half-pixel centres, clamped edges)."""
    position = np.clip((np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5, 0.0, source - 1.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    weight = position - low
    matrix = np.zeros((target, source), dtype=np.float64)
    rows = np.arange(target)
    np.add.at(matrix, (rows, low), 1.0 - weight)
    np.add.at(matrix, (rows, high), weight)
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def _ink(levels: np.ndarray, side: int) -> np.ndarray:
    """float32 ``(side, side)`` opacity of an 8x8 digit upscaled bilinearly, 0 where below ``INK_THRESHOLD``."""
    matrix = _resize_matrix(levels.shape[0], side)
    alpha = matrix @ (levels.astype(np.float32) / 16.0) @ matrix.T
    alpha[alpha < INK_THRESHOLD] = 0.0
    return np.minimum(alpha, 1.0)


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """float32 ``(size, size, 3)`` background in 0..255 units (not clipped)."""
    base = rng.uniform(40.0, 215.0, 3).astype(np.float32)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = base
    if kind == "plain":
        return canvas
    coordinate = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # -0.5 .. 0.5 across the image
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = coordinate[None, :] * math.cos(angle) + coordinate[:, None] * math.sin(angle)
    canvas += ramp[..., None] * rng.normal(0.0, 25.0, 3).astype(np.float32)
    grid = int(rng.integers(3, 9))
    matrix = _resize_matrix(grid, size)
    noise = rng.standard_normal((grid, grid, 3), dtype=np.float32)
    rows = (matrix @ noise.reshape(grid, grid * 3)).reshape(size, grid, 3)  # upscale the rows, then the columns
    smooth = (rows.transpose(0, 2, 1) @ matrix.T).transpose(0, 2, 1)
    canvas += smooth * np.float32(rng.uniform(4.0, 12.0))
    if rng.random() < 1.0 / 3.0:
        period = rng.uniform(6.0, 24.0) * size / REFERENCE_SIZE
        angle = rng.uniform(0.0, math.pi)
        pixels = np.arange(size, dtype=np.float32)
        phase = (pixels[None, :] * math.cos(angle) + pixels[:, None] * math.sin(angle)) * (2.0 * math.pi / period)
        wave = np.sin(phase + rng.uniform(0.0, 2.0 * math.pi)).astype(np.float32)
        canvas += wave[..., None] * rng.uniform(3.0, 10.0, 3).astype(np.float32)
    return canvas


def _colour(rng: np.random.Generator, under: float) -> np.ndarray:
    """An RGB colour (float32 ``(3,)``) whose luminance is at least ``MIN_CONTRAST`` from ``under``."""
    candidates = rng.uniform(0.0, 255.0, (32, 3)).astype(np.float32)
    fits = np.flatnonzero(np.abs(candidates @ _LUMA - under) >= MIN_CONTRAST)
    if len(fits):
        return candidates[fits[0]]
    low, high = (0.0, 40.0) if under > 127.5 else (215.0, 255.0)  # none of the 32 fits: near black or white
    return rng.uniform(low, high, 3).astype(np.float32)


def _max_overlap(candidates: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """For each of ``candidates`` ``(A, 4)``, the largest intersection with one of ``placed`` ``(K, 4)``
    as a fraction of the smaller of the two areas (zeros when K is 0)."""
    if len(placed) == 0:
        return np.zeros(len(candidates))
    a, b = candidates[:, None, :], placed[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return (inter / np.minimum(area_a, area_b)).max(axis=1)


def _place(rng: np.random.Generator, alpha: np.ndarray, size: int, placed: np.ndarray):
    """``(square's top-left y, x, box)`` for a digit of opacity ``alpha``, or None when no candidate fits."""
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    top, left = int(rows[0]), int(columns[0])
    height, width = int(rows[-1]) + 1 - top, int(columns[-1]) + 1 - left
    y = rng.integers(0, size - height + 1, PLACEMENT_CANDIDATES)
    x = rng.integers(0, size - width + 1, PLACEMENT_CANDIDATES)
    candidates = np.stack([x, y, x + width, y + height], axis=1).astype(np.float64)
    fits = np.flatnonzero(_max_overlap(candidates, placed) <= MAX_OVERLAP)
    if not len(fits):
        return None
    chosen = fits[0]
    return int(y[chosen]) - top, int(x[chosen]) - left, candidates[chosen]


def _paint(canvas: np.ndarray, alpha: np.ndarray, y: int, x: int, colour: np.ndarray) -> None:
    """Blend ``colour`` into ``canvas`` with opacity ``alpha`` whose top-left is at ``(y, x)`` (may overhang)."""
    size, side = canvas.shape[0], alpha.shape[0]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + side, size), min(x + side, size)
    opacity = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - opacity
    region += opacity * colour


def _scene(rng, size, pool, levels, bounds, sides, kind):
    """One scene: ``(uint8 image, float64 (k, 4) boxes, source indices (k,))``."""
    background = _background(rng, size, kind)
    canvas = background.copy()
    wanted = int(rng.integers(bounds[0], bounds[1] + 1))
    boxes = np.zeros((0, 4))
    sources: list[int] = []
    for _ in range(wanted):
        source = int(pool[rng.integers(len(pool))])
        side = int(rng.integers(sides[0], sides[1] + 1))
        alpha = _ink(levels[source], side)
        placement = _place(rng, alpha, size, boxes)
        if placement is None and side != sides[0]:
            alpha = _ink(levels[source], sides[0])
            placement = _place(rng, alpha, size, boxes)
        if placement is None:
            continue
        y, x, box = placement
        x1, y1, x2, y2 = (int(v) for v in box)
        under = float(background[y1:y2, x1:x2].mean(axis=(0, 1)) @ _LUMA)
        _paint(canvas, alpha, y, x, _colour(rng, under))
        boxes = np.concatenate([boxes, box[None]])
        sources.append(source)
    if kind == "texture":
        canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(0.0, 3.0))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, np.clip(boxes, 0, size), np.asarray(sources, dtype=np.int64)


# --------------------------------------------------------------------------- entry point


def _check_digits_per_image(value) -> tuple[int, int]:
    ok = (isinstance(value, tuple | list) and len(value) == 2 and all(is_int(v) for v in value)
          and 1 <= value[0] <= value[1] <= MAX_DIGITS)
    if not ok:
        raise InputError(
            f"`digits_per_image` must be a pair (low, high) of ints with 1 <= low <= high <= {MAX_DIGITS}; "
            f"received digits_per_image={value!r}"
        )
    return int(value[0]), int(value[1])


def _check_arguments(count, image_size, split, digits_per_image, seed, background) -> tuple[int, int, tuple[int, int]]:
    count = check_positive_int("count", count)
    if not is_int(image_size) or image_size < MIN_IMAGE_SIZE:
        raise InputError(f"`image_size` must be an int >= {MIN_IMAGE_SIZE} (pixels, the side of the square "
                         f"images); received image_size={image_size!r}")
    check_choice("split", split, SPLITS)
    bounds = _check_digits_per_image(digits_per_image)
    if not is_int(seed):
        raise InputError(f"`seed` must be an int; received seed={seed!r}")
    check_choice("background", background, BACKGROUNDS)
    return count, int(image_size), bounds


def digit_sides(image_size: int) -> tuple[int, int]:
    """The smallest and largest side (pixels) of a digit's square in ``image_size`` scenes:
    ``DIGIT_SIDES`` scaled by ``image_size / 128``, rounded, at least ``MIN_DIGIT_SIDE``."""
    scale = image_size / REFERENCE_SIZE
    low = max(MIN_DIGIT_SIDE, round(DIGIT_SIDES[0] * scale))
    return low, max(low, round(DIGIT_SIDES[1] * scale))


def make_digit_scenes(
    count: int,
    image_size: int = 128,
    split: str = "train",
    digits_per_image: tuple[int, int] = (1, 4),
    seed: int = 0,
    background: str = "texture",
) -> DigitScenes:
    """``count`` scenes of ``image_size`` x ``image_size`` pixels with digits of ``split`` (see the module docstring).

    Args:
        count: the number of scenes, >= 1.
        image_size: the side of the square RGB images in pixels, an int >= 32; digit sides scale with it.
        split: ``"train"``, ``"validation"`` or ``"test"``: the source digits used (``split_indices``).
        digits_per_image: ``(low, high)``, 1 <= low <= high <= 10: each scene draws a number of digits
            uniformly in this range (placement may leave one out when it does not fit); ``high`` is
            ``max_objects``, the padded length of ``boxes`` and ``classes``.
        seed: any int; the same arguments give the same bytes. Scene ``i`` depends only on
            ``seed``, ``split``, ``i`` and the other arguments, not on ``count``.
        background: ``"texture"`` (gradient, smooth noise, stripes, pixel noise) or ``"plain"``
            (one flat colour per scene, no noise).

    Returns a ``DigitScenes``. Bad arguments raise ``InputError`` naming the argument.
    """
    count, image_size, bounds = _check_arguments(count, image_size, split, digits_per_image, seed, background)
    levels, labels, _ = _digits()
    pool = _split_table()[split]
    sides = digit_sides(image_size)
    entropy = [_SCENE_STREAM, SPLITS.index(split), int(seed < 0), abs(int(seed)), BACKGROUNDS.index(background)]
    max_objects = bounds[1]
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    boxes = np.zeros((count, max_objects, 4), dtype=np.float32)
    classes = np.full((count, max_objects), -1, dtype=np.int32)
    sources = np.full((count, max_objects), -1, dtype=np.int32)
    counts = np.zeros(count, dtype=np.int32)
    for i in range(count):
        rng = np.random.default_rng([*entropy, i])
        image, scene_boxes, scene_sources = _scene(rng, image_size, pool, levels, bounds, sides, background)
        k = len(scene_sources)
        images[i] = image
        boxes[i, :k] = scene_boxes
        classes[i, :k] = labels[scene_sources]
        sources[i, :k] = scene_sources
        counts[i] = k
    return DigitScenes(images=images, boxes=boxes, classes=classes, counts=counts, source_indices=sources,
                       class_names=CLASS_NAMES, split=split)


__all__ = [
    "BACKGROUNDS", "CLASS_NAMES", "MAX_OVERLAP", "SPLITS", "DigitScenes", "digit_sides", "make_digit_scenes",
    "split_indices",
]
