"""Detection metrics over NumPy arrays: COCO mAP (through pycocotools) and PASCAL VOC2007 mAP.

Import it by name: ``from keras_lightnets.detection import metrics``. The module imports only
NumPy; ``coco_map`` imports pycocotools when called (``pip install 'keras_lightnets[detect]'``).

Inputs are per image, one entry per image, the same images in the same order in both lists:

* ground truth ``{"boxes": (K, 4), "classes": (K,)}``, optionally ``"difficult": (K,)`` bool
  (read by ``voc07_map`` only);
* detections ``{"boxes": (D, 4), "scores": (D,), "classes": (D,)}``.

Boxes are x1 y1 x2 y2 in pixels (any unit works as long as both sides share it; COCO's area
ranges small / medium / large assume pixels), with ``x2 >= x1`` and ``y2 >= y1``. Classes are
0-based ids (integers, or floats with integer values as some NMS ops return). Other keys are
ignored. ``detections_from_outputs`` and ``ground_truth_from_arrays`` cut padded batches (a
detector's post-processed outputs, a dataset's fixed-size arrays) into these per-image dicts.

* ``coco_map``: pycocotools' ``COCOeval`` (``iouType="bbox"``) on COCO objects built in memory;
  its twelve summary numbers by name plus per-class AP.
* ``voc07_map``: PASCAL VOC2007's 11-point interpolated AP per class, computed here in NumPy the
  way py-faster-rcnn's ``voc_eval(use_07_metric=True)`` and qfgaohao/pytorch-ssd's ``eval_ssd.py``
  compute it (see its docstring for the few places where those two differ).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_bool, check_positive_int, check_rate

# pycocotools' ``COCOeval.stats``, in its order.
COCO_STATS = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)
# Class ids above this need an explicit ``num_classes`` (the per-class lists are that long).
_MAX_IMPLICIT_CLASSES = 1 << 16
_INSTALL_HINT = "pip install 'keras_lightnets[detect]'"


class _Image(NamedTuple):
    boxes: np.ndarray  # float64 (K, 4)
    classes: np.ndarray  # int64 (K,)
    scores: np.ndarray | None  # float64 (K,), detections only
    difficult: np.ndarray | None  # bool (K,), ground truth only


# ---------------------------------------------------------------------------------------------
# input checks


def _as_array(argument: str, value) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested lists
        raise InputError(f"`{argument}` must be a rectangular numeric array; received {argument}={value!r}") from err


def _numeric(argument: str, array: np.ndarray, expected: str) -> None:
    if array.dtype.kind not in "iuf":
        raise InputError(f"`{argument}` must be a numeric array of shape {expected}; received dtype {array.dtype}")


def _check_finite(argument: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"`{argument}` must hold finite numbers; received NaN or infinity")


def _boxes(argument: str, value) -> np.ndarray:
    """float64 (K, 4) x1 y1 x2 y2, finite, x2 >= x1 and y2 >= y1; an empty 1-D array is (0, 4)."""
    array = _as_array(argument, value)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 4)
    _numeric(argument, array, "(K, 4)")
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"`{argument}` must have shape (K, 4) (x1 y1 x2 y2); received shape {array.shape}")
    _check_finite(argument, array)
    array = array.astype(np.float64)
    bad = np.flatnonzero((array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1]))
    if bad.size:
        raise InputError(
            f"`{argument}` must be x1 y1 x2 y2 with x2 >= x1 and y2 >= y1; received row {int(bad[0])} = "
            f"{array[bad[0]].tolist()}"
        )
    return array


def _vector(argument: str, value, length: int) -> np.ndarray:
    array = _as_array(argument, value)
    if array.ndim != 1 or array.shape[0] != length:
        raise InputError(f"`{argument}` must have shape ({length},), one value per box; received shape {array.shape}")
    return array


def _classes(argument: str, value, length: int, num_classes: int | None) -> np.ndarray:
    """int64 (K,) class ids in [0, num_classes) (or [0, 65536) without ``num_classes``)."""
    array = _vector(argument, value, length)
    _numeric(argument, array, f"({length},)")
    _check_finite(argument, array)
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        fractions = array[array != np.round(array)][:3].tolist()
        raise InputError(f"`{argument}` must hold whole class ids; received {fractions}")
    if array.size and array.min() < 0:
        raise InputError(f"`{argument}` must hold class ids >= 0; received {int(array.min())}")
    limit = _MAX_IMPLICIT_CLASSES if num_classes is None else num_classes
    if array.size and array.max() >= limit:
        allowed = f"< num_classes={num_classes}" if num_classes is not None else (
            f"< {_MAX_IMPLICIT_CLASSES} (pass num_classes for more)")
        raise InputError(f"`{argument}` must hold class ids {allowed}; received {int(array.max())}")
    return array.astype(np.int64)


def _scores(argument: str, value, length: int) -> np.ndarray:
    array = _vector(argument, value, length)
    _numeric(argument, array, f"({length},)")
    _check_finite(argument, array)
    return array.astype(np.float64)


def _difficult(argument: str, value, length: int) -> np.ndarray:
    array = _vector(argument, value, length)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iuf" and np.all((array == 0) | (array == 1)):
        return array.astype(bool)
    raise InputError(f"`{argument}` must hold booleans (or 0 / 1), one per box; received {array[:5].tolist()}")


def _images(argument: str, items, *, detections: bool, num_classes: int | None) -> list[_Image]:
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InputError(f"`{argument}` must be a list with one dict per image; received {type(items).__name__}")
    keys = ("boxes", "scores", "classes") if detections else ("boxes", "classes")
    images = []
    for i, item in enumerate(items):
        name = f"{argument}[{i}]"
        if not isinstance(item, Mapping) or any(key not in item for key in keys):
            raise InputError(
                f"`{name}` must be a dict with keys {', '.join(repr(k) for k in keys)}; received "
                f"{sorted(item) if isinstance(item, Mapping) else type(item).__name__}"
            )
        boxes = _boxes(f"{name}['boxes']", item["boxes"])
        count = len(boxes)
        classes = _classes(f"{name}['classes']", item["classes"], count, num_classes)
        scores = _scores(f"{name}['scores']", item["scores"], count) if detections else None
        difficult = None
        if not detections:
            raw = item.get("difficult")
            difficult = np.zeros(count, bool) if raw is None else _difficult(f"{name}['difficult']", raw, count)
        images.append(_Image(boxes, classes, scores, difficult))
    return images


def _inputs(ground_truth, detections, num_classes) -> tuple[list[_Image], list[_Image], int]:
    """Checked images of both sides and the length of the per-class lists."""
    num_classes = check_positive_int("num_classes", num_classes, allow_none=True)
    truth = _images("ground_truth", ground_truth, detections=False, num_classes=num_classes)
    found = _images("detections", detections, detections=True, num_classes=num_classes)
    if not truth:
        raise InputError("`ground_truth` must hold at least one image; received an empty list")
    if len(truth) != len(found):
        raise InputError(
            f"`ground_truth` and `detections` must hold the same images, one entry each; received {len(truth)} "
            f"and {len(found)} entries"
        )
    if num_classes is None:
        num_classes = 1 + max((int(image.classes.max()) for image in truth + found if image.classes.size), default=-1)
    return truth, found, num_classes


# ---------------------------------------------------------------------------------------------
# COCO


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise ImportError(f"coco_map needs pycocotools: {_INSTALL_HINT} ({err})") from err
    return COCO, COCOeval


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _coco_annotations(images: Sequence[_Image], *, detections: bool) -> list[dict[str, Any]]:
    """COCO annotation dicts; image, category and annotation ids all start at 1 (COCOeval reads id 0 as
    "no match")."""
    annotations: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        xywh = _xywh(image.boxes)
        for row in range(len(xywh)):
            box = xywh[row].tolist()
            annotation = {
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": int(image.classes[row]) + 1,
                "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
            }
            if detections:
                annotation["score"] = float(image.scores[row])
            annotations.append(annotation)
    return annotations


def _nan_if_absent(value: float) -> float:
    """pycocotools' -1 (nothing to average) as NaN."""
    return math.nan if value < 0 else float(value)


def coco_map(
    ground_truth: Sequence[Mapping],
    detections: Sequence[Mapping],
    *,
    num_classes: int | None = None,
    max_detections: int = 100,
) -> dict[str, float | list[float]]:
    """COCO box AP and AR, computed by pycocotools' ``COCOeval`` (``iouType="bbox"``).

    Args:
        ground_truth: one dict per image, ``"boxes"`` float ``(K, 4)`` x1 y1 x2 y2 pixels and
            ``"classes"`` ``(K,)`` 0-based ids. Every box counts (there is no crowd / difficult
            notion here; a ``"difficult"`` key is ignored). A box's area for the small / medium /
            large ranges (< 32², < 96², the rest, in pixels²) is its width x height.
        detections: one dict per image, same order: ``"boxes"`` ``(D, 4)``, ``"scores"`` ``(D,)``,
            ``"classes"`` ``(D,)``.
        num_classes: if given, class ids must be ``< num_classes`` and the per-class lists have
            this length; otherwise their length is the largest id seen + 1.
        max_detections: COCO's ``maxDets`` (default 100, COCO's): the detections kept per image
            *and class* (pycocotools cuts per image-class pair; torchvision's and the TF Object
            Detection API's post-processing keep at most 100 per image before). ``COCOeval``'s
            ``maxDets`` becomes ``[1, min(10, max_detections), max_detections]``; "mar_10" is
            the recall at the middle one, "mar_100" and every AP at ``max_detections``.

    Returns:
        ``COCO_STATS`` by name, plain floats: "map" (AP@[.5:.95]), "map50", "map75",
        "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100", "mar_small",
        "mar_medium", "mar_large"; NaN where pycocotools reports -1 (no ground truth in that
        range). Plus "per_class_map" and "per_class_map50": lists indexed by class id, AP@[.5:.95]
        and AP@.5 (area "all", ``max_detections``), NaN for classes without ground truth.
        Classes without ground truth are left out of every mean (their detections are not scored).

    IoU is pycocotools' (no +1 on widths); a detection matches at threshold t when IoU >= t.
    Raises ``InputError`` for malformed input (see the module docstring), ``ImportError`` without
    pycocotools.
    """
    max_detections = check_positive_int("max_detections", max_detections)
    truth, found, length = _inputs(ground_truth, detections, num_classes)
    COCO, COCOeval = _pycocotools()
    present = sorted({int(c) for image in truth for c in image.classes})
    categories = [{"id": c + 1, "name": str(c)} for c in present]
    image_list = [{"id": i + 1} for i in range(len(truth))]

    def make(annotations: list[dict[str, Any]]):
        coco = COCO()
        coco.dataset = {"images": image_list, "categories": categories, "annotations": annotations}
        coco.createIndex()
        return coco

    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(make(_coco_annotations(truth, detections=False)),
                              make(_coco_annotations(found, detections=True)), iouType="bbox")
        evaluation.params.maxDets = [1, min(10, max_detections), max_detections]
        evaluation.params.imgIds = [image["id"] for image in image_list]
        evaluation.params.catIds = [category["id"] for category in categories]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    result: dict[str, float | list[float]] = {
        name: _nan_if_absent(value) for name, value in zip(COCO_STATS, evaluation.stats.tolist(), strict=True)
    }
    # precision: (IoU thresholds, recall thresholds, classes, area ranges, maxDets); -1 where absent.
    precision = evaluation.eval["precision"][:, :, :, 0, -1] if present else np.zeros((10, 101, 0))
    per_class, per_class50 = [math.nan] * length, [math.nan] * length
    for k, class_id in enumerate(present):
        values = precision[:, :, k]
        if np.all(values > -1):
            per_class[class_id] = float(np.mean(values))
            per_class50[class_id] = float(np.mean(values[0]))
    result["per_class_map"] = per_class
    result["per_class_map50"] = per_class50
    return result


# ---------------------------------------------------------------------------------------------
# PASCAL VOC2007


def _pairwise_iou(a: np.ndarray, b: np.ndarray, inclusive: bool) -> np.ndarray:
    """IoU ``(len(a), len(b))`` of x1 y1 x2 y2 boxes; ``inclusive`` adds 1 to every width and
    height (integer pixel boxes whose x2, y2 are the last pixel inside); 0 where the union is 0."""
    extra = 1.0 if inclusive else 0.0
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    sides = np.clip(high - low + extra, 0.0, None)  # (len(a), len(b), 2): overlap width, height
    overlap = sides[..., 0] * sides[..., 1]
    area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
    area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)
    union = area_a[:, None] + area_b[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def _voc07_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """The mean over t in ``np.arange(0, 1.1, 0.1)`` of the highest precision at recall >= t (0 if none).

    The thresholds are NumPy's ``arange`` values, as in both references: 0.3, 0.6 and 0.7 come out
    as 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001, so a recall of exactly 0.3
    does not reach the fourth point.
    """
    total = 0.0
    for threshold in np.arange(0.0, 1.1, 0.1):
        reached = recall >= threshold
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / 11.0


def voc07_map(
    ground_truth: Sequence[Mapping],
    detections: Sequence[Mapping],
    *,
    iou_threshold: float = 0.5,
    use_difficult: bool = False,
    pixel_inclusive: bool = False,
    num_classes: int | None = None,
) -> dict[str, float | list[float]]:
    """PASCAL VOC2007 mean AP: 11-point interpolated AP per class, averaged over the classes with ground truth.

    Per class, all images' detections are ranked by score (a stable sort: ties keep image order,
    then input order). Each detection takes the ground-truth box of its image and class with the
    highest IoU (the first of equal ones): a true positive if that IoU is *above*
    ``iou_threshold`` (strictly, as in both references) and the box is not taken yet, a false
    positive if it is taken (the second detection of one object; there is no fall-back to the
    next box) or the IoU is not above the threshold or the image has no box of that class. If the
    best box is "difficult" the detection is neither (it is dropped). Difficult boxes do not count
    as positives; ``use_difficult=True`` treats them as ordinary boxes (py-faster-rcnn's
    ``use_difficult``). Precision and recall along the ranking give the 11-point AP
    (``_voc07_ap``: VOC2007's ``np.arange(0, 1.1, 0.1)`` thresholds, quirks included).

    Box convention: ``pixel_inclusive=False`` (the default) measures widths as ``x2 - x1``, as
    qfgaohao/pytorch-ssd's ``eval_ssd.py`` does (its ``box_utils.iou_of``; it also adds 1e-5 to
    the union, which moves an IoU by about 1e-5 / area and is left out here). ``pixel_inclusive=True``
    adds 1 to every width and height (``x2 - x1 + 1``), as py-faster-rcnn's ``voc_eval`` does for
    VOC's integer boxes whose x2, y2 are the last pixel inside.

    Args:
        ground_truth: one dict per image: ``"boxes"`` float ``(K, 4)`` x1 y1 x2 y2 pixels,
            ``"classes"`` ``(K,)`` 0-based ids, optionally ``"difficult"`` ``(K,)`` bool.
        detections: one dict per image, same order: ``"boxes"`` ``(D, 4)``, ``"scores"`` ``(D,)``,
            ``"classes"`` ``(D,)``.
        iou_threshold: a number in [0, 1); a match needs IoU > it.
        use_difficult: count difficult boxes as ordinary ground truth.
        pixel_inclusive: the +1 width convention (see above).
        num_classes: if given, class ids must be ``< num_classes`` and "per_class" has this length;
            otherwise its length is the largest id seen + 1.

    Returns:
        ``{"map": float, "per_class": [AP or NaN per class id], "iou_threshold": float}``: "map"
        is the mean over classes with at least one counted ground-truth box (NaN if none has);
        their AP is 0 without detections. Classes without counted ground truth get NaN, whatever
        their detections.
    """
    check_rate("iou_threshold", iou_threshold)
    check_bool("use_difficult", use_difficult)
    check_bool("pixel_inclusive", pixel_inclusive)
    truth, found, length = _inputs(ground_truth, detections, num_classes)
    per_class = [math.nan] * length
    positives = np.zeros(length, np.int64)  # counted ground-truth boxes per class
    detected: list[list[int]] = [[] for _ in range(length)]  # per class, the images with its detections
    for index, (gt, dt) in enumerate(zip(truth, found, strict=True)):
        counted = gt.classes if use_difficult else gt.classes[~gt.difficult]
        positives += np.bincount(counted, minlength=length)
        for class_id in np.unique(dt.classes).tolist():
            detected[class_id].append(index)
    for class_id in np.flatnonzero(positives).tolist():
        scores: list[np.ndarray] = []
        outcomes: list[np.ndarray] = []  # per ranked detection: 1 true positive, 0 false positive, -1 dropped
        for index in detected[class_id]:
            gt, dt = truth[index], found[index]
            gt_rows = gt.classes == class_id
            gt_boxes = gt.boxes[gt_rows]
            difficult = np.zeros(len(gt_boxes), bool) if use_difficult else gt.difficult[gt_rows]
            dt_rows = np.flatnonzero(dt.classes == class_id)
            dt_rows = dt_rows[np.argsort(-dt.scores[dt_rows], kind="stable")]
            outcome = np.zeros(dt_rows.size, np.int8)
            if len(gt_boxes):
                iou = _pairwise_iou(dt.boxes[dt_rows], gt_boxes, pixel_inclusive)
                best = np.argmax(iou, axis=1)
                taken = np.zeros(len(gt_boxes), bool)
                for d, g in enumerate(best.tolist()):
                    if iou[d, g] <= iou_threshold:
                        continue
                    if difficult[g]:
                        outcome[d] = -1
                    elif not taken[g]:
                        outcome[d], taken[g] = 1, True
            scores.append(dt.scores[dt_rows])
            outcomes.append(outcome)
        if not scores:
            per_class[class_id] = 0.0
            continue
        all_scores, all_outcomes = np.concatenate(scores), np.concatenate(outcomes)
        ranked = all_outcomes[np.argsort(-all_scores, kind="stable")]
        ranked = ranked[ranked >= 0]
        true_positives = np.cumsum(ranked == 1)
        seen = np.arange(1, len(ranked) + 1)
        per_class[class_id] = _voc07_ap(true_positives / seen, true_positives / positives[class_id])
    counted = [ap for ap in per_class if not math.isnan(ap)]
    return {
        "map": float(np.mean(counted)) if counted else math.nan,
        "per_class": per_class,
        "iou_threshold": float(iou_threshold),
    }


# ---------------------------------------------------------------------------------------------
# padded batches -> per-image dicts


def _padded(argument: str, value, ndim: int, tail: tuple[int, ...], what: str) -> np.ndarray:
    array = _as_array(argument, value)
    if array.ndim != ndim or array.shape[ndim - len(tail):] != tail:
        raise InputError(f"`{argument}` must have shape {what}; received shape {array.shape}")
    _numeric(argument, array, what)
    return array


def _counts(counts, batch: int, rows: int) -> np.ndarray:
    array = _padded("counts", counts, 1, (), "(B,)")
    if array.shape[0] != batch:
        raise InputError(f"`counts` must have shape ({batch},), one count per image; received shape {array.shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise InputError(f"`counts` must hold whole numbers; received {array.tolist()}")
    if array.size and (array.min() < 0 or array.max() > rows):
        raise InputError(f"`counts` must hold numbers in [0, {rows}] (rows per image); received {array.tolist()}")
    return array.astype(np.int64)


def _same_rows(argument: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise InputError(f"`{argument}` must have shape {shape}, like `boxes` without its last axis; "
                         f"received shape {array.shape}")


def detections_from_outputs(boxes, scores, classes, counts) -> list[dict[str, np.ndarray]]:
    """Per-image detection dicts from a detector's batched, padded post-processed outputs.

    Args:
        boxes: ``(B, D, 4)`` x1 y1 x2 y2 pixels; scores: ``(B, D)``; classes: ``(B, D)`` 0-based
            ids (ints or whole floats); counts: ``(B,)`` valid rows per image, in [0, D]. Rows past
            ``counts[i]`` (padding) are not read.

    Returns:
        ``B`` dicts ``{"boxes": float64 (n, 4), "scores": float64 (n,), "classes": int64 (n,)}``
        of the first ``n = counts[i]`` rows, checked as ``coco_map`` checks detections.
    """
    boxes = _padded("boxes", boxes, 3, (4,), "(B, D, 4)")
    scores = _padded("scores", scores, 2, (), "(B, D)")
    classes = _padded("classes", classes, 2, (), "(B, D)")
    _same_rows("scores", scores, boxes.shape[:2])
    _same_rows("classes", classes, boxes.shape[:2])
    counts = _counts(counts, boxes.shape[0], boxes.shape[1])
    result = []
    for i, n in enumerate(counts.tolist()):
        result.append({
            "boxes": _boxes(f"boxes[{i}, :{n}]", boxes[i, :n]),
            "scores": _scores(f"scores[{i}, :{n}]", scores[i, :n], n),
            "classes": _classes(f"classes[{i}, :{n}]", classes[i, :n], n, None),
        })
    return result


def ground_truth_from_arrays(boxes, classes, counts, difficult=None) -> list[dict[str, np.ndarray]]:
    """Per-image ground-truth dicts from fixed-size arrays (``DigitScenes``' and ``DetectionArrays``' fields).

    Args:
        boxes: ``(N, M, 4)`` x1 y1 x2 y2 pixels; classes: ``(N, M)`` 0-based ids; counts: ``(N,)``
            boxes per image, in [0, M]; difficult: optional ``(N, M)`` bool. Rows past
            ``counts[i]`` (padding, e.g. class -1) are not read.

    Returns:
        ``N`` dicts ``{"boxes": float64 (n, 4), "classes": int64 (n,)}`` (plus ``"difficult"``:
        bool ``(n,)`` when given) of the first ``n = counts[i]`` rows.
    """
    boxes = _padded("boxes", boxes, 3, (4,), "(N, M, 4)")
    classes = _padded("classes", classes, 2, (), "(N, M)")
    _same_rows("classes", classes, boxes.shape[:2])
    if difficult is not None:
        difficult = _as_array("difficult", difficult)
        _same_rows("difficult", difficult, boxes.shape[:2])
    counts = _counts(counts, boxes.shape[0], boxes.shape[1])
    result = []
    for i, n in enumerate(counts.tolist()):
        image = {
            "boxes": _boxes(f"boxes[{i}, :{n}]", boxes[i, :n]),
            "classes": _classes(f"classes[{i}, :{n}]", classes[i, :n], n, None),
        }
        if difficult is not None:
            image["difficult"] = _difficult(f"difficult[{i}, :{n}]", difficult[i, :n], n)
        result.append(image)
    return result
