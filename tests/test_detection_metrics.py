"""Detection metrics (``keras_lightnets.detection.metrics``): COCO mAP via pycocotools, VOC2007 11-point mAP.

* Hand-computed cases, each with its arithmetic in the test: perfect detections, a false
  positive ranked above the true positive, an IoU of 0.6 (counts at .5, not at .75), a duplicate
  detection, classes without ground truth, difficult boxes, VOC's strict IoU threshold, its
  ``np.arange`` thresholds, the +1 pixel convention, empty detections, ``max_detections``.
* ``coco_map``'s AP@.5 against a short NumPy re-implementation of COCO's 101-point AP on random
  scenes (several seeds); ``voc07_map`` against a loop written the py-faster-rcnn way.
* Padded batches to per-image dicts; every bad input is an ``InputError`` naming the argument;
  missing pycocotools is an ``ImportError`` naming the extra; the module imports only NumPy.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from keras_lightnets.detection.metrics import (
    COCO_STATS,
    coco_map,
    detections_from_outputs,
    ground_truth_from_arrays,
    voc07_map,
)
from keras_lightnets.errors import InputError

# pycocotools divides by tp + fp + np.spacing(1), so a precision of 1 reads 1 - 2e-16.
approx = pytest.approx


def gt(boxes, classes, difficult=None):
    image = {"boxes": np.array(boxes, float).reshape(-1, 4), "classes": np.array(classes, int)}
    if difficult is not None:
        image["difficult"] = np.array(difficult, bool)
    return image


def dt(boxes, scores, classes):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float),
            "classes": np.array(classes, int)}


NO_DETECTIONS = dt([], [], [])
A, B, FAR = [0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 450, 450]


# ---------------------------------------------------------------------------------------------
# hand-computed cases


def test_perfect_detections_give_one_everywhere():
    # small (< 32²), medium and large boxes in three classes over two images
    small, medium, large = [10, 10, 30, 30], [50, 50, 110, 110], [0, 150, 200, 300]
    truth = [gt([small, medium, large], [0, 1, 2]), gt([medium, small], [2, 0])]
    found = [dt([small, medium, large], [0.9, 0.8, 0.7], [0, 1, 2]), dt([medium, small], [0.6, 0.5], [2, 0])]
    coco = coco_map(truth, found)
    assert set(coco) == {*COCO_STATS, "per_class_map", "per_class_map50"}
    for name in COCO_STATS:
        assert coco[name] == approx(1.0, abs=1e-12), name
        assert type(coco[name]) is float
    assert coco["per_class_map"] == approx([1.0] * 3) and coco["per_class_map50"] == approx([1.0] * 3)
    for inclusive in (False, True):
        voc = voc07_map(truth, found, pixel_inclusive=inclusive)
        assert voc == {"map": 1.0, "per_class": [1.0, 1.0, 1.0], "iou_threshold": 0.5}


def test_false_positive_ranked_above_the_true_positive():
    # one class, two objects in image 0; the top detection (0.9) is in image 1, which has no
    # object (a false positive), the second (0.8) finds A, nothing finds B.
    truth = [gt([A, B], [0, 0]), gt([], [])]
    found = [dt([A], [0.8], [0]), dt([FAR], [0.9], [0])]
    # ranked: FP, TP -> precision [0, 1/2], recall [0, 1/2]
    # VOC07: thresholds 0, .1, .2, .3, .4, .5 reach recall 1/2 (best precision 1/2), .6 ... 1 do not
    assert voc07_map(truth, found)["map"] == approx(6 * 0.5 / 11, rel=1e-15)  # 3/11
    # COCO: precision envelope [1/2, 1/2]; the 51 recall thresholds 0, .01, ..., .50 give 1/2, the other 50 give 0
    coco = coco_map(truth, found)
    assert coco["map50"] == approx(51 * 0.5 / 101, rel=1e-12)
    # recall: 1 of 2 objects, also with one detection per image (image 0's only one is the TP)
    assert coco["mar_100"] == approx(0.5) and coco["mar_1"] == approx(0.5)
    # the same detection ranked first instead: precision [1, 1/2], recall [1/2, 1/2]
    found_first = [dt([A], [0.95], [0]), dt([FAR], [0.9], [0])]
    assert voc07_map(truth, found_first)["map"] == approx(6 / 11, rel=1e-15)
    assert coco_map(truth, found_first)["map50"] == approx(51 / 101, rel=1e-12)


def test_iou_06_counts_at_50_but_not_at_75():
    truth = [gt([A], [0])]
    found = [dt([[0, 0, 100, 60]], [0.9], [0])]  # IoU 6000 / 10000 = 0.6
    coco = coco_map(truth, found)
    assert coco["map50"] == approx(1.0) and coco["map75"] == 0.0
    # COCO matches at IoU >= t: of .50, .55, ..., .95 the first three (.5, .55, .6) count
    assert coco["map"] == approx(0.3) and coco["mar_100"] == approx(0.3)
    assert coco["per_class_map"] == approx([0.3]) and coco["per_class_map50"] == approx([1.0])
    assert voc07_map(truth, found)["map"] == 1.0
    assert voc07_map(truth, found, iou_threshold=0.75)["map"] == 0.0
    # VOC needs IoU > t: 0.6 at threshold 0.6 is a miss
    assert voc07_map(truth, found, iou_threshold=0.6)["map"] == 0.0
    assert voc07_map(truth, found, iou_threshold=0.59)["map"] == 1.0


def test_iou_exactly_at_threshold_voc_strict_coco_not():
    truth = [gt([A], [0])]
    found = [dt([[0, 0, 100, 50]], [0.9], [0])]  # IoU exactly 0.5
    assert voc07_map(truth, found)["map"] == 0.0
    assert coco_map(truth, found)["map50"] == approx(1.0)


def test_duplicate_detection_is_a_false_positive():
    truth = [gt([A, B], [0, 0])]
    found = [dt([A, [0, 0, 100, 99], B], [0.9, 0.8, 0.7], [0, 0, 0])]
    # ranked: TP (A), FP (A again), TP (B): precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]
    # VOC07: t = 0 ... .5 -> 1 (6 points), t = .6 ... 1 -> 2/3 (5 points)
    assert voc07_map(truth, found)["map"] == approx((6 + 5 * 2 / 3) / 11, rel=1e-15)
    # COCO: envelope [1, 2/3, 2/3]; recall thresholds 0 ... .50 -> 1 (51), .51 ... 1 -> 2/3 (50)
    assert coco_map(truth, found)["map50"] == approx((51 + 50 * 2 / 3) / 101, rel=1e-12)
    # without the duplicate both are perfect
    single = [dt([A, B], [0.9, 0.7], [0, 0])]
    assert voc07_map(truth, single)["map"] == 1.0 and coco_map(truth, single)["map50"] == approx(1.0)


def test_voc_best_box_taken_is_a_false_positive_coco_falls_back():
    # two overlapping objects; both detections overlap the first object most. VOC takes each
    # detection's best box (taken -> FP), COCO the best box still free.
    first, second = [0, 0, 100, 100], [0, 10, 100, 110]
    truth = [gt([first, second], [0, 0])]
    found = [dt([[0, 0, 100, 100], [0, 2, 100, 102]], [0.9, 0.8], [0, 0])]
    # det 2: IoU with first 98/102 = 0.96, with second 92/108 = 0.85
    # VOC: TP, FP -> precision [1, 1/2], recall [1/2, 1/2] -> 6/11
    assert voc07_map(truth, found)["map"] == approx(6 / 11, rel=1e-15)
    # COCO at .5: TP, TP -> 1
    assert coco_map(truth, found)["map50"] == approx(1.0)


def test_classes_without_ground_truth_are_ignored():
    truth = [gt([A], [0]), gt([B], [0])]
    found = [dt([A, B], [0.9, 0.95], [0, 1]), dt([B, FAR], [0.8, 0.99], [0, 2])]
    coco = coco_map(truth, found)
    assert coco["map"] == approx(1.0) and coco["map50"] == approx(1.0)
    assert coco["per_class_map50"][0] == approx(1.0) and len(coco["per_class_map50"]) == 3
    assert all(math.isnan(v) for v in coco["per_class_map50"][1:] + coco["per_class_map"][1:])
    voc = voc07_map(truth, found)
    assert voc["map"] == 1.0 and voc["per_class"][0] == 1.0 and len(voc["per_class"]) == 3
    assert all(math.isnan(v) for v in voc["per_class"][1:])
    # num_classes sets the list length
    assert len(voc07_map(truth, found, num_classes=5)["per_class"]) == 5
    assert len(coco_map(truth, found, num_classes=5)["per_class_map50"]) == 5


def test_empty_detections_give_zero_for_classes_with_ground_truth():
    truth = [gt([A, B], [0, 1]), gt([], [])]
    voc = voc07_map(truth, [NO_DETECTIONS, NO_DETECTIONS], num_classes=3)
    assert voc["map"] == 0.0 and voc["per_class"][:2] == [0.0, 0.0] and math.isnan(voc["per_class"][2])
    coco = coco_map(truth, [NO_DETECTIONS, NO_DETECTIONS], num_classes=3)
    assert coco["map"] == 0.0 and coco["map50"] == 0.0 and coco["mar_100"] == 0.0
    assert coco["per_class_map50"][:2] == [0.0, 0.0] and math.isnan(coco["per_class_map50"][2])
    # no ground truth at all: nothing to average -> NaN (pycocotools' -1)
    empty = [gt([], [])]
    assert all(math.isnan(v) for k, v in coco_map(empty, [dt([A], [0.5], [0])]).items() if k in COCO_STATS)
    assert math.isnan(voc07_map(empty, [dt([A], [0.5], [0])])["map"])
    # a range without boxes is NaN too (no medium box here)
    assert math.isnan(coco_map(truth, [NO_DETECTIONS, NO_DETECTIONS])["map_medium"])


def test_difficult_boxes_in_voc07():
    # class 0: A ordinary, B difficult; class 1: only a difficult box
    truth = [gt([A, B, FAR], [0, 0, 1], difficult=[False, True, True])]
    found = [dt([B, [600, 600, 700, 700], A, FAR], [0.9, 0.85, 0.8, 0.7], [0, 0, 0, 1])]
    # use_difficult=False: the detection on B is dropped; FP (.85), TP (.8): precision [0, 1/2],
    # recall [0, 1] -> 1/2 at every threshold. Class 1 has no counted box: NaN, left out.
    voc = voc07_map(truth, found)
    assert voc["per_class"][0] == approx(0.5, rel=1e-15) and math.isnan(voc["per_class"][1])
    assert voc["map"] == approx(0.5, rel=1e-15)
    # use_difficult=True: TP (B), FP, TP (A): precision [1, 1/2, 2/3], recall [1/2, 1/2, 1];
    # class 1: a single TP -> 1
    voc = voc07_map(truth, found, use_difficult=True)
    assert voc["per_class"] == approx([(6 + 5 * 2 / 3) / 11, 1.0], rel=1e-15)
    assert voc["map"] == approx(((6 + 5 * 2 / 3) / 11 + 1) / 2, rel=1e-15)
    # a second detection on a difficult box is dropped too, not a duplicate FP
    twice = [dt([B, B, A], [0.9, 0.85, 0.8], [0, 0, 0])]
    assert voc07_map(truth, twice)["per_class"][0] == 1.0
    # equal IoU: the first box wins, as np.argmax / torch.max pick; here the difficult copy, so dropped
    same = [gt([A, A], [0, 0], difficult=[True, False])]
    assert voc07_map(same, [dt([A], [0.9], [0])])["map"] == 0.0
    swapped = [gt([A, A], [0, 0], difficult=[False, True])]
    assert voc07_map(swapped, [dt([A], [0.9], [0])])["map"] == 1.0
    # COCO has no difficult notion: B counts as an ordinary object and its second detection is a
    # duplicate: TP, FP, TP as in the duplicate test
    assert coco_map(truth, twice)["per_class_map50"][0] == approx((51 + 50 * 2 / 3) / 101, rel=1e-12)
    assert coco_map(truth, [dt([A], [0.8], [0])])["per_class_map50"][0] == approx(51 / 101, rel=1e-12)


def test_voc07_thresholds_are_numpy_arange_values():
    # ten objects, three found first: recall 0.3 with precision 1. np.arange(0, 1.1, 0.1)[3] is
    # 0.30000000000000004 > 0.3, so only t = 0, .1, .2 reach it: 3/11, not 4/11 (as in both references).
    boxes = [[100 * i, 0, 100 * i + 50, 50] for i in range(10)]
    truth = [gt(boxes, [0] * 10)]
    found = [dt(boxes[:3], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert voc07_map(truth, found)["map"] == approx(3 / 11, rel=1e-15)
    # recall 0.5 reaches t = 0.5 (exactly 0.5 in arange): 6/11
    found = [dt(boxes[:5], [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5)]
    assert voc07_map(truth, found)["map"] == approx(6 / 11, rel=1e-15)


def test_pixel_inclusive_widths():
    truth = [gt([[0, 0, 9, 9]], [0])]
    found = [dt([[0, 0, 9, 4.5]], [0.9], [0])]
    # x2 - x1: 40.5 / 81 = 0.5, not above 0.5; x2 - x1 + 1: 55 / 100 = 0.55
    assert voc07_map(truth, found)["map"] == 0.0
    assert voc07_map(truth, found, pixel_inclusive=True)["map"] == 1.0
    # zero-area boxes: IoU 0 without the +1, a one-pixel box with it
    point = [gt([[5, 5, 5, 5]], [0])], [dt([[5, 5, 5, 5]], [0.9], [0])]
    assert voc07_map(*point)["map"] == 0.0 and voc07_map(*point, pixel_inclusive=True)["map"] == 1.0


def test_max_detections_per_image_and_class():
    boxes = [[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100]]
    truth = [gt(boxes, [0, 0, 0])]
    found = [dt(boxes, [0.9, 0.8, 0.7], [0, 0, 0])]
    coco = coco_map(truth, found)
    assert coco["mar_1"] == approx(1 / 3) and coco["mar_10"] == approx(1.0) and coco["map50"] == approx(1.0)
    # two kept: recall 2/3 at precision 1 -> the 67 recall thresholds 0 ... .66 give 1
    capped = coco_map(truth, found, max_detections=2)
    assert capped["mar_100"] == approx(2 / 3) and capped["mar_10"] == approx(2 / 3)
    assert capped["map50"] == approx(67 / 101, rel=1e-12)


def test_ties_and_order_of_images():
    # equal scores: stable ranking, image order first. FP in image 0 and TP in image 1 at the same
    # score: FP ranks first -> precision [0, 1/2] recall [0, 1] -> 1/2; swapped images -> 1.
    truth = [gt([], []), gt([A], [0])]
    found = [dt([B], [0.5], [0]), dt([A], [0.5], [0])]
    assert voc07_map(truth, found)["map"] == approx(0.5, rel=1e-15)
    assert voc07_map(truth[::-1], found[::-1])["map"] == 1.0


def test_coco_map_prints_nothing(capsys):
    coco_map([gt([A], [0])], [dt([A], [0.9], [0])])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------------------------------------
# random scenes against independent implementations


def _iou(box: np.ndarray, boxes: np.ndarray, extra: float = 0.0) -> np.ndarray:
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + extra)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + extra)
    inter = w * h
    area = (box[2] - box[0] + extra) * (box[3] - box[1] + extra)
    areas = (boxes[:, 2] - boxes[:, 0] + extra) * (boxes[:, 3] - boxes[:, 1] + extra)
    return inter / (area + areas - inter)


def coco_ap50_reference(truth, found, num_classes):
    """COCO's AP at IoU .5 (area "all", <= 100 detections per image and class), written from its definition:
    per image, detections by score take the free box of highest IoU >= .5 (the later of equal ones);
    over all images, precision made non-increasing from the right, read at the first rank whose
    recall reaches each of 101 recall levels (0 beyond the last recall)."""
    levels = np.linspace(0.0, 1.0, 101)
    per_class = []
    for c in range(num_classes):
        scores, hits, positives = [], [], 0
        for t, f in zip(truth, found, strict=True):
            g = t["boxes"][t["classes"] == c]
            positives += len(g)
            rows = np.flatnonzero(f["classes"] == c)
            rows = rows[np.argsort(-f["scores"][rows], kind="mergesort")][:100]
            free = np.ones(len(g), bool)
            for r in rows:
                scores.append(f["scores"][r])
                ious = _iou(f["boxes"][r], g) if len(g) else np.zeros(0)
                candidates = np.flatnonzero(free & (ious >= 0.5))
                if candidates.size:
                    best = candidates[ious[candidates] == ious[candidates].max()][-1]
                    free[best] = False
                hits.append(bool(candidates.size))
        if positives == 0:
            per_class.append(math.nan)
            continue
        order = np.argsort(-np.array(scores), kind="mergesort")
        hit = np.array(hits, bool)[order]
        tp, fp = np.cumsum(hit), np.cumsum(~hit)
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        ap = 0.0
        for level in levels:
            reached = np.flatnonzero(recall >= level)
            ap += envelope[reached[0]] if reached.size else 0.0
        per_class.append(ap / len(levels))
    return per_class


def voc07_reference(truth, found, num_classes, threshold=0.5, extra=0.0):
    """VOC2007 AP the way py-faster-rcnn's voc_eval loops: all detections of a class ranked at once,
    each against its image's boxes; dropped (difficult) detections stay in the arrays as neither."""
    per_class = []
    for c in range(num_classes):
        records = [(i, f["scores"][r], f["boxes"][r])
                   for i, f in enumerate(found) for r in np.flatnonzero(f["classes"] == c)]
        boxes = [t["boxes"][t["classes"] == c] for t in truth]
        difficult = [t["difficult"][t["classes"] == c] for t in truth]
        positives = sum(int((~d).sum()) for d in difficult)
        if positives == 0:
            per_class.append(math.nan)
            continue
        order = np.argsort(-np.array([s for _, s, _ in records]), kind="stable")
        taken = [np.zeros(len(b), bool) for b in boxes]
        tp, fp = np.zeros(len(records)), np.zeros(len(records))
        for rank, k in enumerate(order):
            i, _, box = records[k]
            ious = _iou(box, boxes[i], extra) if len(boxes[i]) else np.array([-np.inf])
            j = int(np.argmax(ious))
            if ious[j] > threshold:
                if not difficult[i][j]:
                    if taken[i][j]:
                        fp[rank] = 1
                    else:
                        tp[rank], taken[i][j] = 1, True
            else:
                fp[rank] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall, precision = tp / positives, tp / np.maximum(tp + fp, np.finfo(float).eps)
        ap = sum((precision[recall >= t].max() if (recall >= t).any() else 0.0) for t in np.arange(0.0, 1.1, 0.1))
        per_class.append(ap / 11)
    return per_class


def random_scenes(seed: int, images: int = 12, num_classes: int = 4):
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for _ in range(images):
        n = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(8, 150, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        classes = rng.integers(0, num_classes - 1, n)  # the last class never has ground truth
        truth.append({"boxes": boxes, "classes": classes, "difficult": rng.random(n) < 0.2})
        det_boxes, det_classes = [], []
        for box, cls, size in zip(boxes, classes, wh, strict=True):
            for _ in range(int(rng.choice([0, 1, 1, 2]))):  # missed, found, found twice
                det_boxes.append(box + rng.normal(0, 0.15, 4) * np.repeat(size, 2))
                det_classes.append(cls if rng.random() < 0.85 else rng.integers(0, num_classes))
        for _ in range(int(rng.integers(0, 4))):  # background detections
            corner = rng.uniform(0, 300, 2)
            det_boxes.append(np.concatenate([corner, corner + rng.uniform(8, 150, 2)]))
            det_classes.append(rng.integers(0, num_classes))
        det_boxes = np.array(det_boxes, float).reshape(-1, 4)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        found.append({"boxes": det_boxes, "scores": rng.random(len(det_boxes)),
                      "classes": np.array(det_classes, int)})
    return truth, found


@pytest.mark.parametrize("seed", range(5))
def test_coco_map50_equals_a_numpy_reimplementation(seed):
    truth, found = random_scenes(seed)
    expected = coco_ap50_reference(truth, found, 4)
    coco = coco_map(truth, found, num_classes=4)
    assert np.allclose(coco["per_class_map50"], expected, atol=1e-12, equal_nan=True)
    assert math.isnan(expected[3]) and not math.isnan(expected[0])
    assert coco["map50"] == approx(np.nanmean(expected), abs=1e-12)
    assert 0.05 < coco["map50"] < 0.95 and coco["map"] < coco["map50"]  # the scenes are neither trivial nor hopeless


@pytest.mark.parametrize("seed", range(5))
def test_voc07_equals_a_loop_over_ranked_detections(seed):
    truth, found = random_scenes(seed)
    for threshold, inclusive in ((0.5, False), (0.3, True), (0.7, False)):
        voc = voc07_map(truth, found, iou_threshold=threshold, pixel_inclusive=inclusive, num_classes=4)
        expected = voc07_reference(truth, found, 4, threshold, 1.0 if inclusive else 0.0)
        assert np.allclose(voc["per_class"], expected, rtol=1e-15, atol=0, equal_nan=True)
        assert voc["map"] == approx(np.nanmean(expected), rel=1e-15)
        assert voc["iou_threshold"] == threshold
    # use_difficult: the same loop with every box ordinary
    ordinary = [{**t, "difficult": np.zeros_like(t["difficult"])} for t in truth]
    assert np.allclose(voc07_map(truth, found, use_difficult=True, num_classes=4)["per_class"],
                       voc07_reference(ordinary, found, 4), rtol=1e-15, atol=0, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# padded batches


def test_detections_from_outputs_cuts_the_padding():
    boxes = np.zeros((3, 4, 4), np.float32)
    boxes[0, :2] = [[0, 0, 10, 10], [5, 5, 20, 30]]
    boxes[2, :4] = [[1, 2, 3, 4]] * 4
    boxes[1, :] = np.nan  # padding is never read
    scores = np.array([[0.9, 0.5, 0, 0], [0, 0, 0, 0], [0.4, 0.3, 0.2, 0.1]], np.float32)
    classes = np.array([[3, 0, -1, -1], [-1, -1, -1, -1], [1, 1, 2, 2]], np.float32)  # whole floats are fine
    out = detections_from_outputs(boxes, scores, classes, np.array([2, 0, 4], np.int32))
    assert [len(image["scores"]) for image in out] == [2, 0, 4]
    np.testing.assert_array_equal(out[0]["boxes"], [[0, 0, 10, 10], [5, 5, 20, 30]])
    np.testing.assert_array_equal(out[0]["classes"], [3, 0])
    assert out[0]["classes"].dtype == np.int64 and out[1]["boxes"].shape == (0, 4)
    np.testing.assert_allclose(out[2]["scores"], [0.4, 0.3, 0.2, 0.1], rtol=1e-7)
    # the dicts feed the metrics directly
    truth = ground_truth_from_arrays(boxes[:1, :2], np.array([[3, 0]]), [2])
    assert voc07_map(truth, out[:1])["map"] == 1.0


def test_ground_truth_from_arrays_like_digit_scenes():
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, :1] = [2, 3, 12, 20]
    boxes[1, :3] = [[0, 0, 5, 5], [6, 6, 9, 9], [1, 1, 2, 2]]
    classes = np.array([[7, -1, -1], [0, 1, 2]], np.int32)
    difficult = np.array([[0, 0, 0], [0, 1, 0]])
    out = ground_truth_from_arrays(boxes, classes, np.array([1, 3]), difficult=difficult)
    np.testing.assert_array_equal(out[0]["boxes"], [[2, 3, 12, 20]])
    np.testing.assert_array_equal(out[0]["classes"], [7])
    np.testing.assert_array_equal(out[1]["difficult"], [False, True, False])
    assert "difficult" not in ground_truth_from_arrays(boxes, classes, [1, 3])[0]


def _outputs(boxes=(1, 3, 4), scores=(1, 3), classes=(1, 3), counts=(1,), fill=0.0, where="classes"):
    arrays = {"boxes": np.zeros(boxes), "scores": np.zeros(scores), "classes": np.zeros(classes)}
    arrays[where] = np.full(arrays[where].shape, fill)
    return lambda: detections_from_outputs(arrays["boxes"], arrays["scores"], arrays["classes"], list(counts))


@pytest.mark.parametrize(("call", "argument"), [
    (_outputs(boxes=(2, 3, 5), counts=(1, 1)), "boxes"),
    (_outputs(scores=(1, 2)), "scores"),
    (_outputs(classes=(2, 3)), "classes"),
    (_outputs(counts=(4,)), "counts"),
    (_outputs(counts=(1, 1)), "counts"),
    (_outputs(counts=(-1,)), "counts"),
    (_outputs(counts=(0.5,)), "counts"),
    (_outputs(fill=-1), "classes[0, :1]"),
    (_outputs(fill=0.5), "classes[0, :1]"),
    (_outputs(fill=np.nan, where="scores"), "scores[0, :1]"),
    (_outputs(fill=np.inf, where="boxes"), "boxes[0, :1]"),
    (lambda: ground_truth_from_arrays(np.zeros((1, 2, 4)), np.zeros((1, 2)), [2], difficult=np.zeros((1, 3))),
     "difficult"),
    (lambda: ground_truth_from_arrays(np.zeros((1, 2, 4)), np.zeros((1, 2)), [2], difficult=[[0, 2]]),
     "difficult[0, :2]"),
])
def test_bad_padded_batches(call, argument):
    with pytest.raises(InputError, match=f"`{re.escape(argument)}`"):
        call()


# ---------------------------------------------------------------------------------------------
# bad input


GOOD_GT, GOOD_DT = gt([A], [0]), dt([A], [0.9], [0])


@pytest.mark.parametrize(("truth", "found", "argument"), [
    ([GOOD_GT], [GOOD_DT, GOOD_DT], "ground_truth"),  # length mismatch
    ([], [], "ground_truth"),
    (GOOD_GT, [GOOD_DT], "ground_truth"),  # a dict, not a list of dicts
    ([GOOD_GT], "boxes", "detections"),
    ([{"boxes": [A]}], [GOOD_DT], "ground_truth[0]"),  # no classes
    ([GOOD_GT], [{"boxes": [A], "classes": [0]}], "detections[0]"),  # no scores
    ([GOOD_GT], [None], "detections[0]"),
    ([{"boxes": [[0, 0, 1, 1], [0, 0, 1]], "classes": [0, 0]}], [GOOD_DT], "ground_truth[0]['boxes']"),  # ragged
    ([{"boxes": [[0, 0, 1]], "classes": [0]}], [GOOD_DT], "ground_truth[0]['boxes']"),  # (1, 3)
    ([{"boxes": [0, 0, 1, 1], "classes": [0]}], [GOOD_DT], "ground_truth[0]['boxes']"),  # (4,)
    ([{"boxes": [["a", "b", "c", "d"]], "classes": [0]}], [GOOD_DT], "ground_truth[0]['boxes']"),
    ([{"boxes": [[0, 0, np.inf, 1]], "classes": [0]}], [GOOD_DT], "ground_truth[0]['boxes']"),
    ([{"boxes": [[5, 0, 1, 1]], "classes": [0]}], [GOOD_DT], "ground_truth[0]['boxes']"),  # x2 < x1
    ([{"boxes": [A], "classes": [0, 1]}], [GOOD_DT], "ground_truth[0]['classes']"),  # length
    ([{"boxes": [A], "classes": [-1]}], [GOOD_DT], "ground_truth[0]['classes']"),
    ([{"boxes": [A], "classes": [1.5]}], [GOOD_DT], "ground_truth[0]['classes']"),
    ([{"boxes": [A], "classes": [np.nan]}], [GOOD_DT], "ground_truth[0]['classes']"),
    ([{"boxes": [A], "classes": [70000]}], [GOOD_DT], "ground_truth[0]['classes']"),  # needs num_classes
    ([{"boxes": [A], "classes": [0], "difficult": [2]}], [GOOD_DT], "ground_truth[0]['difficult']"),
    ([{"boxes": [A], "classes": [0], "difficult": [True, False]}], [GOOD_DT], "ground_truth[0]['difficult']"),
    ([GOOD_GT], [dt([A], [np.nan], [0])], "detections[0]['scores']"),
    ([GOOD_GT], [{"boxes": [A], "scores": [0.5, 0.4], "classes": [0]}], "detections[0]['scores']"),
    ([GOOD_GT], [{"boxes": [A], "scores": 0.5, "classes": [0]}], "detections[0]['scores']"),
    ([GOOD_GT], [dt([[0, 0, 1, np.nan]], [0.5], [0])], "detections[0]['boxes']"),
    ([GOOD_GT], [dt([A], [0.5], [3])], "detections[0]['classes']"),  # >= num_classes=2 (below)
])
@pytest.mark.parametrize("metric", [coco_map, voc07_map])
def test_bad_input_names_the_argument(metric, truth, found, argument):
    with pytest.raises(InputError, match=f"`{re.escape(argument)}`"):
        metric(truth, found, num_classes=2 if argument == "detections[0]['classes']" else None)


@pytest.mark.parametrize(("metric", "kwargs", "argument"), [
    (coco_map, {"num_classes": 0}, "num_classes"),
    (coco_map, {"num_classes": 1.5}, "num_classes"),
    (coco_map, {"max_detections": 0}, "max_detections"),
    (voc07_map, {"iou_threshold": 1.0}, "iou_threshold"),
    (voc07_map, {"iou_threshold": -0.1}, "iou_threshold"),
    (voc07_map, {"use_difficult": 1}, "use_difficult"),
    (voc07_map, {"pixel_inclusive": "yes"}, "pixel_inclusive"),
])
def test_bad_arguments(metric, kwargs, argument):
    with pytest.raises(InputError, match=f"`{argument}`"):
        metric([GOOD_GT], [GOOD_DT], **kwargs)


def test_missing_pycocotools_says_how_to_install(monkeypatch):
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'keras_lightnets\[detect\]'"):
        coco_map([GOOD_GT], [GOOD_DT])
    assert voc07_map([GOOD_GT], [GOOD_DT])["map"] == 1.0  # VOC needs no pycocotools


def test_the_module_imports_only_numpy():
    code = ("import sys, keras_lightnets.detection.metrics; "
            "print(sorted(m for m in ('pycocotools', 'tensorflow', 'keras', 'tf_keras', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
