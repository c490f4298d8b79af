"""``verify_tflite``: run a ``.tflite`` file with LiteRT and its Keras model on the same images
and compare their outputs (and, given labels, their top-1 accuracy).

Images are what the model takes, channels-last ``(N, H, W, C)``; int8 files get them
quantized with the input's scale and zero point, and their outputs dequantized, so both
sides are compared as float32.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from keras_lightnets.compression.detectors import is_detector
from keras_lightnets.export.images import check_labels, collect_images_and_labels
from keras_lightnets.export.inputs import check_tflite_path, exportable
from keras_lightnets.export.litert import dequantize_output, open_interpreter, quantize_input
from keras_lightnets.export.reports import VerifyReport
from keras_lightnets.export.verify_detection import DetectionVerifyReport, verify_detector
from keras_lightnets.validation import check_positive_int


def _run_tflite(interpreter: Any, images: np.ndarray) -> list[np.ndarray]:
    """Every output (dequantized, float32) for ``images``, fed in batches of the file's static batch."""
    [detail] = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    batch = int(detail["shape"][0]) or 1
    collected: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        interpreter.set_tensor(detail["index"], quantize_input(chunk, detail))
        interpreter.invoke()
        for out, store in zip(outputs, collected, strict=True):
            store.append(dequantize_output(interpreter.get_tensor(out["index"]), out)[: batch - pad])
    return [np.concatenate(parts) for parts in collected]


def _run_keras(model: Any, images: np.ndarray, chunk: int = 32) -> list[np.ndarray]:
    """Every output of ``model`` (inference mode) for ``images`` as float32, ``chunk`` images per call."""
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(images), chunk):
        result = model(images[start:start + chunk], training=False)
        result = list(result.values()) if isinstance(result, dict) else result
        result = result if isinstance(result, list | tuple) else [result]
        if not parts:
            parts = [[] for _ in result]
        for store, value in zip(parts, result, strict=True):
            store.append(np.asarray(value, dtype=np.float32))
    return [np.concatenate(p) for p in parts]


def _pair_outputs(keras_out: list[np.ndarray], lite_out: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Match outputs by shape (TFLite may reorder the outputs of multi-output models)."""
    if len(keras_out) != len(lite_out):
        raise ValueError(f"the model has {len(keras_out)} outputs but the file has {len(lite_out)}")
    remaining = list(lite_out)
    pairs = []
    for k in keras_out:
        match = next((i for i, t in enumerate(remaining) if t.shape == k.shape), None)
        if match is None:
            raise ValueError(f"no output of the file has the shape {k.shape} of a model output")
        pairs.append((k, remaining.pop(match)))
    return pairs


def _accuracy(scores: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float(np.mean(np.argmax(scores, axis=-1) == labels))


def verify_tflite(
    path: str | os.PathLike, model: Any, data: Any, *, labels: Any = None, num_samples: int | None = None,
    threads: int | None = None, ground_truth: Any = None, agreement_iou: float | None = None,
    agreement_score: float | None = None,
) -> VerifyReport | DetectionVerifyReport:
    """Run the file with LiteRT image by image and compare with ``model`` on the same images.

    ``data``: what the model takes, ``(N, H, W, C)``, or an iterable of batches or
    single images, e.g. a ``tf.data.Dataset`` of ``(images, labels)`` (batched or
    not), matching the file's input size; int8 files get it quantized with the
    input's scale and zero point and their outputs dequantized. ``labels``: int
    class indices ``(N,)`` for the accuracy of both; by default the labels ``data``
    carries (``(images, labels)`` pairs), if any. ``num_samples``: use at most this
    many images.

    For a detector (``keras_lightnets.detection``; a file of ``to_tflite`` with any
    ``postprocess``) it returns ``export.verify_detection``'s ``DetectionVerifyReport``: the
    per-image box agreement and, given ``ground_truth`` (per-image ``{"boxes", "classes"}`` or an
    object with ``boxes`` / ``classes`` / ``counts``), the mAP of each side and their difference;
    ``agreement_iou`` (0.9) and ``agreement_score`` (0.5) set what counts as the same box.
    """
    options = {k: v for k, v in (("agreement_iou", agreement_iou), ("agreement_score", agreement_score))
               if v is not None}
    if is_detector(model):
        if labels is not None:
            raise ValueError("`labels` are class indices for classifiers; pass a detector's boxes and classes as "
                             "`ground_truth`")
        return verify_detector(path, model, data, ground_truth=ground_truth, num_samples=num_samples,
                               threads=threads, **options)
    if ground_truth is not None or options:
        raise ValueError("`ground_truth`, `agreement_iou` and `agreement_score` apply to detectors only; pass a "
                         "classifier's class indices as `labels`")
    started = time.perf_counter()
    path = check_tflite_path(path)
    model, data = exportable(model, data, what="verify_tflite")
    if num_samples is not None:
        num_samples = check_positive_int("num_samples", num_samples)
    interpreter = open_interpreter(path, threads)
    [detail] = interpreter.get_input_details()
    images, carried = collect_images_and_labels(data, tuple(int(d) for d in detail["shape"][1:]), limit=num_samples,
                                                name="data")
    labels = check_labels(carried if labels is None else labels, len(images))
    pairs = _pair_outputs(_run_keras(model, images), _run_tflite(interpreter, images))
    diffs = np.concatenate([np.abs(k - t).ravel() for k, t in pairs])
    keras_first, lite_first = pairs[0]
    classifier = keras_first.ndim == 2 and keras_first.shape[1] > 1
    return VerifyReport(
        path=path, samples=len(images), input_dtype=np.dtype(detail["dtype"]).name,
        output_dtype=np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
        max_abs_diff=float(diffs.max()), mean_abs_diff=float(diffs.mean()),
        top1_agreement=float(np.mean(keras_first.argmax(-1) == lite_first.argmax(-1))) if classifier else None,
        keras_accuracy=_accuracy(keras_first, labels) if classifier else None,
        tflite_accuracy=_accuracy(lite_first, labels) if classifier else None,
        seconds=round(time.perf_counter() - started, 3),
    )
