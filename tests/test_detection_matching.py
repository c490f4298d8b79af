"""Anchor matching, training targets and detection losses (``detection.matching``, ``detection.losses``).

* Hand-made matching cases with known answers: the ssd rule's forced matches (below the threshold,
  two boxes on one anchor, ties), the retinanet rule's ignore band and low-quality matches, no boxes.
* ``encode_targets``: class conventions, padding and degenerate rows dropped, agreement with an
  independent NumPy matcher and the NumPy box coders on the three preset anchor sets.
* The TensorFlow encoders equal ``box_coding``'s NumPy ones.
* ``TargetEncoder`` inside ``tf.data`` with a varying number of boxes (padded and ragged), and in a
  ``tf.function`` with a dynamic box count.
* ``multibox_loss`` and ``focal_loss`` against NumPy reimplementations and hand-computed values.
* Every bad argument is an ``InputError`` naming the argument.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_lightnets.detection import (  # noqa: E402
    RETINANET_WEIGHTS,
    SSD_WEIGHTS,
    box_coding,
    losses,
    matching,
    preset_anchors,
)
from keras_lightnets.detection.matching import BoxCoder, MatchRule, TargetEncoder  # noqa: E402
from keras_lightnets.errors import InputError  # noqa: E402

TORCHVISION_SSD = BoxCoder.torchvision(SSD_WEIGHTS)
TORCHVISION_RETINANET = BoxCoder.torchvision(RETINANET_WEIGHTS)


def _match(anchors, boxes, rule):
    return matching.match_anchors(np.asarray(anchors, np.float32), np.asarray(boxes, np.float32).reshape(-1, 4),
                                  rule).numpy().tolist()


# ----------------------------------------------------------------------------- NumPy references


def np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """In float32 as torch computes it: exact float32 ties (which argmax resolves) stay ties."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter_w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    inter_h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = inter_w * inter_h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def np_match(anchors_xyxy: np.ndarray, boxes: np.ndarray, kind: str, high=0.5, low=0.4) -> np.ndarray:
    """torchvision's Matcher / SSDMatcher, written out step by step."""
    if len(boxes) == 0:
        return np.full(len(anchors_xyxy), -1)
    iou = np_iou(boxes, anchors_xyxy)  # (G, N)
    values, best = iou.max(axis=0), iou.argmax(axis=0)
    if kind == "ssd":
        matches = np.where(values >= high, best, -1)
        for gt, anchor in enumerate(iou.argmax(axis=1)):  # in box order: the later box wins
            matches[anchor] = gt
        return matches
    matches = best.copy()
    matches[values < low] = -1
    matches[(values >= low) & (values < high)] = -2
    _, anchors = np.nonzero(iou == iou.max(axis=1, keepdims=True))
    matches[anchors] = best[anchors]
    return matches


def np_targets(anchors, boxes, classes, kind, coder):
    keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, classes = boxes[keep], classes[keep]
    anchors_xyxy = anchors if coder.kind == "torchvision" else box_coding.cxcywh_to_xyxy(anchors)
    matches = np_match(anchors_xyxy, boxes, kind)
    foreground = matches >= 0
    class_targets = np.where(foreground, classes[np.maximum(matches, 0)] if len(classes) else 0,
                             0 if kind == "ssd" else matches)
    box_targets = np.zeros((len(anchors), 4), np.float32)
    matched = boxes[matches[foreground]]
    if coder.kind == "torchvision":
        box_targets[foreground] = box_coding.encode_torchvision(matched, anchors[foreground], coder.weights)
    else:
        box_targets[foreground] = box_coding.encode_ssd(box_coding.xyxy_to_cxcywh(matched), anchors[foreground])
    return class_targets, box_targets


def np_log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_smooth_l1(diff, beta):
    return np.where(np.abs(diff) < beta, 0.5 * diff**2 / beta, np.abs(diff) - 0.5 * beta)


def np_multibox(logits, deltas, targets, box_targets, ratio):
    """pytorch-ssd's MultiboxLoss, image by image, with the floor of 1 on the positives."""
    ce = -np.take_along_axis(np_log_softmax(logits.astype(np.float64)), np.maximum(targets, 0)[..., None], -1)[..., 0]
    classification, regression, positives = 0.0, 0.0, 0
    for b in range(len(logits)):
        pos = targets[b] > 0
        neg = np.flatnonzero(targets[b] == 0)
        order = neg[np.argsort(-ce[b, neg], kind="stable")]
        kept = order[: math.ceil(ratio * pos.sum())]
        classification += ce[b, pos].sum() + ce[b, kept].sum()
        regression += np_smooth_l1(deltas[b, pos] - box_targets[b, pos], 1.0).sum()
        positives += pos.sum()
    return classification / max(positives, 1), regression / max(positives, 1)


def np_focal(logits, deltas, targets, box_targets, alpha, gamma, box_loss, beta, normalize):
    """torchvision's sigmoid_focal_loss and RetinaNet head losses, image by image."""
    logits = logits.astype(np.float64)
    cls, reg, counts = [], [], []
    for b in range(len(logits)):
        pos = targets[b] >= 0
        valid = targets[b] != -2
        one_hot = np.zeros_like(logits[b])
        one_hot[np.flatnonzero(pos), targets[b, pos]] = 1.0
        x = logits[b][valid]
        t = one_hot[valid]
        p = 1 / (1 + np.exp(-x))
        bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        p_t = p * t + (1 - p) * (1 - t)
        loss = (alpha * t + (1 - alpha) * (1 - t)) * (1 - p_t) ** gamma * bce
        diff = deltas[b, pos] - box_targets[b, pos]
        cls.append(loss.sum())
        reg.append(np.abs(diff).sum() if box_loss == "l1" else np_smooth_l1(diff, beta).sum())
        counts.append(pos.sum())
    cls, reg, counts = np.array(cls), np.array(reg), np.array(counts, np.float64)
    if normalize == "image":
        return np.mean(cls / np.maximum(counts, 1)), np.mean(reg / np.maximum(counts, 1))
    return cls.sum() / max(counts.sum(), 1), reg.sum() / max(counts.sum(), 1)


def random_boxes(rng, count, size, min_side, max_side):
    x1y1 = rng.uniform(0, size - min_side, (count, 2))
    wh = rng.uniform(min_side, max_side, (count, 2))
    return np.concatenate([x1y1, np.minimum(x1y1 + wh, size)], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- IoU


def test_pairwise_iou_hand_values():
    a = [[0, 0, 10, 10], [0, 0, 0, 0]]
    b = [[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 5]]
    iou = matching.pairwise_iou(a, b).numpy()
    assert iou.shape == (2, 4) and iou.dtype == np.float32
    np.testing.assert_allclose(iou[0], [25 / 175, 1.0, 0.0, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(iou[1], [0, 0, 0, 0])  # an empty box: 0, not NaN


def test_pairwise_iou_of_no_boxes_is_empty():
    assert matching.pairwise_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


# ----------------------------------------------------------------------------- the ssd rule


def test_ssd_forces_a_box_onto_its_best_anchor_below_the_threshold():
    anchors = [[0, 0, 20, 20], [5, 0, 25, 20]]  # IoU with the box: 0.25 and 0.11
    assert _match(anchors, [[0, 0, 10, 10]], "ssd") == [0, -1]


def test_ssd_threshold_is_inclusive():
    anchors = [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 21], [100, 100, 110, 110]]  # IoU 1, 0.5, 0.476, 0
    assert _match(anchors, [[0, 0, 10, 10]], MatchRule.ssd(0.5)) == [0, 0, -1, -1]
    assert _match(anchors, [[0, 0, 10, 10]], MatchRule.ssd(0.45)) == [0, 0, 0, -1]


def test_ssd_two_boxes_on_one_anchor_the_later_box_wins():
    anchors = [[0, 0, 10, 10], [100, 100, 110, 110]]
    # Both boxes' best anchor is 0; box 0 overlaps it fully, yet box 1 takes it (box 0 is left unmatched).
    assert _match(anchors, [[0, 0, 10, 10], [0, 0, 10, 4]], "ssd") == [1, -1]
    assert _match(anchors, [[0, 0, 10, 4], [0, 0, 10, 10]], "ssd") == [1, -1]


def test_ssd_ties_force_the_first_anchor_only():
    anchors = [[0, 0, 30, 10], [-20, 0, 10, 10]]  # both IoU 1/3 with the box
    assert _match(anchors, [[0, 0, 10, 10]], "ssd") == [0, -1]


def test_ssd_an_anchor_above_the_threshold_takes_its_first_best_box():
    anchors = [[0, 0, 10, 10], [50, 50, 60, 60]]
    boxes = [[0, 0, 10, 9], [0, 0, 9, 10], [50, 50, 60, 60]]  # boxes 0 and 1 tie on anchor 0 (IoU 0.9)
    # Forced matching: box 0 and box 1 both pick anchor 0, the later (1) wins.
    assert _match(anchors, boxes, "ssd") == [1, 2]
    # The retinanet rule has no forcing: anchor 0 keeps its first best box.
    assert _match(anchors, boxes, "retinanet") == [0, 2]


# ----------------------------------------------------------------------------- the retinanet rule


def test_retinanet_ignore_band():
    box = [[0, 0, 10, 10]]
    # IoU: 1, 0.5, 0.4545, 0.4, 0.3846, 0.3333
    anchors = [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 22], [0, 0, 10, 25], [0, 0, 10, 26], [0, 0, 10, 30]]
    assert _match(anchors, box, "retinanet") == [0, 0, -2, -2, -1, -1]
    assert _match(anchors, box, MatchRule.retinanet(0.6, 0.45)) == [0, -2, -2, -1, -1, -1]


def test_retinanet_low_quality_matches_keep_every_tied_anchor():
    anchors = [[0, 0, 30, 10], [-20, 0, 10, 10], [0, 0, 40, 10]]  # IoU 1/3, 1/3, 1/4
    assert _match(anchors, [[0, 0, 10, 10]], "retinanet") == [0, 0, -1]


def test_retinanet_low_quality_match_takes_the_anchors_own_best_box():
    # Anchor 0 is box 0's best anchor (IoU 1/3), but its own best box is box 1 (IoU 0.43, ignore band).
    anchors = [[0, 0, 30, 10], [12, 0, 42, 10]]
    boxes = [[0, 0, 10, 10], [12, 0, 42, 10]]
    assert _match(anchors, boxes, "retinanet") == [1, 1]


def test_retinanet_a_box_overlapping_no_anchor_matches_every_anchor_as_torchvision_does():
    anchors = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert _match(anchors, [[100, 100, 110, 110]], "retinanet") == [0, 0]
    assert _match(anchors, [[100, 100, 110, 110]], "ssd") == [0, -1]


@pytest.mark.parametrize("rule", ["ssd", "retinanet"])
def test_no_boxes_means_all_background(rule):
    anchors = preset_anchors("ssdlite320_mobilenet_v3_large")
    assert set(_match(anchors, np.zeros((0, 4)), rule)) == {-1}


# ----------------------------------------------------------------------------- encode_targets


ANCHORS = np.array([[0, 0, 10, 10], [0, 0, 10, 22], [50, 50, 70, 70], [100, 100, 120, 120]], np.float32)


def test_class_target_conventions():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32)
    classes = np.array([3, 5])
    ssd_classes, ssd_boxes = matching.encode_targets(ANCHORS, boxes, classes, "ssd", TORCHVISION_SSD)
    assert ssd_classes.dtype == tf.int32 and ssd_boxes.dtype == tf.float32
    assert ssd_classes.numpy().tolist() == [3, 0, 5, 0]
    retina_classes, _ = matching.encode_targets(ANCHORS, boxes, classes, "retinanet", TORCHVISION_RETINANET)
    assert retina_classes.numpy().tolist() == [3, -2, 5, -1]
    # Box targets: exact boxes give zero deltas; non-foreground anchors hold zeros.
    np.testing.assert_array_equal(ssd_boxes.numpy(), np.zeros((4, 4)))


def test_box_targets_are_zero_off_the_foreground():
    boxes = np.array([[1, 2, 12, 13]], np.float32)
    classes_t, boxes_t = matching.encode_targets(ANCHORS, boxes, [1], "ssd", TORCHVISION_SSD)
    assert classes_t.numpy().tolist() == [1, 0, 0, 0]
    want = box_coding.encode_torchvision(boxes[0], ANCHORS[0], SSD_WEIGHTS)
    np.testing.assert_allclose(boxes_t.numpy()[0], want, rtol=1e-6)
    assert np.all(boxes_t.numpy()[1:] == 0) and np.all(want != 0)


@pytest.mark.parametrize("rule, background", [("ssd", 0), ("retinanet", -1)])
def test_no_boxes_gives_background_targets(rule, background):
    classes_t, boxes_t = matching.encode_targets(ANCHORS, np.zeros((0, 4)), np.zeros((0,), np.int32), rule,
                                                 TORCHVISION_SSD)
    assert classes_t.numpy().tolist() == [background] * 4
    np.testing.assert_array_equal(boxes_t.numpy(), np.zeros((4, 4)))


@pytest.mark.parametrize("rule", ["ssd", "retinanet"])
def test_padding_and_degenerate_rows_are_dropped(rule):
    boxes = np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32)
    classes = np.array([3, 5])
    want = matching.encode_targets(ANCHORS, boxes, classes, rule, TORCHVISION_SSD)
    extra_boxes = np.array([
        [100, 100, 120, 120],  # padding (class -1) on an anchor: it would match anchor 3
        [100, 100, 100, 120],  # zero width
        [120, 120, 100, 100],  # reversed corners
        [100, 100, 120, 100],  # zero height
        [np.nan, 100, 120, 120],  # NaN
    ], np.float32)
    padded_boxes = np.concatenate([boxes[:1], extra_boxes, boxes[1:], np.zeros((2, 4), np.float32)])
    padded_classes = np.array([3, -1, 7, 7, 7, 7, 5, -1, -1])
    got = matching.encode_targets(ANCHORS, padded_boxes, padded_classes, rule, TORCHVISION_SSD)
    np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())
    np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())
    assert 7 not in got[0].numpy()
    # Without the drop, the first extra box would be a match: the test can fail.
    kept = matching.encode_targets(ANCHORS, padded_boxes[:2], [3, 7], rule, TORCHVISION_SSD)[0].numpy()
    assert kept[3] == 7


def test_ssd_rule_rejects_class_zero():
    with pytest.raises(tf.errors.InvalidArgumentError, match="gt_classes must be >= 1"):
        matching.encode_targets(ANCHORS, [[0, 0, 10, 10]], [0], "ssd", TORCHVISION_SSD)
    # The retinanet rule's classes start at 0.
    classes_t, _ = matching.encode_targets(ANCHORS, [[0, 0, 10, 10]], [0], "retinanet", TORCHVISION_RETINANET)
    assert classes_t.numpy().tolist() == [0, -2, -1, -1]


@pytest.mark.parametrize("preset, rule, coder, size", [
    ("ssdlite320_mobilenet_v3_large", "ssd", TORCHVISION_SSD, 320.0),
    ("retinanet_mobilenet_v3_large_fpn", "retinanet", TORCHVISION_RETINANET, 320.0),
    ("mb2_ssd_lite", "ssd", BoxCoder.ssd(), 1.0),
])
def test_targets_equal_a_numpy_reference_on_the_presets(preset, rule, coder, size):
    rng = np.random.default_rng(7)
    anchors = preset_anchors(preset)
    for count in (1, 6):
        boxes = random_boxes(rng, count, size, 0.03 * size, 0.6 * size)
        classes = rng.integers(1, 20, count)
        want_classes, want_boxes = np_targets(anchors, boxes, classes, rule, coder)
        got_classes, got_boxes = matching.encode_targets(anchors, boxes, classes, rule, coder)
        np.testing.assert_array_equal(got_classes.numpy(), want_classes)
        np.testing.assert_allclose(got_boxes.numpy(), want_boxes, rtol=1e-5, atol=1e-5)
        assert (want_classes > 0).sum() >= count  # every box is on some anchor


def test_preset_encoders_use_the_references_rules_and_coders():
    assert sorted(matching.PRESET_TARGETS) == sorted(["ssdlite320_mobilenet_v3_large",
                                                      "retinanet_mobilenet_v3_large_fpn", "mb2_ssd_lite"])
    encoder = TargetEncoder.from_preset("mb2_ssd_lite")
    assert encoder.num_anchors == 3000 and encoder.coder.anchor_format == "cxcywh"
    retina = TargetEncoder.from_preset("retinanet_mobilenet_v3_large_fpn")
    assert retina.rule == MatchRule.retinanet() and retina.coder.weights == RETINANET_WEIGHTS


# ----------------------------------------------------------------------------- TF encoders vs NumPy


def test_tf_encoders_equal_the_numpy_ones():
    rng = np.random.default_rng(0)
    anchors = random_boxes(rng, 200, 320.0, 4.0, 200.0)
    boxes = random_boxes(rng, 200, 320.0, 4.0, 200.0)
    for weights in (SSD_WEIGHTS, RETINANET_WEIGHTS, (2.0, 3.0, 0.5, 7.0)):
        want = box_coding.encode_torchvision(boxes, anchors, weights)
        got = matching.encode_torchvision(boxes, anchors, weights).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    priors = box_coding.xyxy_to_cxcywh(anchors / 320.0)
    centre = box_coding.xyxy_to_cxcywh(boxes / 320.0)
    np.testing.assert_allclose(matching.xyxy_to_cxcywh(boxes / 320.0).numpy(), centre, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(matching.cxcywh_to_xyxy(centre).numpy(), box_coding.cxcywh_to_xyxy(centre),
                               rtol=1e-6, atol=1e-7)
    for variances in ((0.1, 0.2), (0.3, 0.05)):
        want = box_coding.encode_ssd(centre, priors, *variances)
        got = matching.encode_ssd(centre, priors, *variances).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # The comparison can fail: other weights give other deltas.
    assert not np.allclose(matching.encode_torchvision(boxes, anchors, RETINANET_WEIGHTS).numpy(),
                           box_coding.encode_torchvision(boxes, anchors, SSD_WEIGHTS))


def test_box_coder_encode_dispatches_on_the_anchor_format():
    priors = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    box = np.array([[0.42, 0.35, 0.6, 0.7]], np.float32)
    want = box_coding.encode_ssd(box_coding.xyxy_to_cxcywh(box), priors)
    np.testing.assert_allclose(BoxCoder.ssd().encode(box, priors).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(BoxCoder.ssd().anchors_xyxy(priors).numpy(), [[0.4, 0.3, 0.6, 0.7]], rtol=1e-6)


# ----------------------------------------------------------------------------- tf.data and tf.function


def _scene_data():
    """Four images with 2, 0, 3 and 1 boxes (pixels, 320), padded to 4 rows with class -1."""
    rng = np.random.default_rng(3)
    counts = [2, 0, 3, 1]
    boxes = np.zeros((4, 4, 4), np.float32)
    classes = np.full((4, 4), -1, np.int64)
    for i, count in enumerate(counts):
        boxes[i, :count] = random_boxes(rng, count, 320.0, 20.0, 150.0)
        classes[i, :count] = rng.integers(1, 10, count)
    return np.zeros((4, 8, 8, 3), np.float32), boxes, classes, counts


@pytest.mark.parametrize("rule, coder", [("ssd", TORCHVISION_SSD), ("retinanet", TORCHVISION_RETINANET)])
def test_target_encoder_in_a_padded_dataset(rule, coder):
    images, boxes, classes, counts = _scene_data()
    anchors = preset_anchors("ssdlite320_mobilenet_v3_large")
    encoder = TargetEncoder(anchors, rule, coder)
    dataset = tf.data.Dataset.from_tensor_slices((images, boxes, classes)).map(encoder).batch(2)
    assert dataset.element_spec[1]["classes"].shape.as_list() == [None, 3234]
    batches = list(dataset)
    got_classes = np.concatenate([targets["classes"].numpy() for _, targets in batches])
    got_boxes = np.concatenate([targets["boxes"].numpy() for _, targets in batches])
    for i, count in enumerate(counts):
        want_classes, want_boxes = np_targets(anchors, boxes[i, :count], classes[i, :count], rule, coder)
        np.testing.assert_array_equal(got_classes[i], want_classes)
        np.testing.assert_allclose(got_boxes[i], want_boxes, rtol=1e-5, atol=1e-5)
    assert set(got_classes[1]) == {0 if rule == "ssd" else -1}  # the image without boxes


def test_target_encoder_in_a_ragged_dataset():
    images, boxes, classes, counts = _scene_data()
    ragged_boxes = tf.RaggedTensor.from_tensor(boxes, lengths=counts)
    ragged_classes = tf.RaggedTensor.from_tensor(classes, lengths=counts)
    encoder = TargetEncoder.from_preset("ssdlite320_mobilenet_v3_large")
    dataset = tf.data.Dataset.from_tensor_slices((images, ragged_boxes, ragged_classes)).map(encoder)
    padded = tf.data.Dataset.from_tensor_slices((images, boxes, classes)).map(encoder)
    for (_, got), (_, want) in zip(dataset, padded, strict=True):
        np.testing.assert_array_equal(got["classes"].numpy(), want["classes"].numpy())
        np.testing.assert_array_equal(got["boxes"].numpy(), want["boxes"].numpy())


def test_encode_targets_in_a_tf_function_with_a_dynamic_box_count():
    anchors = tf.constant(ANCHORS)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def encode(boxes, classes):
        class_targets, box_targets = matching.encode_targets(anchors, boxes, classes, "retinanet",
                                                             TORCHVISION_RETINANET)
        assert class_targets.shape.as_list() == [4] and box_targets.shape.as_list() == [4, 4]  # static
        return class_targets

    assert encode(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)).numpy().tolist() == [-1] * 4
    assert encode(ANCHORS[[2, 0]], np.array([4, 9], np.int32)).numpy().tolist() == [9, -2, 4, -1]


# ----------------------------------------------------------------------------- losses


def _loss_inputs(seed, classes=4, sigmoid=False):
    rng = np.random.default_rng(seed)
    batch, anchors = 3, 40
    logits = rng.normal(0, 2, (batch, anchors, classes)).astype(np.float32)
    deltas = rng.normal(0, 1.5, (batch, anchors, 4)).astype(np.float32)
    box_targets = rng.normal(0, 1.5, (batch, anchors, 4)).astype(np.float32)
    if sigmoid:
        targets = rng.choice([-2, -1, -1, -1, -1, *range(classes)], (batch, anchors))
        targets[2] = -1  # an image without foreground
    else:
        targets = rng.choice([-1, 0, 0, 0, 0, 0, 0, 1, 2, 3], (batch, anchors))
        targets[1] = np.where(targets[1] > 0, 0, targets[1])  # an image without foreground
        targets[2, :35] = rng.integers(1, classes, 35)  # more than a quarter foreground: few negatives
    return logits, deltas, targets, box_targets


@pytest.mark.parametrize("seed, ratio", [(0, 3), (1, 3), (2, 1.5), (3, 0.4)])
def test_multibox_loss_equals_numpy(seed, ratio):
    inputs = _loss_inputs(seed)
    got = [v.numpy() for v in losses.multibox_loss(*inputs, negative_ratio=ratio)]
    want = np_multibox(*inputs, ratio)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_multibox_hard_negative_count_by_hand():
    # One image, 2 classes, one foreground anchor with logits (0, 0): loss log 2.
    # Nine background anchors with logits (0, z): loss softplus(z), ranked by z.
    z = np.array([0.5, -1.0, 2.0, 1.0, -3.0, 3.0, 0.0, -2.0, 1.5], np.float32)
    logits = np.zeros((1, 10, 2), np.float32)
    logits[0, 1:, 1] = z
    targets = np.array([[1] + [0] * 9])
    zeros = np.zeros((1, 10, 4), np.float32)
    softplus = np.log1p(np.exp(np.sort(z)[::-1].astype(np.float64)))
    for ratio, kept in ((3, 3), (1, 1), (0.5, 1), (2.5, 3), (20, 9)):
        classification, regression = losses.multibox_loss(logits, zeros, targets, zeros, negative_ratio=ratio)
        np.testing.assert_allclose(classification.numpy(), math.log(2) + softplus[:kept].sum(), rtol=1e-6)
        assert regression.numpy() == 0.0


def test_multibox_regression_and_normalisation_by_hand():
    logits = np.zeros((2, 3, 3), np.float32)
    targets = np.array([[2, 0, -1], [1, 1, 0]])
    deltas = np.zeros((2, 3, 4), np.float32)
    deltas[0, 0] = [0.5, -2.0, 0.0, 1.0]  # smooth-L1: 0.125 + 1.5 + 0 + 0.5
    deltas[0, 2] = [9, 9, 9, 9]  # ignored anchor
    deltas[1, 2] = [9, 9, 9, 9]  # background anchor
    classification, regression = losses.multibox_loss(logits, deltas, targets, np.zeros_like(deltas))
    np.testing.assert_allclose(regression.numpy(), 2.125 / 3, rtol=1e-6)
    # 3 positives and 2 negatives (one per image that has any), each log 3; the ignored anchor is out.
    np.testing.assert_allclose(classification.numpy(), 5 * math.log(3) / 3, rtol=1e-6)


def test_multibox_loss_without_foreground_is_finite():
    logits, deltas, _, box_targets = _loss_inputs(0)
    classification, regression = losses.multibox_loss(logits, deltas, np.zeros((3, 40), np.int32), box_targets)
    assert classification.numpy() == 0.0 and regression.numpy() == 0.0


def test_multibox_gradient_reaches_only_the_counted_anchors():
    logits, deltas, targets, box_targets = _loss_inputs(0)
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        classification, _ = losses.multibox_loss(logits, deltas, targets, box_targets)
    gradient = tape.gradient(classification, logits).numpy()
    touched = np.abs(gradient).sum(axis=-1) > 0
    positives = (targets > 0).sum(axis=1)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(touched.sum(axis=1),
                                  positives + np.minimum(3 * positives, (targets == 0).sum(axis=1)))
    assert not touched[targets < 0].any()


@pytest.mark.parametrize("seed, gamma, box_loss, normalize", [
    (0, 2.0, "l1", "image"), (1, 2.0, "smooth_l1", "batch"), (2, 0.0, "smooth_l1", "image"), (3, 1.5, "l1", "batch"),
])
def test_focal_loss_equals_numpy(seed, gamma, box_loss, normalize):
    inputs = _loss_inputs(seed, classes=3, sigmoid=True)
    got = [v.numpy() for v in losses.focal_loss(*inputs, alpha=0.3, gamma=gamma, box_loss=box_loss, beta=0.2,
                                                normalize=normalize)]
    want = np_focal(*inputs, 0.3, gamma, box_loss, 0.2, normalize)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_focal_loss_by_hand():
    logits = np.zeros((1, 3, 1), np.float32)  # p = 0.5 everywhere
    targets = np.array([[0, -1, -2]])  # foreground, background, ignored
    deltas = np.array([[[1, 2, -3, 0.05], [7, 7, 7, 7], [7, 7, 7, 7]]], np.float32)
    zeros = np.zeros_like(deltas)
    log2 = math.log(2)
    classification, regression = losses.focal_loss(logits, deltas, targets, zeros)
    np.testing.assert_allclose(classification.numpy(), 0.25 * 0.25 * log2 + 0.75 * 0.25 * log2, rtol=1e-6)
    np.testing.assert_allclose(regression.numpy(), 6.05, rtol=1e-6)  # L1 on the foreground anchor only
    _, smooth = losses.focal_loss(logits, deltas, targets, zeros, box_loss="smooth_l1")  # beta 1/9
    np.testing.assert_allclose(smooth.numpy(), 6 - 3 / 18 + 0.5 * 0.05**2 * 9, rtol=1e-6)
    # gamma 0, alpha 0.5: half the binary cross-entropy.
    plain, _ = losses.focal_loss(logits, deltas, targets, zeros, alpha=0.5, gamma=0.0)
    np.testing.assert_allclose(plain.numpy(), log2, rtol=1e-6)


def test_focal_loss_normalisations_differ_as_documented():
    logits = np.zeros((2, 2, 1), np.float32)
    targets = np.array([[0, 0], [0, -1]])  # 2 and 1 positives
    zeros = np.zeros((2, 2, 4), np.float32)
    term_fg, term_bg = 0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)
    image, _ = losses.focal_loss(logits, zeros, targets, zeros, normalize="image")
    batch, _ = losses.focal_loss(logits, zeros, targets, zeros, normalize="batch")
    np.testing.assert_allclose(image.numpy(), (2 * term_fg / 2 + (term_fg + term_bg)) / 2, rtol=1e-6)
    np.testing.assert_allclose(batch.numpy(), (3 * term_fg + term_bg) / 3, rtol=1e-6)


# ----------------------------------------------------------------------------- arguments and imports


LOSS_INPUTS = (np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), np.int32),
               np.zeros((1, 2, 4), np.float32))


@pytest.mark.parametrize("call, argument", [
    (lambda: losses.multibox_loss(*LOSS_INPUTS, negative_ratio=0), "negative_ratio"),
    (lambda: losses.multibox_loss(*LOSS_INPUTS, negative_ratio=-1), "negative_ratio"),
    (lambda: losses.multibox_loss(*LOSS_INPUTS, negative_ratio=True), "negative_ratio"),
    (lambda: losses.multibox_loss(*LOSS_INPUTS, negative_ratio=float("nan")), "negative_ratio"),
    (lambda: losses.multibox_loss(LOSS_INPUTS[0][0], *LOSS_INPUTS[1:]), "class_logits"),
    (lambda: losses.multibox_loss(*LOSS_INPUTS[:2], LOSS_INPUTS[2].astype(np.float32), LOSS_INPUTS[3]),
     "class_targets"),
    (lambda: losses.multibox_loss(*LOSS_INPUTS[:3], np.zeros((1, 2, 3))), "box_targets"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, alpha=0), "alpha"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, alpha=1.0), "alpha"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, alpha="0.25"), "alpha"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, gamma=-0.5), "gamma"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, box_loss="l2"), "box_loss"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, box_loss="smooth_l1", beta=0), "beta"),
    (lambda: losses.focal_loss(*LOSS_INPUTS, normalize="anchors"), "normalize"),
    (lambda: losses.focal_loss(LOSS_INPUTS[0], np.zeros((1, 2, 5)), *LOSS_INPUTS[2:]), "box_deltas"),
    (lambda: MatchRule("fcos"), "kind"),
    (lambda: MatchRule.ssd(1.5), "high"),
    (lambda: MatchRule.retinanet(0.5, 0.0), "low"),
    (lambda: MatchRule.retinanet(0.4, 0.5), "low"),
    (lambda: MatchRule("ssd", 0.5, 0.4), "low"),
    (lambda: BoxCoder.torchvision((10, 10, 5)), "weights"),
    (lambda: BoxCoder.ssd(center_variance=0), "center_variance"),
    (lambda: BoxCoder("yolo"), "kind"),
    (lambda: matching.match_anchors(ANCHORS, [[0, 0, 1, 1]], "yolo"), "rule"),
    (lambda: matching.match_anchors(ANCHORS[:, :3], [[0, 0, 1, 1]]), "anchors_xyxy"),
    (lambda: matching.match_anchors(ANCHORS, [0, 0, 1, 1]), "gt_boxes_xyxy"),
    (lambda: matching.pairwise_iou([["a", "b", "c", "d"]], ANCHORS), "boxes_a"),
    (lambda: matching.encode_targets(ANCHORS, [[0, 0, 1, 1]], [1], "ssd", "torchvision"), "coder"),
    (lambda: matching.encode_targets(ANCHORS, [[0, 0, 1, 1]], [1.0], "ssd", TORCHVISION_SSD), "gt_classes"),
    (lambda: matching.encode_targets(ANCHORS, [[0, 0, 1, 1]], [[1]], "ssd", TORCHVISION_SSD), "gt_classes"),
    (lambda: matching.encode_targets(ANCHORS, [[0, 0, 1, 1]], [1, 2], "ssd", TORCHVISION_SSD), "gt_boxes"),
    (lambda: matching.encode_ssd([[0.5, 0.5, 0.1, 0.1]], [[0.5, 0.5, 0.1, 0.1]], size_variance=-1), "size_variance"),
    (lambda: TargetEncoder(np.zeros((0, 4)), "ssd", TORCHVISION_SSD), "anchors"),
    (lambda: TargetEncoder([[0, 0, np.inf, 1]], "ssd", TORCHVISION_SSD), "anchors"),
    (lambda: TargetEncoder.from_preset("yolo"), "name"),
])
def test_bad_arguments(call, argument):
    with pytest.raises(InputError) as info:
        call()
    assert f"`{argument}`" in str(info.value)


def test_the_detection_package_still_imports_without_tensorflow():
    code = ("import sys, keras_lightnets.detection; "
            "print('tensorflow' in sys.modules, 'keras_lightnets.detection.matching' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
