"""Anchor-to-ground-truth matching and training targets, in TensorFlow ops.

Import it by name: ``from keras_lightnets.detection import matching``. It imports TensorFlow;
``keras_lightnets.detection`` itself stays NumPy-only and does not import this module.

Everything here works eagerly and inside ``tf.function`` / ``tf.data.Dataset.map``: the anchor count
is static, the number of ground-truth boxes may vary from image to image and may be zero.

* ``pairwise_iou``: IoU of two sets of x1 y1 x2 y2 boxes, ``(A, B)``.
* ``match_anchors``: per anchor, the index of its ground-truth box, ``BACKGROUND`` (-1) or ``IGNORE`` (-2),
  under a ``MatchRule``:

  - ``MatchRule.ssd()`` (torchvision ``SSDMatcher(0.5)``, pytorch-ssd ``assign_priors``): IoU >= 0.5 is
    foreground, anything lower background; then every box is forced onto its best anchor (the first
    anchor of highest IoU), even below the threshold. When two boxes pick the same anchor the box with
    the larger index wins (pytorch-ssd's loop writes in index order; torchvision's indexed assignment
    with repeated indices leaves the order unspecified, in practice the last write wins on CPU).
  - ``MatchRule.retinanet()`` (torchvision ``Matcher(0.5, 0.4, allow_low_quality_matches=True)``): IoU
    >= 0.5 foreground, < 0.4 background, in between ignored; then for every box, each anchor whose IoU
    with it equals the box's best IoU (ties included) gets its own best box (which may be another box).
    As in torchvision this includes a box's best IoU of 0: a box that overlaps no anchor makes every
    anchor it does not overlap a low-quality match.

  An anchor's best box is the first box of highest IoU (torch's ``max(dim)`` rule).
* ``encode_targets``: class and box targets of one image's anchors (see "Targets" below).
* ``TargetEncoder``: ``encode_targets`` with fixed anchors, rule and coder, shaped for ``dataset.map``.
* ``BoxCoder`` and the TensorFlow twins of ``box_coding``'s NumPy coders: ``encode_torchvision``,
  ``encode_ssd``, ``xyxy_to_cxcywh``, ``cxcywh_to_xyxy``.

Targets (int32 class targets, one per anchor; the two rules use the two losses' conventions):

* ``MatchRule.ssd()`` (softmax, ``losses.multibox_loss``): the matched box's class for foreground
  anchors, ``0`` for background. Ground-truth classes must be >= 1: class 0 is the background column.
* ``MatchRule.retinanet()`` (sigmoid, ``losses.focal_loss``): the matched box's class (>= 0, a column
  of the sigmoid head) for foreground, ``-1`` for background, ``-2`` for ignored anchors.

Box targets are float32 ``(N, 4)``: the matched box encoded against its anchor for foreground anchors,
zeros elsewhere (pytorch-ssd encodes the best box for every prior, torchvision only for foreground;
the losses read only the foreground rows). Boxes and anchors share one unit: pixels for the torchvision
presets, fractions of the image for pytorch-ssd's priors.

Input rows are dropped before matching: padding (a negative class, e.g. the -1 of ``padded_batch``)
and degenerate boxes (``x2 <= x1`` or ``y2 <= y1``, NaN included); torchvision rejects degenerate
boxes during training, here they are silently skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import tensorflow as tf

from keras_lightnets.detection.anchor_boxes import PRESET_ANCHORS
from keras_lightnets.detection.box_coding import RETINANET_WEIGHTS, SSD_WEIGHTS, _weights
from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_choice, check_positive_number

BACKGROUND = -1  # match_anchors: the anchor is background
IGNORE = -2  # match_anchors: the anchor is neither foreground nor background (RetinaNet's 0.4..0.5 band)

RULE_KINDS = ("ssd", "retinanet")
CODER_KINDS = ("torchvision", "ssd")


def _unit_number(argument: str, value) -> float:
    if (isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating)
            or not math.isfinite(value) or not 0.0 < value <= 1.0):
        raise InputError(f"`{argument}` must be a number in (0, 1]; received {argument}={value!r}")
    return float(value)


# ----------------------------------------------------------------------------- rule and coder


@dataclass(frozen=True)
class MatchRule:
    """How anchors are matched: ``MatchRule.ssd()`` or ``MatchRule.retinanet()`` (see the module docstring).

    ``high``: IoU from which an anchor is foreground; ``low``: IoU below which it is background
    (between the two: ignored). For ``"ssd"`` the two are equal.
    """

    kind: str
    high: float = 0.5
    low: float = 0.5

    def __post_init__(self):
        check_choice("kind", self.kind, RULE_KINDS)
        high = _unit_number("high", self.high)
        low = _unit_number("low", self.low)
        if low > high:
            raise InputError(f"`low` must be <= `high`; received low={self.low!r}, high={self.high!r}")
        if self.kind == "ssd" and low != high:
            raise InputError(f"the ssd rule has one threshold: `low` must equal `high`; received low={self.low!r}, "
                             f"high={self.high!r}")
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "low", low)

    @classmethod
    def ssd(cls, threshold: float = 0.5) -> MatchRule:
        """torchvision ``SSDMatcher(threshold)`` / pytorch-ssd ``assign_priors(..., iou_threshold)``."""
        return cls("ssd", threshold, threshold)

    @classmethod
    def retinanet(cls, high: float = 0.5, low: float = 0.4) -> MatchRule:
        """torchvision ``Matcher(high, low, allow_low_quality_matches=True)``."""
        return cls("retinanet", high, low)

    @property
    def background(self) -> int:
        """The class target of a background anchor: 0 (softmax, ssd) or -1 (sigmoid, retinanet)."""
        return 0 if self.kind == "ssd" else BACKGROUND


def _rule(rule) -> MatchRule:
    if isinstance(rule, MatchRule):
        return rule
    if isinstance(rule, str) and rule in RULE_KINDS:
        return MatchRule.ssd() if rule == "ssd" else MatchRule.retinanet()
    raise InputError(f"`rule` must be a MatchRule or one of 'ssd', 'retinanet'; received rule={rule!r}")


@dataclass(frozen=True)
class BoxCoder:
    """How a matched box becomes a regression target: ``BoxCoder.torchvision(weights)`` or ``BoxCoder.ssd()``.

    * ``"torchvision"``: anchors are x1 y1 x2 y2; ``encode_torchvision`` with ``weights``
      (``SSD_WEIGHTS`` (10, 10, 5, 5) for SSD/SSDLite, ``RETINANET_WEIGHTS`` (1, 1, 1, 1) for RetinaNet).
    * ``"ssd"``: anchors are pytorch-ssd priors, centre x, centre y, width, height; ``encode_ssd`` with the
      variances (0.1, 0.2). Matching uses the priors' corners, as pytorch-ssd's ``MatchPrior``.

    Ground-truth boxes are x1 y1 x2 y2 with either coder.
    """

    kind: str
    weights: tuple[float, float, float, float] = SSD_WEIGHTS
    center_variance: float = 0.1
    size_variance: float = 0.2

    def __post_init__(self):
        check_choice("kind", self.kind, CODER_KINDS)
        object.__setattr__(self, "weights", _weights(self.weights))
        object.__setattr__(self, "center_variance", check_positive_number("center_variance", self.center_variance))
        object.__setattr__(self, "size_variance", check_positive_number("size_variance", self.size_variance))

    @classmethod
    def torchvision(cls, weights: Sequence[float] = SSD_WEIGHTS) -> BoxCoder:
        """torchvision ``BoxCoder(weights)`` on x1 y1 x2 y2 anchors."""
        return cls("torchvision", tuple(weights) if isinstance(weights, Sequence | np.ndarray) else weights)

    @classmethod
    def ssd(cls, center_variance: float = 0.1, size_variance: float = 0.2) -> BoxCoder:
        """pytorch-ssd ``convert_boxes_to_locations`` on centre-form priors."""
        return cls("ssd", SSD_WEIGHTS, center_variance, size_variance)

    @property
    def anchor_format(self) -> str:
        """The anchors' convention: ``"xyxy"`` (torchvision) or ``"cxcywh"`` (pytorch-ssd priors)."""
        return "xyxy" if self.kind == "torchvision" else "cxcywh"

    def anchors_xyxy(self, anchors) -> tf.Tensor:
        """The anchors as x1 y1 x2 y2 (what matching compares boxes with)."""
        anchors = _as_boxes("anchors", anchors)
        return anchors if self.kind == "torchvision" else cxcywh_to_xyxy(anchors)

    def encode(self, boxes_xyxy, anchors) -> tf.Tensor:
        """Regression targets of ``boxes_xyxy`` against ``anchors`` (in ``anchor_format``), ``(..., 4)`` float32."""
        if self.kind == "torchvision":
            return encode_torchvision(boxes_xyxy, anchors, self.weights)
        return encode_ssd(xyxy_to_cxcywh(boxes_xyxy), anchors, self.center_variance, self.size_variance)


def _coder(coder) -> BoxCoder:
    if not isinstance(coder, BoxCoder):
        raise InputError(
            "`coder` must be a BoxCoder, e.g. BoxCoder.torchvision(SSD_WEIGHTS), "
            f"BoxCoder.torchvision(RETINANET_WEIGHTS) or BoxCoder.ssd(); received coder={coder!r}"
        )
    return coder


# The rule and coder of each anchor preset's reference detector.
PRESET_TARGETS: Mapping[str, tuple[MatchRule, BoxCoder]] = MappingProxyType({
    "ssdlite320_mobilenet_v3_large": (MatchRule.ssd(), BoxCoder.torchvision(SSD_WEIGHTS)),
    "retinanet_mobilenet_v3_large_fpn": (MatchRule.retinanet(), BoxCoder.torchvision(RETINANET_WEIGHTS)),
    "mb2_ssd_lite": (MatchRule.ssd(), BoxCoder.ssd()),
})


# ----------------------------------------------------------------------------- tensors


def _as_boxes(argument: str, value, rank: int | None = None) -> tf.Tensor:
    """``value`` as a float32 tensor of shape (..., 4) (rank ``rank`` when given); ``InputError`` otherwise."""
    try:
        tensor = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"`{argument}` must be a tensor of shape (..., 4); received {argument}={value!r}") from err
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise InputError(f"`{argument}` must hold numbers; received dtype {tensor.dtype.name}")
    shape = tensor.shape
    if shape.rank == 0 or (shape.rank is not None and shape[-1] is not None and shape[-1] != 4) \
            or (rank is not None and shape.rank is not None and shape.rank != rank):
        want = f"({', '.join(['n'] * (rank - 1) + ['4'])})" if rank else "(..., 4)"
        raise InputError(f"`{argument}` must have shape {want}; received shape {shape}")
    return tf.cast(tensor, tf.float32)


def _as_classes(value) -> tf.Tensor:
    try:
        tensor = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"`gt_classes` must be an integer tensor of shape (n,); received {value!r}") from err
    if not tensor.dtype.is_integer:
        raise InputError(f"`gt_classes` must hold integers; received dtype {tensor.dtype.name}")
    if tensor.shape.rank is not None and tensor.shape.rank != 1:
        raise InputError(f"`gt_classes` must have shape (n,); received shape {tensor.shape}")
    return tf.cast(tensor, tf.int32)


def xyxy_to_cxcywh(boxes) -> tf.Tensor:
    """x1 y1 x2 y2 to centre x, centre y, width, height, float32 ``(..., 4)`` (as ``box_coding.xyxy_to_cxcywh``)."""
    boxes = _as_boxes("boxes", boxes)
    return tf.concat([(boxes[..., :2] + boxes[..., 2:]) / 2.0, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes) -> tf.Tensor:
    """Centre x, centre y, width, height to x1 y1 x2 y2, float32 ``(..., 4)`` (as ``box_coding.cxcywh_to_xyxy``)."""
    boxes = _as_boxes("boxes", boxes)
    return tf.concat([boxes[..., :2] - boxes[..., 2:] / 2.0, boxes[..., :2] + boxes[..., 2:] / 2.0], axis=-1)


def encode_torchvision(boxes_xyxy, anchors_xyxy, weights: Sequence[float]) -> tf.Tensor:
    """torchvision ``BoxCoder.encode_single`` in TensorFlow, float32 (``box_coding.encode_torchvision``'s twin).

    ``(wx * dx / w_a, wy * dy / h_a, ww * log(w / w_a), wh * log(h / h_a))``; the leading axes broadcast.
    """
    wx, wy, ww, wh = _weights(weights)
    boxes = _as_boxes("boxes_xyxy", boxes_xyxy)
    anchors = _as_boxes("anchors_xyxy", anchors_xyxy)
    ex_w = anchors[..., 2] - anchors[..., 0]
    ex_h = anchors[..., 3] - anchors[..., 1]
    ex_cx = anchors[..., 0] + 0.5 * ex_w
    ex_cy = anchors[..., 1] + 0.5 * ex_h
    gt_w = boxes[..., 2] - boxes[..., 0]
    gt_h = boxes[..., 3] - boxes[..., 1]
    gt_cx = boxes[..., 0] + 0.5 * gt_w
    gt_cy = boxes[..., 1] + 0.5 * gt_h
    return tf.stack([
        wx * (gt_cx - ex_cx) / ex_w,
        wy * (gt_cy - ex_cy) / ex_h,
        ww * tf.math.log(gt_w / ex_w),
        wh * tf.math.log(gt_h / ex_h),
    ], axis=-1)


def encode_ssd(boxes_cxcywh, priors_cxcywh, center_variance: float = 0.1, size_variance: float = 0.2) -> tf.Tensor:
    """pytorch-ssd ``convert_boxes_to_locations`` in TensorFlow, float32 (``box_coding.encode_ssd``'s twin)."""
    cv = check_positive_number("center_variance", center_variance)
    sv = check_positive_number("size_variance", size_variance)
    boxes = _as_boxes("boxes_cxcywh", boxes_cxcywh)
    priors = _as_boxes("priors_cxcywh", priors_cxcywh)
    return tf.concat([
        (boxes[..., :2] - priors[..., :2]) / priors[..., 2:] / cv,
        tf.math.log(boxes[..., 2:] / priors[..., 2:]) / sv,
    ], axis=-1)


# ----------------------------------------------------------------------------- matching


def pairwise_iou(boxes_a, boxes_b) -> tf.Tensor:
    """IoU of every box of ``boxes_a`` (A, 4) with every box of ``boxes_b`` (B, 4), x1 y1 x2 y2; float32 (A, B).

    As torchvision's ``box_iou`` (areas ``(x2 - x1) * (y2 - y1)``, no +1), with 0 where the union is 0.
    pytorch-ssd's ``iou_of`` adds 1e-5 to the union; that is not done here.
    """
    a = _as_boxes("boxes_a", boxes_a, rank=2)
    b = _as_boxes("boxes_b", boxes_b, rank=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = tf.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    size = tf.maximum(bottom_right - top_left, 0.0)
    inter = size[..., 0] * size[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def _first_argmax(values: tf.Tensor, axis: int) -> tf.Tensor:
    """The first index of the largest value along ``axis`` of a 2-D tensor (``tf.argmax`` leaves ties open).

    Along an empty axis the result is the axis length (an index out of range).
    """
    count = tf.shape(values, out_type=tf.int32)[axis]
    index = tf.range(count)
    index = index[:, None] if axis == 0 else index[None, :]
    best = tf.reduce_max(values, axis=axis, keepdims=True)
    return tf.reduce_min(tf.where(tf.equal(values, best), index, count), axis=axis)


def _match(iou: tf.Tensor, rule: MatchRule) -> tf.Tensor:
    """Per anchor (column of ``iou``, shape (G, N)): its box index, BACKGROUND or IGNORE; int32 (N,)."""
    num_gt = tf.shape(iou, out_type=tf.int32)[0]
    num_anchors = tf.shape(iou, out_type=tf.int32)[1]
    best_iou = tf.reduce_max(iou, axis=0)  # (N,): -inf without boxes, so everything is background
    best_gt = _first_argmax(iou, axis=0)  # (N,)
    if rule.kind == "ssd":
        matches = tf.where(best_iou >= rule.high, best_gt, BACKGROUND)
        best_anchor = _first_argmax(iou, axis=1)  # (G,)
        picked = tf.equal(best_anchor[None, :], tf.range(num_anchors)[:, None])  # (N, G)
        # The largest box index among the boxes that picked an anchor: the later box wins.
        forced = tf.reduce_max(tf.where(picked, tf.range(num_gt)[None, :], -1), axis=1)
        return tf.where(tf.reduce_any(picked, axis=1), forced, matches)
    matches = tf.where(best_iou >= rule.high, best_gt, tf.where(best_iou >= rule.low, IGNORE, BACKGROUND))
    best_per_gt = tf.reduce_max(iou, axis=1, keepdims=True)  # (G, 1)
    low_quality = tf.reduce_any(tf.equal(iou, best_per_gt), axis=0)  # (N,)
    return tf.where(low_quality, best_gt, matches)


def match_anchors(anchors_xyxy, gt_boxes_xyxy, rule: MatchRule | str = "ssd") -> tf.Tensor:
    """Match every anchor to a ground-truth box.

    Args:
        anchors_xyxy: ``(N, 4)`` anchors, x1 y1 x2 y2.
        gt_boxes_xyxy: ``(G, 4)`` boxes in the same units, G >= 0 (no rows are dropped here).
        rule: a ``MatchRule``, or ``"ssd"`` / ``"retinanet"`` for the defaults.

    Returns:
        int32 ``(N,)``: the matched box's index, ``BACKGROUND`` (-1) or ``IGNORE`` (-2, RetinaNet only).
    """
    rule = _rule(rule)
    anchors = _as_boxes("anchors_xyxy", anchors_xyxy, rank=2)
    boxes = _as_boxes("gt_boxes_xyxy", gt_boxes_xyxy, rank=2)
    return _match(pairwise_iou(boxes, anchors), rule)


def valid_rows(gt_boxes, gt_classes) -> tuple[tf.Tensor, tf.Tensor]:
    """The rows kept for matching: non-negative class (not padding) and ``x2 > x1``, ``y2 > y1``.

    Returns float32 ``(G', 4)`` boxes and int32 ``(G',)`` classes.
    """
    boxes = _as_boxes("gt_boxes", gt_boxes, rank=2)
    classes = _as_classes(gt_classes)
    if boxes.shape[0] is not None and classes.shape[0] is not None and boxes.shape[0] != classes.shape[0]:
        raise InputError(
            f"`gt_boxes` and `gt_classes` must have one row per box; received shapes {boxes.shape} and {classes.shape}"
        )
    keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)


def encode_targets(
    anchors, gt_boxes, gt_classes, rule: MatchRule | str, coder: BoxCoder,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The training targets of one image's anchors.

    Args:
        anchors: ``(N, 4)`` in ``coder.anchor_format`` (x1 y1 x2 y2, or pytorch-ssd's centre-form priors).
        gt_boxes: ``(G, 4)`` x1 y1 x2 y2 in the anchors' units; G may be 0 or vary between calls.
        gt_classes: ``(G,)`` integers; negative rows (-1) are padding. With the ssd rule the kept classes
            must be >= 1 (0 is background), checked with ``tf.debugging`` (``InvalidArgumentError``).
        rule: a ``MatchRule`` or ``"ssd"`` / ``"retinanet"``.
        coder: a ``BoxCoder``.

    Returns:
        ``(class_targets, box_targets)``: int32 ``(N,)`` (ssd rule: class or 0 for background; retinanet
        rule: class, -1 background, -2 ignore) and float32 ``(N, 4)`` (zeros except on foreground anchors).
    """
    rule = _rule(rule)
    coder = _coder(coder)
    anchors = _as_boxes("anchors", anchors, rank=2)
    anchors_xyxy = coder.anchors_xyxy(anchors)
    boxes, classes = valid_rows(gt_boxes, gt_classes)
    if rule.kind == "ssd":
        with tf.control_dependencies([tf.debugging.assert_greater_equal(
                classes, 1, message="with the ssd rule, gt_classes must be >= 1 (0 is background, -1 padding)")]):
            classes = tf.identity(classes)
    matches = _match(pairwise_iou(boxes, anchors_xyxy), rule)
    foreground = matches >= 0
    # Non-foreground anchors read an extra row (never an out-of-range index, also without boxes).
    index = tf.where(foreground, matches, tf.shape(classes, out_type=tf.int32)[0])
    matched_classes = tf.gather(tf.concat([classes, [0]], axis=0), index)
    fallback = tf.zeros_like(matches) if rule.kind == "ssd" else matches
    class_targets = tf.where(foreground, matched_classes, fallback)
    matched_boxes = tf.gather(tf.concat([boxes, tf.zeros([1, 4], tf.float32)], axis=0), index)
    # Non-foreground anchors encode themselves (finite, about zero) and are then zeroed.
    matched_boxes = tf.where(foreground[:, None], matched_boxes, anchors_xyxy)
    box_targets = tf.where(foreground[:, None], coder.encode(matched_boxes, anchors), 0.0)
    return class_targets, box_targets


# ----------------------------------------------------------------------------- for tf.data


class TargetEncoder:
    """``encode_targets`` with fixed anchors, rule and coder, for ``tf.data.Dataset.map``.

    ``dataset.map(TargetEncoder(anchors, "ssd", BoxCoder.torchvision()))`` turns elements
    ``(image, boxes (G, 4), classes (G,))`` into ``(image, {"classes": (N,), "boxes": (N, 4)})``;
    rows with class -1 (padding) and degenerate boxes are dropped first. ``TargetEncoder.from_preset(name)``
    uses a reference detector's anchors, rule and coder (``PRESET_TARGETS``).
    """

    def __init__(self, anchors, rule: MatchRule | str, coder: BoxCoder):
        self.rule = _rule(rule)
        self.coder = _coder(coder)
        try:
            array = np.asarray(anchors, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise InputError(f"`anchors` must be an array of shape (N, 4); received anchors={anchors!r}") from err
        if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] < 1 or not np.all(np.isfinite(array)):
            raise InputError(f"`anchors` must be a finite array of shape (N, 4), N >= 1; received shape {array.shape}")
        self.anchors = tf.constant(array)

    @classmethod
    def from_preset(cls, name: str) -> TargetEncoder:
        """The encoder of a reference detector (a key of ``PRESET_TARGETS``), with its anchors."""
        check_choice("name", name, tuple(PRESET_TARGETS))
        rule, coder = PRESET_TARGETS[name]
        return cls(PRESET_ANCHORS[name].anchors(), rule, coder)

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def __call__(self, image, boxes, classes):
        class_targets, box_targets = encode_targets(self.anchors, boxes, classes, self.rule, self.coder)
        return image, {"classes": class_targets, "boxes": box_targets}

    def __repr__(self) -> str:
        return f"TargetEncoder({self.num_anchors} anchors, rule={self.rule!r}, coder={self.coder!r})"
