"""``verify_tflite`` for detectors: LiteRT detections vs the Keras detector's, image by image.

The Keras side is ``detection.inference_model`` with the file's own settings (score and IoU
thresholds and ``max_detections`` read from its ``TFLite_Detection_PostProcess`` op; a raw file
gets the inference model's defaults and its raw outputs are post-processed by
``detection.inference.postprocess_numpy`` with the same). LiteRT boxes (ymin, xmin, ymax, xmax
fractions) are turned into x1 y1 x2 y2 pixels and clipped to the image, as the Keras model's are.

Measured: per image, the share of confident detections (score >= ``agreement_score``) that the
other side reproduces (same class, IoU >= ``agreement_iou``), over the larger of the two counts
(1.0 for an image where neither side has one); and, given ground truth, COCO mAP@.5 and
mAP@[.5:.95] of both sides and their differences (``detection.metrics.coco_map``).

``tflite_detections`` gives the file's detections themselves (e.g. to draw them beside the Keras
model's) and ``file_settings`` the thresholds both sides use.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from keras_lightnets.compression.detectors import is_detector
from keras_lightnets.errors import InputError
from keras_lightnets.export.detectors import postprocess_options
from keras_lightnets.export.images import collect_images
from keras_lightnets.export.inputs import check_tflite_path, exportable
from keras_lightnets.export.litert import dequantize_output, open_interpreter, quantize_input
from keras_lightnets.validation import check_positive_int

DEFAULT_THRESHOLDS = {"score_threshold": 0.05, "iou_threshold": 0.5, "max_detections": 100}


@dataclass
class DetectionVerifyReport:
    """LiteRT file vs Keras detector on the same images.

    ``postprocess``: ``"regular"``, ``"fast"`` or ``"raw"`` (the file's ending);
    ``box_agreement``: mean over images of the share of confident detections the two sides share
    (see the module docstring); ``images_agreeing``: fraction of images where that share is 1;
    ``keras_map50`` / ``tflite_map50`` / ``map50_difference`` (LiteRT minus Keras) and the same
    for mAP@[.5:.95]: None without ground truth; ``keras_detections`` / ``tflite_detections``:
    confident detections over all images.
    """

    path: str
    samples: int
    postprocess: str
    input_dtype: str
    box_agreement: float
    images_agreeing: float
    agreement_iou: float
    agreement_score: float
    keras_detections: int
    tflite_detections: int
    keras_map50: float | None = None
    tflite_map50: float | None = None
    map50_difference: float | None = None
    keras_map: float | None = None
    tflite_map: float | None = None
    map_difference: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lite_outputs(interpreter: Any, images: np.ndarray) -> list[list[np.ndarray]]:
    """Per image, the file's outputs (dequantized float32, batch axis kept)."""
    [detail] = interpreter.get_input_details()
    if int(detail["shape"][0]) != 1:
        raise InputError(f"the file's input batch must be 1 to verify a detector; it is {int(detail['shape'][0])}")
    outputs = interpreter.get_output_details()
    results = []
    for image in images:
        interpreter.set_tensor(detail["index"], quantize_input(image[None], detail))
        interpreter.invoke()
        results.append([dequantize_output(interpreter.get_tensor(o["index"]), o) for o in outputs])
    return results


def _lite_detections(results: list[list[np.ndarray]], size: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    """``TFLite_Detection_PostProcess`` outputs (boxes, classes, scores, count) -> per-image dicts
    of x1 y1 x2 y2 pixel boxes (clipped), scores and int classes."""
    height, width = size
    scale = np.array([width, height, width, height], np.float32)
    detections = []
    for boxes, classes, scores, count in results:
        n = round(float(np.ravel(count)[0]))
        xyxy = boxes[0, :n][:, [1, 0, 3, 2]] * scale
        xyxy = np.minimum(np.maximum(xyxy, 0.0), scale)
        detections.append({"boxes": xyxy.astype(np.float64), "scores": scores[0, :n].astype(np.float64),
                           "classes": np.round(classes[0, :n]).astype(np.int64)})
    return detections


def _per_image(boxes, scores, classes, counts) -> list[dict[str, np.ndarray]]:
    return [{"boxes": np.asarray(boxes[i, :n], np.float64), "scores": np.asarray(scores[i, :n], np.float64),
             "classes": np.asarray(classes[i, :n], np.int64)} for i, n in enumerate(np.asarray(counts).tolist())]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, iou: float,
              score: float) -> tuple[float, int, int]:
    """``(share, confident in a, confident in b)`` for one image: detections of ``a`` with score >=
    ``score`` matched greedily (best score first) to unmatched ones of ``b`` of the same class with
    IoU >= ``iou``, over the larger confident count (1.0 when both have none)."""
    keep_a, keep_b = a["scores"] >= score, b["scores"] >= score
    boxes_a, classes_a = a["boxes"][keep_a], a["classes"][keep_a]
    boxes_b, classes_b = b["boxes"][keep_b], b["classes"][keep_b]
    order = np.argsort(-a["scores"][keep_a], kind="stable")
    free = np.ones(len(boxes_b), bool)
    matched = 0
    for i in order:
        candidates = free & (classes_b == classes_a[i])
        if not candidates.any():
            continue
        overlaps = np.where(candidates, _iou(boxes_a[i], boxes_b) if len(boxes_b) else 0.0, -1.0)
        j = int(np.argmax(overlaps))
        if overlaps[j] >= iou:
            free[j] = False
            matched += 1
    larger = max(len(boxes_a), len(boxes_b))
    return (1.0 if larger == 0 else matched / larger), len(boxes_a), len(boxes_b)


def _ground_truth(truth: Any, count: int) -> list[dict[str, np.ndarray]] | None:
    """Ground truth as ``metrics``' per-image dicts: a list of ``{"boxes", "classes"}`` dicts, an
    object with ``boxes`` / ``classes`` / ``counts`` arrays (``DigitScenes``, ``DetectionArrays``) or
    a ``(boxes, classes, counts)`` tuple; the first ``count`` images are used."""
    from keras_lightnets.detection import metrics

    if truth is None:
        return None
    if all(hasattr(truth, key) for key in ("boxes", "classes", "counts")):
        truth = (truth.boxes, truth.classes, truth.counts)
    if isinstance(truth, tuple) and len(truth) == 3:
        truth = metrics.ground_truth_from_arrays(*truth)
    if not isinstance(truth, list | tuple) or not all(isinstance(t, dict) for t in truth):
        raise InputError("`ground_truth` must be per-image dicts {'boxes', 'classes'}, an object with boxes/classes/"
                         f"counts arrays, or a (boxes, classes, counts) tuple; received {type(truth).__name__}")
    if len(truth) < count:
        raise InputError(f"`ground_truth` covers {len(truth)} images, fewer than the {count} verified")
    return list(truth[:count])


def file_settings(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(postprocess, thresholds)`` of a detector file: ``"regular"`` or ``"fast"`` and its
    ``TFLite_Detection_PostProcess`` op's ``score_threshold``, ``iou_threshold`` and
    ``max_detections``, or ``"raw"`` and ``DEFAULT_THRESHOLDS`` (what its raw outputs are
    post-processed with here). Reads the file, runs nothing."""
    options = postprocess_options(path)
    if options is None:
        return "raw", dict(DEFAULT_THRESHOLDS)
    thresholds = {"score_threshold": float(np.float32(options["nms_score_threshold"])),
                  "iou_threshold": float(np.float32(options["nms_iou_threshold"])),
                  "max_detections": int(options["max_detections"])}
    return ("regular" if options["use_regular_nms"] else "fast"), thresholds


def _file_detections(interpreter: Any, images: np.ndarray, model: Any, postprocess: str,
                     thresholds: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """The file's detections on ``images``, one dict per image (``tflite_detections``)."""
    from keras_lightnets.detection.inference import postprocess_numpy

    results = _lite_outputs(interpreter, images)
    if postprocess != "raw":
        return _lite_detections(results, tuple(int(v) for v in tuple(model.detector_info["input_shape"])[:2]))
    classes = np.concatenate([r[0] for r in results])
    deltas = np.concatenate([r[1] for r in results])
    if classes.shape[-1] == 4 and deltas.shape[-1] != 4:
        classes, deltas = deltas, classes
    return _per_image(*postprocess_numpy(classes, deltas, model.anchors, model.detector_info, **thresholds))


def tflite_detections(path: str | os.PathLike, model: Any, images: Any, *,
                      threads: int | None = None) -> list[dict[str, np.ndarray]]:
    """LiteRT's detections of a detector file (``to_tflite``, any ``postprocess``) on ``images``.

    Args:
        path: the ``.tflite`` file (input batch 1).
        model: the detector it was made from (its ``anchors`` and ``detector_info`` decode a raw
            file's outputs and give the input size).
        images: ``(N, H, W, C)`` as the detector takes them (preprocessed), float.
        threads: LiteRT threads.

    Returns ``N`` dicts ``{"boxes": float64 (n, 4) x1 y1 x2 y2 input pixels, clipped to the image,
    "scores": (n,), "classes": int64 (n,) 0-based foreground ids}``, as ``verify_tflite`` compares
    them: a post-processed file's own detections, a raw file's outputs through
    ``detection.inference.postprocess_numpy`` with ``DEFAULT_THRESHOLDS``.
    """
    path = check_tflite_path(path)
    if not is_detector(model):
        raise InputError("`model` must be the detector the file was made from (with `anchors` and `detector_info`); "
                         f"received {type(model).__name__}")
    model, images = exportable(model, images, what="tflite_detections")
    interpreter = open_interpreter(path, threads)
    [detail] = interpreter.get_input_details()
    pixels = collect_images(images, tuple(int(d) for d in detail["shape"][1:]), limit=None, name="images")
    postprocess, thresholds = file_settings(path)
    return _file_detections(interpreter, pixels, model, postprocess, thresholds)


def verify_detector(
    path: str | os.PathLike, model: Any, data: Any, *, ground_truth: Any = None, num_samples: int | None = None,
    threads: int | None = None, agreement_iou: float = 0.9, agreement_score: float = 0.5,
) -> DetectionVerifyReport:
    """Run the detector file with LiteRT and the Keras detector on the same images and compare.

    Args:
        path: a ``.tflite`` file of ``model`` (``to_tflite``, any ``postprocess``).
        model: the detector it was made from (outputs ``[classes, boxes]``, ``anchors``, ``detector_info``).
        data: images ``(N, H, W, C)`` as the detector takes them, or an iterable of batches.
        ground_truth: optional, for mAP (see ``_ground_truth``), classes 0-based foreground ids.
        num_samples: at most this many images.
        threads: LiteRT threads.
        agreement_iou, agreement_score: the box agreement's IoU and score thresholds, in (0, 1].
    """
    from keras_lightnets.detection import metrics
    from keras_lightnets.detection.inference import inference_model

    started = time.perf_counter()
    path = check_tflite_path(path)
    model, data = exportable(model, data, what="verify_tflite")
    for name, value in (("agreement_iou", agreement_iou), ("agreement_score", agreement_score)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
            raise InputError(f"`{name}` must be a number in (0, 1]; received {name}={value!r}")
    if num_samples is not None:
        num_samples = check_positive_int("num_samples", num_samples)
    interpreter = open_interpreter(path, threads)
    [detail] = interpreter.get_input_details()
    images = collect_images(data, tuple(int(d) for d in detail["shape"][1:]), limit=num_samples, name="data")
    truth = _ground_truth(ground_truth, len(images))
    postprocess, thresholds = file_settings(path)
    keras_model = inference_model(model, **thresholds)
    keras_detections = _per_image(*keras_model.predict(images, batch_size=16, verbose=0))
    lite_detections = _file_detections(interpreter, images, model, postprocess, thresholds)
    shares, keras_count, lite_count = [], 0, 0
    for k, t in zip(keras_detections, lite_detections, strict=True):
        share, n_keras, n_lite = agreement(k, t, iou=agreement_iou, score=agreement_score)
        shares.append(share)
        keras_count += n_keras
        lite_count += n_lite
    report = DetectionVerifyReport(
        path=path, samples=len(images), postprocess=postprocess, input_dtype=np.dtype(detail["dtype"]).name,
        box_agreement=float(np.mean(shares)), images_agreeing=float(np.mean(np.equal(shares, 1.0))),
        agreement_iou=float(agreement_iou), agreement_score=float(agreement_score),
        keras_detections=keras_count, tflite_detections=lite_count,
    )
    if truth is not None:
        num_classes = int(model.outputs[0].shape[-1]) - (1 if model.detector_info.get("background_class") == 0 else 0)
        keras_map = metrics.coco_map(truth, keras_detections, num_classes=num_classes)
        lite_map = metrics.coco_map(truth, lite_detections, num_classes=num_classes)
        report.keras_map50, report.tflite_map50 = float(keras_map["map50"]), float(lite_map["map50"])
        report.keras_map, report.tflite_map = float(keras_map["map"]), float(lite_map["map"])
        report.map50_difference = report.tflite_map50 - report.keras_map50
        report.map_difference = report.tflite_map - report.keras_map
    report.seconds = round(time.perf_counter() - started, 3)
    return report
