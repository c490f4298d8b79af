"""A detector's inference model: decoded boxes, per-class NMS, fixed-size outputs; and its NumPy reference.

``inference_model(detector)`` takes a training model of ``detection.SSDLite`` /
``detection.RetinaNet`` (or any model with the same contract: outputs ``[classes, boxes]``,
attributes ``anchors`` and ``detector_info`` with the ``builders.DECODING_KEYS``) and adds, on the
same inputs and sharing every layer and weight, the package's post-processing layers:

* ``ClassScores``: logits ``(B, N, C)`` -> foreground scores ``(B, N, K)`` (softmax without the
  background column, or sigmoid);
* ``DecodeBoxes``: deltas ``(B, N, 4)`` -> boxes x1 y1 x2 y2 in input pixels, clipped to the
  image (as torchvision's ``postprocess_detections``; pytorch-ssd does not clip, which only
  changes boxes that cross the border); the anchors are the layer's weight;
* ``NonMaxSuppression``: per-class greedy NMS (IoU ``> iou_threshold`` suppresses), at most
  ``candidates_per_class`` rows per class before it, scores ``> score_threshold``.

The outputs, in this order and with the TF Object Detection API's names:

=========================  ===========================================================
``detection_boxes``        float32 ``(B, D, 4)`` x1 y1 x2 y2 in input pixels (``D = max_detections``)
``detection_scores``       float32 ``(B, D)``, descending
``detection_classes``      int32 ``(B, D)``, the 0-based foreground class (the column of the
                           class logits less one for softmax heads with background column 0)
``num_detections``         int32 ``(B,)``: rows past it hold boxes 0, scores 0, classes -1
=========================  ===========================================================

Equal scores are ordered by class, then by anchor row. ``postprocess_numpy`` computes the same
in NumPy from the raw outputs (``non_max_suppression_numpy`` is the NMS alone, equal to the
layer bit for bit on the same boxes and scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_lightnets import _backend
from keras_lightnets.detection import box_coding as coding
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layers.mixins import (
    ANCHOR_FORMATS,
    BOX_CODINGS,
    SCORE_FUNCTIONS,
    check_iou_threshold,
    check_score_threshold,
)
from keras_lightnets.validation import check_choice, check_positive_int, is_int

OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
# Pre-NMS rows per class when `candidates_per_class` is None: torchvision's SSD `topk_candidates`
# (per class there too) and RetinaNet's (per level over every class there; per class here).
DEFAULT_CANDIDATES = {"softmax": 400, "sigmoid": 1000}
_KEYS = ("score", "background_class", "box_coding", "anchor_format", "input_shape")


def decoding_settings(info: Any) -> dict[str, Any]:
    """The post-processing settings of a ``detector_info``: ``score``, ``background_class``,
    ``box_coding``, ``box_weights`` / ``variances``, ``anchor_format`` and ``image_size``
    (``(height, width)`` from ``input_shape``). ``InputError`` names a missing or bad entry."""
    if not isinstance(info, dict) or any(key not in info for key in _KEYS):
        missing = [key for key in _KEYS if not isinstance(info, dict) or key not in info]
        raise InputError(f"`detector_info` must be a dict with the keys {', '.join(_KEYS)} (builders.DECODING_KEYS "
                         f"and input_shape); missing: {', '.join(missing)}")
    check_choice("detector_info['score']", info["score"], SCORE_FUNCTIONS)
    check_choice("detector_info['box_coding']", info["box_coding"], BOX_CODINGS)
    check_choice("detector_info['anchor_format']", info["anchor_format"], ANCHOR_FORMATS)
    background = info["background_class"]
    if background is not None and (not is_int(background) or background < 0):
        raise InputError("`detector_info['background_class']` must be None or an int >= 0; "
                         f"received {background!r}")
    shape = info["input_shape"]
    if isinstance(shape, str | bytes) or not isinstance(shape, list | tuple) or len(shape) != 3 \
            or not all(is_int(v) and v >= 1 for v in shape[:2]):
        raise InputError(f"`detector_info['input_shape']` must be (height, width, channels); received {shape!r}")
    torchvision = info["box_coding"] == "torchvision"
    return {
        "score": info["score"], "background_class": None if background is None else int(background),
        "box_coding": info["box_coding"], "anchor_format": info["anchor_format"],
        "box_weights": tuple(info.get("box_weights") or ()) if torchvision else None,
        "variances": None if torchvision else tuple(info.get("variances") or ()),
        "image_size": (int(shape[0]), int(shape[1])),
    }


def _candidates(candidates_per_class, score: str) -> int:
    if candidates_per_class is None:
        return DEFAULT_CANDIDATES[score]
    return check_positive_int("candidates_per_class", candidates_per_class)


def _anchors(anchors: Any, rows: int | None = None) -> np.ndarray:
    array = np.asarray(anchors) if anchors is not None else np.zeros((0,))
    if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "iuf" or (rows is not None
                                                                                    and len(array) != rows):
        expected = f"({rows}, 4)" if rows is not None else "(N, 4)"
        raise InputError(f"`anchors` must be a numeric array of shape {expected}, one row per output row; "
                         f"received shape {array.shape}")
    return array.astype(np.float32)


def inference_model(detector: Any, *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                    max_detections: int = 100, candidates_per_class: int | None = None, name: str | None = None):
    """The inference model of ``detector``: same inputs and flavour, outputs the detections.

    Args:
        detector: a Functional model with outputs ``[classes (B, N, C) logits, boxes (B, N, 4) deltas]``
            and the attributes ``anchors`` (``(N, 4)``) and ``detector_info`` (``builders`` module
            docstring), as ``detection.SSDLite`` / ``RetinaNet`` return. Its layers are shared.
        score_threshold: keep scores ``> score_threshold``, in ``[0, 1)``.
        iou_threshold: suppress a box whose IoU with a better kept box of its class is
            ``> iou_threshold``, in ``(0, 1]``.
        max_detections: ``D``, the rows per image (at least 1).
        candidates_per_class: the best rows per class that enter NMS; ``None``: 400 for softmax
            heads (torchvision SSD's ``topk_candidates``), 1000 for sigmoid heads (RetinaNet's,
            per level over all classes there).
        name: the model's name (default: the detector's, plus ``"_inference"``).

    Returns:
        A model of ``detector``'s flavour with outputs ``[detection_boxes (B, D, 4) float32 pixels,
        detection_scores (B, D) float32, detection_classes (B, D) int32, num_detections (B,) int32]``
        (see the module docstring), carrying ``anchors`` and ``detector_info`` too.

    ``errors.InputError`` for a model without that contract or a bad argument.
    """
    if not hasattr(detector, "anchors") or not hasattr(detector, "detector_info"):
        raise InputError("`detector` must be a detector model with `anchors` and `detector_info` attributes "
                         "(detection.SSDLite / detection.RetinaNet); received "
                         f"{type(detector).__name__} without them")
    score_threshold = check_score_threshold(score_threshold)
    iou_threshold = check_iou_threshold(iou_threshold)
    max_detections = check_positive_int("max_detections", max_detections)
    settings = decoding_settings(detector.detector_info)
    candidates = _candidates(candidates_per_class, settings["score"])
    try:
        flavour = _backend.flavour_of(detector)
    except TypeError:
        raise InputError(f"`detector` must be a Keras model; received {type(detector).__name__}") from None
    outputs = list(getattr(detector, "outputs", None) or [])
    if len(outputs) != 2 or len(outputs[0].shape) != 3 or len(outputs[1].shape) != 3 \
            or outputs[1].shape[-1] != 4 or outputs[0].shape[1] != outputs[1].shape[1]:
        shapes = [tuple(o.shape) for o in outputs]
        raise InputError("`detector` must have the outputs [classes (batch, N, classes), boxes (batch, N, 4)]; "
                         f"received output shapes {shapes}")
    anchors = _anchors(detector.anchors, outputs[0].shape[1])
    with _backend.use_flavour(flavour):
        keras = _backend.keras_module()
        classes, deltas = outputs
        scores = get_layer_class("ClassScores")(
            score=settings["score"], background_class=settings["background_class"], name="class_scores")(classes)
        boxes = get_layer_class("DecodeBoxes")(
            box_coding=settings["box_coding"], box_weights=settings["box_weights"], variances=settings["variances"],
            anchor_format=settings["anchor_format"], image_size=settings["image_size"], clip=True, anchors=anchors,
            name="decode_boxes")(deltas)
        detections = get_layer_class("NonMaxSuppression")(
            score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
            candidates_per_class=candidates, name="non_max_suppression")([boxes, scores])
        named = [keras.layers.Identity(name=n)(t) for n, t in zip(OUTPUT_NAMES, detections, strict=True)]
        model = keras.Model(detector.inputs, named, name=name or f"{detector.name}_inference")
    # Plain attributes, as the builders set them (not tracked by Keras, not saved in files).
    object.__setattr__(model, "anchors", detector.anchors)
    object.__setattr__(model, "detector_info", detector.detector_info)
    return model


# --------------------------------------------------------------------------- NumPy reference


def class_scores_numpy(classes: np.ndarray, score: str, background_class: int | None) -> np.ndarray:
    """``ClassScores`` in NumPy (float32): ``(B, N, C)`` logits -> ``(B, N, K)`` foreground scores."""
    check_choice("score", score, SCORE_FUNCTIONS)
    x = np.asarray(classes, dtype=np.float32)
    if score == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        scores = e / e.sum(axis=-1, keepdims=True)
    else:
        scores = np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
    if background_class is None:
        return scores
    return np.delete(scores, background_class, axis=-1)


def decode_boxes_numpy(deltas: np.ndarray, anchors: np.ndarray, *, box_coding: str, anchor_format: str,
                       image_size: tuple[int, int], box_weights=None, variances=None,
                       clip: bool = True) -> np.ndarray:
    """``DecodeBoxes`` in NumPy: ``box_coding.decode_torchvision`` / ``decode_ssd`` on anchors in
    the coding's own format, boxes ``(..., 4)`` x1 y1 x2 y2 in pixels (float32), clipped to
    ``image_size`` = ``(height, width)`` when ``clip``."""
    check_choice("box_coding", box_coding, BOX_CODINGS)
    check_choice("anchor_format", anchor_format, ANCHOR_FORMATS)
    height, width = image_size
    size = np.array([width, height, width, height], dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    anchors = np.asarray(anchors, dtype=np.float32)
    if box_coding == "torchvision":
        if anchor_format == "cxcywh_relative":
            anchors = _cxcywh_to_xyxy(anchors) * size
        boxes = coding.decode_torchvision(deltas, anchors, box_weights)
    else:
        if anchor_format == "xyxy_pixels":
            anchors = coding.xyxy_to_cxcywh(anchors) / size
        center_variance, size_variance = variances
        boxes = _cxcywh_to_xyxy(coding.decode_ssd(deltas, anchors, center_variance, size_variance)) * size
    if clip:
        boxes = np.minimum(np.maximum(boxes, np.float32(0.0)), size)
    return boxes.astype(np.float32, copy=False)


def _cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``box_coding.cxcywh_to_xyxy`` keeping float32 (it already does for float32 input)."""
    return coding.cxcywh_to_xyxy(boxes).astype(np.float32, copy=False)


def non_max_suppression_numpy(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float = 0.05,
                              iou_threshold: float = 0.5, max_detections: int = 100,
                              candidates_per_class: int | None = 400
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``NonMaxSuppression`` in NumPy, one image and one class at a time (float32 arithmetic).

    Args:
        boxes: ``(B, N, 4)`` x1 y1 x2 y2; scores: ``(B, N, K)``; the other arguments as the layer's.

    Returns:
        ``(boxes (B, D, 4) float32, scores (B, D) float32, classes (B, D) int32, count (B,) int32)``:
        per image the kept rows by score descending (equal scores: lower class, then lower row),
        padded with boxes 0, scores 0, classes -1.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    batch, rows, classes = scores.shape
    candidates = rows if candidates_per_class is None else min(candidates_per_class, rows)
    score_min, iou_max = np.float32(score_threshold), np.float32(iou_threshold)
    out_boxes = np.zeros((batch, max_detections, 4), np.float32)
    out_scores = np.zeros((batch, max_detections), np.float32)
    out_classes = np.full((batch, max_detections), -1, np.int32)
    count = np.zeros((batch,), np.int32)
    for b in range(batch):
        found = []  # (score, class, rank, box)
        for k in range(classes):
            order = np.argsort(-scores[b, :, k], kind="stable")[:candidates]
            best, chosen = scores[b, order, k], boxes[b, order]
            x1, y1, x2, y2 = chosen.T
            area = (x2 - x1) * (y2 - y1)
            suppressed = np.zeros(candidates, bool)
            for i in range(candidates):
                if not best[i] > score_min:
                    break  # the rest are lower
                if suppressed[i]:
                    continue
                found.append((best[i], k, i, chosen[i]))
                width = np.maximum(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), np.float32(0.0))
                height = np.maximum(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), np.float32(0.0))
                inter = width * height
                with np.errstate(divide="ignore", invalid="ignore"):
                    overlap = inter / (area[i] + area - inter) > iou_max
                suppressed |= overlap & (np.arange(candidates) > i)
        found.sort(key=lambda d: (-d[0], d[1], d[2]))
        found = found[:max_detections]
        count[b] = len(found)
        for j, (score, k, _, box) in enumerate(found):
            out_boxes[b, j], out_scores[b, j], out_classes[b, j] = box, score, k
    return out_boxes, out_scores, out_classes, count


def postprocess_numpy(classes: np.ndarray, boxes: np.ndarray, anchors: np.ndarray, info: dict[str, Any], *,
                      score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100,
                      candidates_per_class: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What ``inference_model`` computes, in NumPy, from a detector's raw outputs.

    Args:
        classes: ``(B, N, C)`` logits; boxes: ``(B, N, 4)`` deltas; anchors: ``(N, 4)``; info: the
            detector's ``detector_info``; the rest as ``inference_model``'s.

    Returns:
        ``(boxes (B, D, 4), scores (B, D), classes (B, D) int32, count (B,) int32)``, as the model's outputs.
    """
    score_threshold = check_score_threshold(score_threshold)
    iou_threshold = check_iou_threshold(iou_threshold)
    max_detections = check_positive_int("max_detections", max_detections)
    settings = decoding_settings(info)
    candidates = _candidates(candidates_per_class, settings["score"])
    scores = class_scores_numpy(classes, settings["score"], settings["background_class"])
    decoded = decode_boxes_numpy(
        boxes, _anchors(anchors, np.shape(boxes)[1]), box_coding=settings["box_coding"],
        anchor_format=settings["anchor_format"], image_size=settings["image_size"],
        box_weights=settings["box_weights"], variances=settings["variances"], clip=True,
    )
    return non_max_suppression_numpy(decoded, scores, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                     max_detections=max_detections, candidates_per_class=candidates)
