"""Box coding in NumPy: boxes to regression deltas relative to anchors, and back.

Two conventions, each as its reference computes it:

* torchvision ``BoxCoder`` (SSD, SSDLite, RetinaNet, Faster R-CNN): boxes and anchors are
  x1 y1 x2 y2 (pixels); widths are ``x2 - x1`` (no +1); deltas are
  ``(wx * dx / w_a, wy * dy / h_a, ww * log(w / w_a), wh * log(h / h_a))`` with weights
  ``(10, 10, 5, 5)`` for SSD/SSDLite and ``(1, 1, 1, 1)`` for RetinaNet. Decoding clamps the
  unweighted ``dw``/``dh`` at ``log(1000 / 16)`` before ``exp``.
* qfgaohao/pytorch-ssd (``convert_boxes_to_locations`` / ``convert_locations_to_boxes``):
  boxes and priors are centre x, centre y, width, height (relative to the image);
  ``((c - c_p) / wh_p / center_variance, log(wh / wh_p) / size_variance)``, variances 0.1 and
  0.2; no clamp.

Every function takes arrays of shape ``(..., 4)`` and broadcasts the leading axes, so deltas
``(batch, N, 4)`` decode against anchors ``(N, 4)``. Results have the inputs' common float
dtype, at least float32: float32 (and float16) inputs give float32, float64 or integer inputs float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_positive_number

# torchvision's BoxCoder weights (wx, wy, ww, wh).
SSD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RETINANET_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
# torchvision's bbox_xform_clip: the largest dw / dh (after dividing by the weights) exp() sees.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _boxes(argument: str, value) -> np.ndarray:
    """``value`` as a float array of shape (..., 4); ``InputError`` naming ``argument`` otherwise."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"`{argument}` must be an array of shape (..., 4); received {argument}={value!r}") from err
    if array.dtype.kind not in "iuf" or array.ndim == 0 or array.shape[-1] != 4:
        raise InputError(
            f"`{argument}` must be a numeric array of shape (..., 4); received dtype {array.dtype}, "
            f"shape {array.shape}"
        )
    return array


def _float(array: np.ndarray, *others: np.ndarray) -> np.dtype:
    """The common float dtype of the arrays, at least float32 (integers: float64)."""
    dtype = np.result_type(array.dtype, *(o.dtype for o in others), np.float32)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _pair(argument_a: str, a, argument_b: str, b) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays of one float dtype (float32 at least) whose leading axes broadcast."""
    a, b = _boxes(argument_a, a), _boxes(argument_b, b)
    try:
        np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError as err:
        raise InputError(
            f"`{argument_a}` and `{argument_b}` must have leading axes that broadcast; received shapes "
            f"{a.shape} and {b.shape}"
        ) from err
    dtype = _float(a, b)
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


def _weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray) or len(weights) != 4:
        raise InputError(
            "`weights` must be four numbers > 0 (wx, wy, ww, wh), e.g. (10, 10, 5, 5) for SSD or (1, 1, 1, 1) "
            f"for RetinaNet; received weights={weights!r}"
        )
    wx, wy, ww, wh = (check_positive_number(f"weights[{i}]", w) for i, w in enumerate(weights))
    return wx, wy, ww, wh


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 to centre x, centre y, width, height; ``(..., 4)`` to ``(..., 4)``, any units.

    As pytorch-ssd's ``corner_form_to_center_form``: ``((p1 + p2) / 2, p2 - p1)``.
    """
    boxes = _boxes("boxes", boxes)
    boxes = boxes.astype(_float(boxes), copy=False)
    return np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre x, centre y, width, height to x1 y1 x2 y2; ``(..., 4)`` to ``(..., 4)``, any units.

    As pytorch-ssd's ``center_form_to_corner_form``: ``(c - wh / 2, c + wh / 2)``.
    """
    boxes = _boxes("boxes", boxes)
    boxes = boxes.astype(_float(boxes), copy=False)
    return np.concatenate([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], axis=-1)


# ----------------------------------------------------------------------------- torchvision BoxCoder


def encode_torchvision(boxes_xyxy: np.ndarray, anchors_xyxy: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """torchvision ``BoxCoder.encode_single``: the deltas that turn ``anchors_xyxy`` into ``boxes_xyxy``.

    Args:
        boxes_xyxy: target boxes ``(..., 4)``, x1 y1 x2 y2 in pixels, positive widths and heights.
        anchors_xyxy: anchors ``(..., 4)``, x1 y1 x2 y2 in pixels (broadcast against ``boxes_xyxy``).
        weights: ``(wx, wy, ww, wh)``, ``SSD_WEIGHTS`` (10, 10, 5, 5) or ``RETINANET_WEIGHTS`` (1, 1, 1, 1).

    Returns:
        ``(..., 4)`` deltas ``(wx * dx / w_a, wy * dy / h_a, ww * log(w / w_a), wh * log(h / h_a))``,
        where ``dx``/``dy`` are centre offsets and widths are ``x2 - x1``.
    """
    wx, wy, ww, wh = _weights(weights)
    boxes, anchors = _pair("boxes_xyxy", boxes_xyxy, "anchors_xyxy", anchors_xyxy)
    dtype = boxes.dtype.type
    half = dtype(0.5)
    ex_w = anchors[..., 2] - anchors[..., 0]
    ex_h = anchors[..., 3] - anchors[..., 1]
    ex_cx = anchors[..., 0] + half * ex_w
    ex_cy = anchors[..., 1] + half * ex_h
    gt_w = boxes[..., 2] - boxes[..., 0]
    gt_h = boxes[..., 3] - boxes[..., 1]
    gt_cx = boxes[..., 0] + half * gt_w
    gt_cy = boxes[..., 1] + half * gt_h
    with np.errstate(divide="ignore", invalid="ignore"):
        deltas = [
            dtype(wx) * (gt_cx - ex_cx) / ex_w,
            dtype(wy) * (gt_cy - ex_cy) / ex_h,
            dtype(ww) * np.log(gt_w / ex_w),
            dtype(wh) * np.log(gt_h / ex_h),
        ]
    return np.stack(deltas, axis=-1)


def decode_torchvision(
    deltas: np.ndarray,
    anchors_xyxy: np.ndarray,
    weights: Sequence[float],
    clip: float = BBOX_XFORM_CLIP,
) -> np.ndarray:
    """torchvision ``BoxCoder.decode_single``: the boxes that ``deltas`` make of ``anchors_xyxy``.

    Args:
        deltas: ``(..., 4)`` regression output ``(dx, dy, dw, dh)``, e.g. a head's ``bbox_regression``.
        anchors_xyxy: anchors ``(..., 4)``, x1 y1 x2 y2 in pixels (broadcast against ``deltas``).
        weights: ``(wx, wy, ww, wh)`` as used for encoding.
        clip: the most ``dw / ww`` and ``dh / wh`` may be before ``exp`` (torchvision: ``log(1000 / 16)``).

    Returns:
        ``(..., 4)`` boxes x1 y1 x2 y2 in pixels (not clipped to the image).
    """
    wx, wy, ww, wh = _weights(weights)
    clip = check_positive_number("clip", clip)
    deltas, anchors = _pair("deltas", deltas, "anchors_xyxy", anchors_xyxy)
    dtype = deltas.dtype.type
    half = dtype(0.5)
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    ctr_x = anchors[..., 0] + half * widths
    ctr_y = anchors[..., 1] + half * heights
    dx = deltas[..., 0] / dtype(wx)
    dy = deltas[..., 1] / dtype(wy)
    dw = np.minimum(deltas[..., 2] / dtype(ww), dtype(clip))
    dh = np.minimum(deltas[..., 3] / dtype(wh), dtype(clip))
    pred_cx = dx * widths + ctr_x
    pred_cy = dy * heights + ctr_y
    half_w = half * (np.exp(dw) * widths)
    half_h = half * (np.exp(dh) * heights)
    return np.stack([pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h], axis=-1)


# ----------------------------------------------------------------------------- pytorch-ssd


def encode_ssd(
    boxes_cxcywh: np.ndarray,
    priors_cxcywh: np.ndarray,
    center_variance: float = 0.1,
    size_variance: float = 0.2,
) -> np.ndarray:
    """pytorch-ssd ``convert_boxes_to_locations``: the locations that turn priors into ``boxes_cxcywh``.

    Args:
        boxes_cxcywh: target boxes ``(..., 4)``, centre x, centre y, width, height (relative to the image).
        priors_cxcywh: priors ``(..., 4)`` in the same form (broadcast against ``boxes_cxcywh``).
        center_variance, size_variance: the config's variances (0.1 and 0.2 in every pytorch-ssd config).

    Returns:
        ``(..., 4)`` locations ``((c - c_p) / wh_p / center_variance, log(wh / wh_p) / size_variance)``.
    """
    cv = check_positive_number("center_variance", center_variance)
    sv = check_positive_number("size_variance", size_variance)
    boxes, priors = _pair("boxes_cxcywh", boxes_cxcywh, "priors_cxcywh", priors_cxcywh)
    dtype = boxes.dtype.type
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.concatenate([
            (boxes[..., :2] - priors[..., :2]) / priors[..., 2:] / dtype(cv),
            np.log(boxes[..., 2:] / priors[..., 2:]) / dtype(sv),
        ], axis=-1)


def decode_ssd(
    locations: np.ndarray,
    priors_cxcywh: np.ndarray,
    center_variance: float = 0.1,
    size_variance: float = 0.2,
) -> np.ndarray:
    """pytorch-ssd ``convert_locations_to_boxes``: the boxes that ``locations`` make of the priors.

    Args:
        locations: ``(..., 4)`` regression output, e.g. the head's ``locations`` ``(batch, N, 4)``.
        priors_cxcywh: priors ``(..., 4)``, centre x, centre y, width, height relative to the image
            (broadcast against ``locations``).
        center_variance, size_variance: the config's variances (0.1 and 0.2).

    Returns:
        ``(..., 4)`` boxes, centre x, centre y, width, height relative to the image
        (``cxcywh_to_xyxy`` gives corners); no clamping of the exponent.
    """
    cv = check_positive_number("center_variance", center_variance)
    sv = check_positive_number("size_variance", size_variance)
    locations, priors = _pair("locations", locations, "priors_cxcywh", priors_cxcywh)
    dtype = locations.dtype.type
    return np.concatenate([
        locations[..., :2] * dtype(cv) * priors[..., 2:] + priors[..., :2],
        np.exp(locations[..., 2:] * dtype(sv)) * priors[..., 2:],
    ], axis=-1)
