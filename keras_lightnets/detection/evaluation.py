"""A detector run over images and scored: its detections per image, COCO and VOC07 mAP as JSON-ready numbers.

``detector_inputs(images, preprocessing)`` scales ``[0, 255]`` pixels as a detector takes them.
``predict_detections(detector, images, preprocessing=...)`` runs ``inference.inference_model`` of a
training model (``SSDLite``, ``RetinaNet``, ``saving.load_detector``'s) and cuts its padded
outputs into per-image dicts (``metrics.detections_from_outputs``). ``score_detections(truth,
detections, class_names)`` computes ``metrics.coco_map`` and ``metrics.voc07_map`` (11-point,
IoU > 0.5, pytorch-ssd's box convention) and returns plain JSON data: NaN (a class or size range
without ground truth) becomes None, per-class figures are keyed by class name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_positive_int


def detector_inputs(images, preprocessing: str) -> np.ndarray:
    """``images`` as a detector takes them: float32 ``(N, H, W, 3)`` from RGB pixels in
    ``[0, 255]``, scaled as ``preprocessing`` says (a ``DetectorSpec.preprocessing``:
    ``"in_model"`` leaves them as they are; ``"tf"``, ``"torch"``, ``"bgr255"``:
    ``imagenet.preprocess_input``), e.g. for int8 calibration or ``verify_tflite``."""
    from keras_lightnets.imagenet import PREPROCESS_MODES, preprocess_input
    from keras_lightnets.validation import check_choice

    check_choice("preprocessing", preprocessing, tuple(PREPROCESS_MODES))
    pixels = np.asarray(images)
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) == 0:
        raise InputError(f"`images` must be (N, height, width, 3) pixels with N >= 1; received shape {pixels.shape}")
    return np.asarray(preprocess_input(pixels.astype(np.float32), mode=PREPROCESS_MODES[preprocessing]))


def predict_detections(detector, images, *, preprocessing: str = "in_model", batch_size: int = 16,
                       score_threshold: float = 0.05, iou_threshold: float = 0.5,
                       max_detections: int = 100) -> list[dict[str, np.ndarray]]:
    """The detections of ``detector`` on ``images``, one dict per image.

    Args:
        detector: a training model with ``anchors`` and ``detector_info`` (``inference_model``'s contract).
        images: ``(N, H, W, 3)`` RGB pixels in ``[0, 255]`` at the detector's input size.
        preprocessing: how pixels are scaled first (``"in_model"``: not at all; ``"tf"``, ``"torch"``,
            ``"bgr255"``: ``imagenet.preprocess_input``), e.g. ``detector.detector_spec.preprocessing``.
        batch_size: images per ``predict`` batch.
        score_threshold, iou_threshold, max_detections: ``inference_model``'s post-processing.

    Returns ``N`` dicts ``{"boxes": float64 (n, 4) x1 y1 x2 y2 input pixels, "scores": (n,),
    "classes": int64 (n,) 0-based foreground ids}``.
    """
    from keras_lightnets.detection import metrics
    from keras_lightnets.detection.inference import inference_model

    pixels = detector_inputs(images, preprocessing)
    batch_size = check_positive_int("batch_size", batch_size)
    model = inference_model(detector, score_threshold=score_threshold, iou_threshold=iou_threshold,
                            max_detections=max_detections)
    boxes, scores, classes, counts = model.predict(pixels, batch_size=batch_size, verbose=0)
    return metrics.detections_from_outputs(boxes, scores, classes, counts)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def score_detections(truth: Sequence[Mapping], detections: Sequence[Mapping],
                     class_names: Sequence[str]) -> dict[str, Any]:
    """COCO box mAP (``metrics.coco_map``) and VOC2007 mAP@.5 (``metrics.voc07_map``) as JSON data.

    Args:
        truth, detections: per-image dicts (``detection.metrics``' format), same images, same order.
        class_names: the 0-based classes' names (their count bounds the class ids).

    Returns ``{"coco": {<metrics.COCO_STATS>: float or None, "per_class_map": {name: AP or None},
    "per_class_map50": {...}}, "voc07": {"map": float or None, "per_class": {name: AP or None},
    "iou_threshold": 0.5}, "images": N, "boxes": ground-truth boxes, "detections": detections}``;
    None where there was nothing to measure (no ground truth of a class or size range).
    """
    from keras_lightnets.detection import metrics

    names = [str(n) for n in class_names]
    coco = metrics.coco_map(truth, detections, num_classes=len(names))
    voc = metrics.voc07_map(truth, detections, num_classes=len(names))
    coco_json: dict[str, Any] = {k: _number(coco[k]) for k in metrics.COCO_STATS}
    for key in ("per_class_map", "per_class_map50"):
        coco_json[key] = {name: _number(v) for name, v in zip(names, coco[key], strict=True)}
    return {
        "coco": coco_json,
        "voc07": {"map": _number(voc["map"]), "iou_threshold": voc["iou_threshold"],
                  "per_class": {name: _number(v) for name, v in zip(names, voc["per_class"], strict=True)}},
        "images": len(truth),
        "boxes": int(sum(len(t["classes"]) for t in truth)),
        "detections": int(sum(len(d["classes"]) for d in detections)),
    }


__all__ = ["detector_inputs", "predict_detections", "score_detections"]
