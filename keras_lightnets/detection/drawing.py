"""Detections drawn on their images: one PNG grid, for eyes (``lightnets detect eval``, export checks).

``draw_detections_grid(images, detections_a, detections_b=None, truth=None, path=...)`` draws each
image in a panel of ``panel_size`` x ``panel_size`` pixels, its ground-truth boxes (``truth``)
in green, ``detections_a`` in red with ``class score`` labels, and, when ``detections_b`` is
given (e.g. the same model's boxes after a conversion), a second panel beside each image with
those in blue, so the two can be compared side by side. Panels are laid out ``columns`` images
to a row; the PNG is exactly ``columns * panels_per_image * panel_size`` by ``rows * panel_size``
pixels (``grid_size``), written atomically (``files.atomic_path``) with matplotlib's Agg
canvas (no display, no pyplot state).

Detections and ground truth are per-image dicts as ``detection.metrics`` takes them
(``{"boxes": (K, 4) x1 y1 x2 y2 pixels, "scores": (K,), "classes": (K,)}``; ground truth without
scores), e.g. from ``metrics.detections_from_outputs`` and ``metrics.ground_truth_from_arrays``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_positive_int

TRUTH_COLOUR = "#10d010"
COLOURS = ("#ff3030", "#3080ff")  # detections_a, detections_b
DPI = 100
LABEL_SIZE = 7  # points


def _images(images) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape \
            or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"`images` must be (N, height, width, 3) pixels in [0, 255] with N >= 1; received "
                         f"{array.dtype} {array.shape}")
    pixels = np.clip(np.nan_to_num(array.astype(np.float32)), 0, 255).astype(np.uint8)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _per_image(argument: str, items, count: int, scores: bool) -> list[dict] | None:
    """``items`` checked: ``count`` dicts with boxes ``(K, 4)``, classes ``(K,)`` (and scores ``(K,)``)."""
    if items is None:
        return None
    if isinstance(items, Mapping) or not isinstance(items, Sequence) or len(items) != count:
        raise InputError(f"`{argument}` must be a list of {count} per-image dicts (one per image); received "
                         f"{type(items).__name__}{f' of {len(items)}' if isinstance(items, Sequence) else ''}")
    checked = []
    for i, item in enumerate(items):
        keys = ("boxes", "classes", "scores") if scores else ("boxes", "classes")
        if not isinstance(item, Mapping) or any(k not in item for k in keys):
            raise InputError(f"`{argument}[{i}]` must be a dict with {', '.join(keys)}")
        boxes = np.asarray(item["boxes"], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(item["classes"]).reshape(-1)
        values = np.asarray(item["scores"], dtype=np.float64).reshape(-1) if scores else np.ones(len(boxes))
        if len(classes) != len(boxes) or len(values) != len(boxes):
            raise InputError(f"`{argument}[{i}]` has {len(boxes)} boxes but {len(classes)} classes"
                             + (f" and {len(values)} scores" if scores else ""))
        checked.append({"boxes": boxes, "classes": classes, "scores": values})
    return checked


def grid_size(count: int, *, columns: int = 4, panel_size: int = 256, pairs: bool = False) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG ``draw_detections_grid`` writes for ``count`` images
    (``pairs``: with ``detections_b``, two panels per image)."""
    columns = min(check_positive_int("columns", columns), check_positive_int("count", count))
    panels = 2 if pairs else 1
    return columns * panels * panel_size, math.ceil(count / columns) * panel_size


def _name(class_id, class_names: Sequence[str] | None) -> str:
    k = int(class_id)
    return str(class_names[k]) if class_names is not None and 0 <= k < len(class_names) else str(k)


def _draw_boxes(axes, found: dict, colour: str, class_names, *, min_score: float, max_boxes: int,
                scored: bool, dashed: bool = False) -> int:
    """Draw ``found``'s boxes scoring at least ``min_score`` (at most ``max_boxes``, best first); the count."""
    from matplotlib.patches import Rectangle

    order = np.argsort(-found["scores"], kind="stable")
    order = [i for i in order if found["scores"][i] >= min_score][:max_boxes]
    for i in order:
        x1, y1, x2, y2 = found["boxes"][i]
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            continue
        axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5,
                                 linestyle="--" if dashed else "-"))
        label = _name(found["classes"][i], class_names) + (f" {found['scores'][i]:.2f}" if scored else "")
        axes.text(x1, y1, label, color="white", fontsize=LABEL_SIZE, va="bottom", ha="left", clip_on=True,
                  bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.8})
    return len(order)


def draw_detections_grid(
    images,
    detections_a: Sequence[Mapping],
    detections_b: Sequence[Mapping] | None = None,
    truth: Sequence[Mapping] | None = None,
    path: str | os.PathLike = "detections.png",
    *,
    class_names: Sequence[str] | None = None,
    labels: tuple[str, str] = ("model", "model b"),
    min_score: float = 0.3,
    max_boxes: int = 20,
    columns: int = 4,
    panel_size: int = 256,
) -> tuple[int, int]:
    """Draw the detections on their images as one PNG grid at ``path``; returns its ``(width, height)``.

    Args:
        images: ``(N, H, W, 3)`` (or ``(N, H, W, 1)``) pixels in ``[0, 255]``, the images the boxes
            are in (boxes are in these pixels).
        detections_a: ``N`` dicts ``{"boxes" (K, 4) x1 y1 x2 y2 pixels, "scores" (K,), "classes" (K,)}``,
            drawn in red with ``class_names[class] score``.
        detections_b: optional, as ``detections_a``; each image then gets a second panel to the
            right with these boxes in blue (dashed), e.g. a converted model's.
        truth: optional ``N`` dicts ``{"boxes", "classes"}``, drawn in green in every panel.
        path: the PNG file, replaced atomically.
        class_names: names of the 0-based class ids (ids are shown without it).
        labels: the names of the ``a`` and ``b`` detections, written at the top of their panels.
        min_score: detections scoring below it are not drawn; ``max_boxes``: at most this many per
            panel (the best).
        columns: images per row; ``panel_size``: pixels of a panel's side (the image is scaled to
            fit it, aspect kept).

    ``InputError`` names a malformed argument. The PNG is ``grid_size(N, ...)`` pixels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from keras_lightnets import files

    pixels = _images(images)
    count, height, width = pixels.shape[:3]
    found_a = _per_image("detections_a", detections_a, count, scores=True)
    found_b = _per_image("detections_b", detections_b, count, scores=True)
    boxes_truth = _per_image("truth", truth, count, scores=False)
    panel_size = check_positive_int("panel_size", panel_size)
    max_boxes = check_positive_int("max_boxes", max_boxes)
    if isinstance(min_score, bool) or not isinstance(min_score, int | float) or not math.isfinite(min_score):
        raise InputError(f"`min_score` must be a number; received min_score={min_score!r}")
    if not (isinstance(labels, tuple | list) and len(labels) == 2 and all(isinstance(t, str) for t in labels)):
        raise InputError(f"`labels` must be two strings (the a and b detections); received labels={labels!r}")
    grid_width, grid_height = grid_size(count, columns=columns, panel_size=panel_size, pairs=found_b is not None)
    columns = min(columns, count)
    panels = [(found_a, COLOURS[0], labels[0], False)]
    if found_b is not None:
        panels.append((found_b, COLOURS[1], labels[1], True))
    figure = Figure(figsize=(grid_width / DPI, grid_height / DPI), dpi=DPI, facecolor="black")
    for index in range(count):
        row, column = divmod(index, columns)
        for p, (found, colour, label, dashed) in enumerate(panels):
            left = (column * len(panels) + p) * panel_size / grid_width
            bottom = 1.0 - (row + 1) * panel_size / grid_height
            axes = figure.add_axes((left, bottom, panel_size / grid_width, panel_size / grid_height))
            axes.set_axis_off()
            axes.imshow(pixels[index], extent=(0, width, height, 0), interpolation="nearest")
            axes.set_xlim(0, width)
            axes.set_ylim(height, 0)
            if boxes_truth is not None:
                _draw_boxes(axes, boxes_truth[index], TRUTH_COLOUR, class_names, min_score=-math.inf,
                            max_boxes=max_boxes, scored=False)
            drawn = _draw_boxes(axes, found[index], colour, class_names, min_score=min_score, max_boxes=max_boxes,
                                scored=True, dashed=dashed)
            axes.text(0.01, 0.99, f"{index}: {label} ({drawn})", transform=axes.transAxes, color="white",
                      fontsize=LABEL_SIZE, va="top", ha="left",
                      bbox={"facecolor": "black", "edgecolor": "none", "pad": 1, "alpha": 0.6})
    with files.atomic_path(path, ".png") as temporary:
        figure.savefig(temporary, format="png", dpi=DPI, facecolor="black")
    return grid_width, grid_height


__all__ = ["COLOURS", "TRUTH_COLOUR", "draw_detections_grid", "grid_size"]
