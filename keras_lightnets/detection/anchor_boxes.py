"""Anchor boxes (priors) of single-shot detectors, computed in NumPy.

Three generators, each reproducing one reference implementation to float32 rounding,
including the order of the boxes (it must match the order of the head outputs):

* ``ssd_default_boxes``: torchvision's ``DefaultBoxGenerator`` (SSD, SSDLite), x1 y1 x2 y2
  in input pixels. Aspect ratio means width / height.
* ``retinanet_anchors``: torchvision's ``AnchorGenerator`` (RetinaNet, Faster R-CNN),
  x1 y1 x2 y2 in input pixels. Aspect ratio means height / width (torchvision's convention).
* ``ssd_priors``: qfgaohao/pytorch-ssd's ``generate_ssd_priors``, centre x, centre y,
  width, height relative to the image (0..1).

All three order the boxes level by level, then row-major over a level's grid (y outer,
x inner), then the boxes of one location; that is the order of an NHWC head output
reshaped to ``(batch, H * W * A, K)``.

A feature size or image size is an int (square) or a ``(height, width)`` pair where the
reference allows rectangles (the two torchvision generators).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_bool, check_choice, check_positive_int, check_positive_number, is_int

# ----------------------------------------------------------------------------- argument checks


def _is_sequence(value) -> bool:
    return isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes)


def _sequence(argument: str, value, what: str, *, allow_empty: bool = False) -> list:
    """``value`` as a list; ``InputError`` unless it is a (non-empty) sequence."""
    if not _is_sequence(value) or (not allow_empty and len(value) == 0):
        kind = "a sequence" if allow_empty else "a non-empty sequence"
        raise InputError(f"`{argument}` must be {kind} of {what}; received {argument}={value!r}")
    return list(value)


def _size_hw(argument: str, value, what: str) -> tuple[int, int]:
    """``value`` (an int or a (height, width) pair of ints, all >= 1) as ``(height, width)``."""
    if is_int(value):
        side = check_positive_int(argument, value)
        return side, side
    if _is_sequence(value) and len(value) == 2 and all(is_int(v) and v >= 1 for v in value):
        return int(value[0]), int(value[1])
    raise InputError(f"`{argument}` must be {what}; received {argument}={value!r}")


_HW = "a positive int or a (height, width) pair of positive ints"


def _feature_sizes_hw(feature_sizes) -> list[tuple[int, int]]:
    levels = _sequence("feature_sizes", feature_sizes, f"grid sizes, each {_HW}")
    return [_size_hw(f"feature_sizes[{k}]", size, _HW) for k, size in enumerate(levels)]


def _per_level(argument: str, value, levels: int, what: str) -> list:
    """``value`` as a list of one entry per level; ``InputError`` unless its length is ``levels``."""
    entries = _sequence(argument, value, what)
    if len(entries) != levels:
        raise InputError(
            f"`{argument}` must have one entry per feature map ({levels}, the length of feature_sizes); "
            f"received {len(entries)}: {argument}={value!r}"
        )
    return entries


def _ratio_lists(argument: str, value, levels: int, *, allow_flat: bool) -> list[list[float]]:
    """Aspect ratios per level, each a finite number > 0. ``allow_flat``: one flat list for every level."""
    if allow_flat and _is_sequence(value) and len(value) > 0 and not any(_is_sequence(v) for v in value):
        ratios = [check_positive_number(f"{argument}[{i}]", r) for i, r in enumerate(value)]
        return [ratios] * levels
    what = "per-level sequences of aspect ratios (numbers > 0)"
    entries = _per_level(argument, value, levels, what)
    return [
        [check_positive_number(f"{argument}[{k}][{i}]", r)
         for i, r in enumerate(_sequence(f"{argument}[{k}]", level, "aspect ratios (numbers > 0)",
                                         allow_empty=not allow_flat))]
        for k, level in enumerate(entries)
    ]


# ----------------------------------------------------------------------------- torchvision SSD / SSDLite


def ssd_default_boxes(
    feature_sizes: Sequence[int | tuple[int, int]],
    image_size: int | tuple[int, int],
    aspect_ratios: Sequence[Sequence[float]],
    min_ratio: float = 0.15,
    max_ratio: float = 0.9,
    scales: Sequence[float] | None = None,
    clip: bool = True,
) -> np.ndarray:
    """torchvision ``DefaultBoxGenerator`` boxes (SSD, SSDLite), float32 ``(N, 4)`` x1 y1 x2 y2 in pixels.

    Args:
        feature_sizes: the grid of each feature map, an int (square) or ``(height, width)``, one per level.
        image_size: the input image in pixels, an int (square) or ``(height, width)``.
        aspect_ratios: per level, the extra ratios ``r`` (width / height); each adds the boxes
            ``(s_k * sqrt(r), s_k / sqrt(r))`` and the same swapped. A level may have none.
        min_ratio, max_ratio: the first and last scale (relative to the image) when ``scales`` is None;
            the scales are then ``linspace(min_ratio, max_ratio, levels)`` followed by 1.0 (for a single
            level: ``[min_ratio, max_ratio]``).
        scales: explicit scales, ``len(feature_sizes) + 1`` numbers > 0 (the last one only enters ``s'_k``).
        clip: clip the relative widths and heights to [0, 1] (boxes are never clipped to the image).

    Returns:
        float32 ``(N, 4)``, ``N = sum(H_k * W_k * (2 + 2 * len(aspect_ratios[k])))``: x1 y1 x2 y2 in input
        pixels, level by level, row-major over each grid (y outer, x inner), then per location
        ``[s_k, s_k]``, ``[s'_k, s'_k]`` (``s'_k = sqrt(s_k * s_{k+1})``), then the ratio pairs.
        Centres are ``(i + 0.5) / grid``.
    """
    grids = _feature_sizes_hw(feature_sizes)
    image_h, image_w = _size_hw("image_size", image_size, _HW)
    ratios = _ratio_lists("aspect_ratios", aspect_ratios, len(grids), allow_flat=False)
    check_bool("clip", clip)
    levels = len(grids)
    if scales is None:
        low = check_positive_number("min_ratio", min_ratio)
        high = check_positive_number("max_ratio", max_ratio)
        if low >= high:
            raise InputError(
                f"`min_ratio` must be smaller than `max_ratio`; received min_ratio={min_ratio!r}, "
                f"max_ratio={max_ratio!r}"
            )
        # The same Python-float arithmetic as torchvision (the rounding of every scale matches).
        if levels > 1:
            scale_list = [low + (high - low) * k / (levels - 1.0) for k in range(levels)] + [1.0]
        else:
            scale_list = [low, high]
    else:
        scale_list = [check_positive_number(f"scales[{k}]", s)
                      for k, s in enumerate(_sequence("scales", scales, "numbers > 0"))]
        if len(scale_list) != levels + 1:
            raise InputError(
                f"`scales` must hold len(feature_sizes) + 1 = {levels + 1} numbers > 0; "
                f"received {len(scale_list)}: scales={scales!r}"
            )

    size_xy = np.array([image_w, image_h], dtype=np.float32)
    half = np.float32(0.5)
    boxes = []
    for k, (grid_h, grid_w) in enumerate(grids):
        s_k = scale_list[k]
        s_prime = math.sqrt(scale_list[k] * scale_list[k + 1])
        pairs = [[s_k, s_k], [s_prime, s_prime]]
        for r in ratios[k]:
            root = math.sqrt(r)
            pairs += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
        wh = np.array(pairs, dtype=np.float64).astype(np.float32)  # torchvision: float64 maths, float32 tensor
        if clip:
            wh = np.clip(wh, np.float32(0.0), np.float32(1.0))
        # Centres in float32, as torchvision: (arange + 0.5) / grid.
        cx = (np.arange(grid_w, dtype=np.float32) + half) / np.float32(grid_w)
        cy = (np.arange(grid_h, dtype=np.float32) + half) / np.float32(grid_h)
        centre = np.stack(np.meshgrid(cx, cy, indexing="xy"), axis=-1).reshape(-1, 1, 2)  # (H*W, 1, 2), y outer
        half_wh = (half * wh)[None]  # (1, A, 2)
        level = np.concatenate([(centre - half_wh) * size_xy, (centre + half_wh) * size_xy], axis=-1)
        boxes.append(level.reshape(-1, 4))
    return np.concatenate(boxes, axis=0).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- torchvision RetinaNet


def retinanet_anchors(
    feature_sizes: Sequence[int | tuple[int, int]],
    image_size: int | tuple[int, int],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float] | Sequence[Sequence[float]] = (0.5, 1.0, 2.0),
) -> np.ndarray:
    """torchvision ``AnchorGenerator`` anchors (RetinaNet), float32 ``(N, 4)`` x1 y1 x2 y2 in pixels.

    Args:
        feature_sizes: the grid of each feature map, an int (square) or ``(height, width)``, one per level;
            none may exceed the image.
        image_size: the input image in pixels, an int (square) or ``(height, width)``.
        sizes: per level, the anchor sizes in pixels (the side of the ratio-1 anchor); a bare number is
            one size.
        aspect_ratios: ratios ``r`` = height / width (torchvision's convention), either one flat sequence
            for every level or one sequence per level.

    Returns:
        float32 ``(N, 4)``, ``N = sum(H_k * W_k * len(sizes[k]) * len(aspect_ratios[k]))``: x1 y1 x2 y2 in
        input pixels, level by level, row-major over each grid (y outer, x inner), then per location
        ratio-major (all sizes of the first ratio first). A cell anchor is
        ``round([-w, -h, w, h] / 2)`` with ``w = size / sqrt(r)``, ``h = size * sqrt(r)`` (rounded to
        integers, half to even), shifted by ``(x * stride, y * stride)`` where
        ``stride = image_size // grid`` per axis (anchors are centred on the top-left corner of a cell,
        not half a stride in).
    """
    grids = _feature_sizes_hw(feature_sizes)
    image_h, image_w = _size_hw("image_size", image_size, _HW)
    levels = len(grids)
    size_lists = []
    for k, level in enumerate(_per_level("sizes", sizes, levels, "per-level sequences of anchor sizes in pixels")):
        level = [level] if not _is_sequence(level) else _sequence(f"sizes[{k}]", level, "anchor sizes in pixels")
        size_lists.append([check_positive_number(f"sizes[{k}][{i}]", s) for i, s in enumerate(level)])
    ratios = _ratio_lists("aspect_ratios", aspect_ratios, levels, allow_flat=True)

    boxes = []
    for k, (grid_h, grid_w) in enumerate(grids):
        if grid_h > image_h or grid_w > image_w:
            raise InputError(
                f"`feature_sizes[{k}]` must not exceed image_size (the stride image_size // grid would be 0); "
                f"received feature_sizes[{k}]={feature_sizes[k]!r}, image_size={image_size!r}"
            )
        # Cell anchors in float32, the operations in torchvision's order.
        scale = np.array(size_lists[k], dtype=np.float32)
        h_ratio = np.sqrt(np.array(ratios[k], dtype=np.float32))
        w_ratio = np.float32(1.0) / h_ratio
        ws = (w_ratio[:, None] * scale[None, :]).reshape(-1)
        hs = (h_ratio[:, None] * scale[None, :]).reshape(-1)
        cell = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2.0))  # (A, 4), ratio-major
        shift_x = np.arange(grid_w, dtype=np.int64) * (image_w // grid_w)
        shift_y = np.arange(grid_h, dtype=np.int64) * (image_h // grid_h)
        sy, sx = np.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = np.stack([sx, sy, sx, sy], axis=-1).reshape(-1, 1, 4).astype(np.float32)  # exact: small ints
        boxes.append((shifts + cell[None]).reshape(-1, 4))
    return np.concatenate(boxes, axis=0).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- qfgaohao/pytorch-ssd


def ssd_priors(
    feature_sizes: Sequence[int],
    shrinkages: Sequence[float],
    box_sizes: Sequence[tuple[float, float]],
    aspect_ratios: Sequence[Sequence[float]],
    image_size: int,
    clamp: bool = True,
) -> np.ndarray:
    """pytorch-ssd ``generate_ssd_priors`` priors, float32 ``(N, 4)`` cx cy w h relative to the image.

    Args:
        feature_sizes: the side of each (square) feature map, one int per level.
        shrinkages: per level, the stride the centres assume, in pixels: the centre of cell ``i`` is
            ``(i + 0.5) / (image_size / shrinkage)``. This is the config's value, not derived from the
            grid (pytorch-ssd's MobileNet configs put a 19x19 map at shrinkage 16, so 300 / 16 = 18.75).
        box_sizes: per level, ``(min_size, max_size)`` in pixels.
        aspect_ratios: per level, the ratios ``r`` (width / height) of extra boxes of the min size; each adds
            ``(w * sqrt(r), h / sqrt(r))`` and ``(w / sqrt(r), h * sqrt(r))``. A level may have none.
        image_size: the side of the (square) input in pixels.
        clamp: clamp every value (centres too) to [0, 1], as pytorch-ssd does by default.

    Returns:
        float32 ``(N, 4)``, ``N = sum(F_k**2 * (2 + 2 * len(aspect_ratios[k])))``: centre x, centre y, width,
        height relative to the image; level by level, row-major (y outer, x inner), then per location the
        min square, the ``sqrt(min * max)`` square, then the ratio pairs. Computed in float64, then
        rounded to float32 (as ``torch.tensor`` of Python floats), then clamped.
    """
    sides = _sequence("feature_sizes", feature_sizes, "positive ints")
    sides = [check_positive_int(f"feature_sizes[{k}]", side) for k, side in enumerate(sides)]
    levels = len(sides)
    strides = [check_positive_number(f"shrinkages[{k}]", s)
               for k, s in enumerate(_per_level("shrinkages", shrinkages, levels, "numbers > 0"))]
    pairs = []
    for k, pair in enumerate(_per_level("box_sizes", box_sizes, levels, "(min_size, max_size) pairs in pixels")):
        if not _is_sequence(pair) or len(pair) != 2:
            raise InputError(f"`box_sizes[{k}]` must be a (min_size, max_size) pair; received box_sizes[{k}]={pair!r}")
        pairs.append((check_positive_number(f"box_sizes[{k}][0]", pair[0]),
                      check_positive_number(f"box_sizes[{k}][1]", pair[1])))
    ratios = _ratio_lists("aspect_ratios", aspect_ratios, levels, allow_flat=False)
    image = check_positive_int("image_size", image_size)
    check_bool("clamp", clamp)

    priors = []
    for side, stride, (min_size, max_size), level_ratios in zip(sides, strides, pairs, ratios, strict=True):
        scale = image / stride
        centres = (np.arange(side, dtype=np.float64) + 0.5) / scale
        small = min_size / image
        big = math.sqrt(max_size * min_size) / image
        wh = [[small, small], [big, big]]
        for r in level_ratios:
            root = math.sqrt(r)
            wh += [[small * root, small / root], [small / root, small * root]]
        wh = np.array(wh, dtype=np.float64)  # (A, 2)
        cx, cy = np.meshgrid(centres, centres, indexing="xy")  # row-major: y outer, x inner
        xy = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        level = np.concatenate(np.broadcast_arrays(xy, wh[None]), axis=-1)  # (F*F, A, 4)
        priors.append(level.reshape(-1, 4))
    out = np.concatenate(priors, axis=0).astype(np.float32)
    if clamp:
        out = np.clip(out, np.float32(0.0), np.float32(1.0))
    return out


# ----------------------------------------------------------------------------- reference presets


@dataclass(frozen=True)
class AnchorPreset:
    """The anchor settings of one reference detector.

    ``generator(**arguments)`` gives its anchors; ``box_format`` says in which convention.
    """

    generator: Callable[..., np.ndarray]
    arguments: Mapping[str, object]
    box_format: str  # "xyxy pixels" or "cxcywh relative"

    def anchors(self) -> np.ndarray:
        """The preset's anchors, float32 ``(N, 4)`` in ``box_format``."""
        return self.generator(**self.arguments)


# qfgaohao/pytorch-ssd mobilenetv1_ssd_config, used by mb1-ssd and mb2-ssd-lite: 3000 priors.
_PYTORCH_SSD_PRIORS = AnchorPreset(
    ssd_priors,
    MappingProxyType({"feature_sizes": (19, 10, 5, 3, 2, 1), "shrinkages": (16, 32, 64, 100, 150, 300),
                      "box_sizes": ((60, 105), (105, 150), (150, 195), (195, 240), (240, 285), (285, 330)),
                      "aspect_ratios": ((2, 3),) * 6, "image_size": 300}),
    "cxcywh relative",
)
PRESET_ANCHORS: Mapping[str, AnchorPreset] = MappingProxyType({
    # torchvision.models.detection.ssdlite320_mobilenet_v3_large: 3234 boxes.
    "ssdlite320_mobilenet_v3_large": AnchorPreset(
        ssd_default_boxes,
        MappingProxyType({"feature_sizes": (20, 10, 5, 3, 2, 1), "image_size": 320,
                          "aspect_ratios": ((2, 3),) * 6, "min_ratio": 0.2, "max_ratio": 0.95}),
        "xyxy pixels",
    ),
    # torchvision RetinaNet's default anchors on a MobileNetV3-Large FPN (P3-P7) at 320: 19206 boxes.
    "retinanet_mobilenet_v3_large_fpn": AnchorPreset(
        retinanet_anchors,
        MappingProxyType({"feature_sizes": (40, 20, 10, 5, 3), "image_size": 320,
                          "sizes": ((32, 40, 50), (64, 80, 101), (128, 161, 203), (256, 322, 406), (512, 645, 812)),
                          "aspect_ratios": (0.5, 1.0, 2.0)}),
        "xyxy pixels",
    ),
    "mb2_ssd_lite": _PYTORCH_SSD_PRIORS,
    "mb1_ssd": _PYTORCH_SSD_PRIORS,  # the same config, mobilenetv1_ssd_config
})


def preset_anchors(name: str) -> np.ndarray:
    """The anchors of the reference detector ``name`` (a key of ``PRESET_ANCHORS``), float32 ``(N, 4)``.

    In the reference's own convention: x1 y1 x2 y2 pixels for the torchvision models,
    cx cy w h relative to the image for pytorch-ssd's ``mb2_ssd_lite``.
    """
    check_choice("name", name, tuple(PRESET_ANCHORS))
    return PRESET_ANCHORS[name].anchors()
