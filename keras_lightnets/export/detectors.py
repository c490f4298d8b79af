"""Detectors to TFLite: raw heads, or heads plus TFLite's built-in ``TFLite_Detection_PostProcess``.

A detector (``detection.SSD`` / ``SSDLite`` / ``RetinaNet`` / a preset twin, or a pruned or QAT
copy of one: outputs ``[classes (B, N, C), boxes (B, N, 4)]`` and the attributes ``anchors`` and
``detector_info``) exports in one of the ``POSTPROCESS_MODES``:

* ``"regular"`` / ``"fast"``: the file ends with ``TFLite_Detection_PostProcess`` (a custom op
  every LiteRT build registers; regular: per-class NMS, ``detections_per_class`` boxes per class
  then the best ``max_detections``; fast: one class-agnostic NMS over each anchor's best class).
  Before it, as ops of the file: the score function (``LOGISTIC`` for sigmoid heads, ``SOFTMAX``
  for softmax heads, whose background column 0 the op skips) and a ``GATHER`` putting the
  deltas in the op's ``(ty, tx, th, tw)`` order. The anchors are a constant input of the op in
  its convention (``cy, cx, h, w`` as fractions of the image) and the box coder's scales are its
  attributes (torchvision weights ``(wx, wy, ww, wh)`` -> ``x_scale = wx``...; pytorch-ssd
  variances -> ``1 / variance``). In ``int8`` files everything up to the op is int8: the only
  float ops are the two ``DEQUANTIZE`` feeding it and the op itself.

  Outputs, in this order (the TF Object Detection API's, which the LiteRT/Android/iOS detection
  samples read by index), all float32:

  ======================  ============  ==================================================
  ``detection_boxes``     ``(1, D, 4)``  ymin, xmin, ymax, xmax as fractions of the image
                                         (not clipped)
  ``detection_classes``   ``(1, D)``     0-based foreground class (as a float)
  ``detection_scores``    ``(1, D)``     descending
  ``num_detections``      ``(1,)``       valid rows
  ======================  ============  ==================================================

  ``D = max_detections``. Unlike ``detection.inference_model`` the op does not clip boxes to the
  image nor cap the width/height deltas (torchvision's ``BBOX_XFORM_CLIP``).

* ``"raw"``: the detector's own outputs (class logits, box deltas) as for a classifier (int8
  outputs in ``int8`` files), for users with their own decoding and NMS.

The conversion freezes the detector's weights into constants (as the classifier path does)
and then traces the post-processing as a ``tf.function`` with ``experimental_implements``, which
the converter replaces with the custom op (it needs ``allow_custom_ops`` and a lowering through
a SavedModel, which is cheap once no variable is left).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.export.reports import ConversionError
from keras_lightnets.layers.mixins import check_iou_threshold, check_score_threshold
from keras_lightnets.validation import check_choice, check_positive_int

POSTPROCESS_MODES = ("regular", "fast", "raw")
POSTPROCESS_OP = "CUSTOM:TFLite_Detection_PostProcess"
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
# Ops an int8 post-processed file may hold with float tensors: the bridge into the op, and the op.
POSTPROCESS_FLOAT_OPS = frozenset({"DEQUANTIZE", POSTPROCESS_OP})
MAX_FILE_BYTES = 1 << 30  # a .tflite file read whole to find its post-processing op
DELTA_ORDER = (1, 0, 3, 2)  # (dx, dy, dw, dh) -> the op's (ty, tx, th, tw)


@dataclass(frozen=True)
class DetectionExport:
    """How a detector's file ends (see the module docstring).

    ``num_classes``: foreground classes ``K`` (the op's ``num_classes``); ``scales``: the op's
    ``(y_scale, x_scale, h_scale, w_scale)``; ``anchors``: float32 ``(N, 4)`` cy, cx, h, w as
    fractions of the image; ``score``: ``"sigmoid"`` or ``"softmax"``.
    """

    postprocess: str
    score_threshold: float
    iou_threshold: float
    max_detections: int
    detections_per_class: int
    num_classes: int
    score: str
    scales: tuple[float, float, float, float]
    anchors: np.ndarray

    @property
    def raw(self) -> bool:
        return self.postprocess == "raw"

    def implements(self) -> str:
        """The ``experimental_implements`` text the converter turns into the op's attributes."""
        y, x, h, w = self.scales
        attributes = [
            ("max_detections", "i", self.max_detections), ("max_classes_per_detection", "i", 1),
            ("detections_per_class", "i", self.detections_per_class),
            ("use_regular_nms", "b", self.postprocess == "regular"),
            ("nms_score_threshold", "f", self.score_threshold), ("nms_iou_threshold", "f", self.iou_threshold),
            ("y_scale", "f", y), ("x_scale", "f", x), ("h_scale", "f", h), ("w_scale", "f", w),
            ("num_classes", "i", self.num_classes),
        ]
        def text_format(kind: str, value: Any) -> str:
            return {"b": lambda v: str(bool(v)).lower(), "i": lambda v: str(int(v)), "f": lambda v: repr(float(v))}[
                kind](value)

        text = " ".join(f'attr {{ key: "{key}" value {{ {kind}: {text_format(kind, value)} }} }}'
                        for key, kind, value in attributes)
        return f'name: "TFLite_Detection_PostProcess" {text}'

    def as_dict(self) -> dict[str, Any]:
        """The settings for reports (anchors as their count)."""
        data = {k: v for k, v in asdict(self).items() if k != "anchors"}
        return {**data, "scales": list(self.scales), "anchors": len(self.anchors)}


def tflite_anchors(anchors: Any, info: dict[str, Any]) -> np.ndarray:
    """``anchors`` of a detector (``detector_info["anchor_format"]``: x1 y1 x2 y2 pixels or
    cx cy w h fractions) as the op's float32 ``(N, 4)`` cy, cx, h, w fractions of the image."""
    from keras_lightnets.detection.inference import decoding_settings

    settings = decoding_settings(info)
    array = np.asarray(anchors, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"the detector's `anchors` must be (N, 4); received shape {array.shape}")
    if settings["anchor_format"] == "xyxy_pixels":
        height, width = settings["image_size"]
        cx, cy = (array[:, 0] + array[:, 2]) / 2 / width, (array[:, 1] + array[:, 3]) / 2 / height
        w, h = (array[:, 2] - array[:, 0]) / width, (array[:, 3] - array[:, 1]) / height
    else:
        cx, cy, w, h = array.T
    return np.stack([cy, cx, h, w], axis=1).astype(np.float32)


def _scales(settings: dict[str, Any]) -> tuple[float, float, float, float]:
    if settings["box_coding"] == "torchvision":
        wx, wy, ww, wh = (float(v) for v in settings["box_weights"])
        return wy, wx, wh, ww
    center, size = (float(v) for v in settings["variances"])
    return 1.0 / center, 1.0 / center, 1.0 / size, 1.0 / size


def detection_export(model: Any, postprocess: Any, *, score_threshold: Any = 0.05, iou_threshold: Any = 0.5,
                     max_detections: Any = 100, detections_per_class: Any = 100) -> DetectionExport:
    """Check the detection arguments of ``to_tflite`` against ``model``'s ``detector_info``.

    ``score_threshold`` in ``[0, 1)`` (scores must be above it), ``iou_threshold`` in ``(0, 1]``,
    ``max_detections`` and ``detections_per_class`` ints >= 1. ``InputError`` names a bad one.
    """
    from keras_lightnets.detection.inference import decoding_settings

    check_choice("postprocess", postprocess, POSTPROCESS_MODES)
    score_threshold = check_score_threshold(score_threshold)
    iou_threshold = check_iou_threshold(iou_threshold)
    max_detections = check_positive_int("max_detections", max_detections)
    detections_per_class = check_positive_int("detections_per_class", detections_per_class)
    info = model.detector_info
    settings = decoding_settings(info)
    columns = int(model.outputs[0].shape[-1])
    background = settings["background_class"]
    if background not in (None, 0):
        raise InputError(f"TFLite_Detection_PostProcess needs the background in column 0 (or none); the detector's "
                         f"background_class is {background}")
    return DetectionExport(
        postprocess=postprocess, score_threshold=score_threshold, iou_threshold=iou_threshold,
        max_detections=max_detections, detections_per_class=detections_per_class,
        num_classes=columns - (1 if background == 0 else 0), score=settings["score"], scales=_scales(settings),
        anchors=tflite_anchors(model.anchors, info),
    )


def postprocess_converter(model: Any, spec: Any, export: DetectionExport):
    """A ``TFLiteConverter`` for ``model`` (traced on ``spec``, weights frozen) followed by the
    score function, the delta reordering and ``TFLite_Detection_PostProcess``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    heads = tf.function(lambda images: model(images, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(heads)
    anchors = tf.constant(export.anchors)

    @tf.function(experimental_implements=export.implements())
    def detection_postprocess(box_encodings, class_predictions, anchor_boxes):
        # A placeholder body: the converter replaces this function with the op.
        del box_encodings, class_predictions, anchor_boxes
        zero = tf.constant(0.0)
        return zero, zero, zero, zero

    def detect(images):
        classes, deltas = frozen(images)
        scores = tf.nn.sigmoid(classes) if export.score == "sigmoid" else tf.nn.softmax(classes)
        ordered = tf.gather(deltas, list(DELTA_ORDER), axis=-1)
        return dict(zip(OUTPUT_NAMES, detection_postprocess(ordered, scores, anchors), strict=True))

    function = tf.function(detect, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.allow_custom_ops = True
    # Through a SavedModel the converter keeps the annotated function (and finds no variable left).
    converter.experimental_lower_to_saved_model = True
    return converter


def order_outputs(content: bytes) -> bytes:
    """The file with its subgraph outputs in the op's order (``OUTPUT_NAMES``): the converter
    lists the function's outputs in an order of its own."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    codes = model.operatorCodes
    graph = model.subgraphs[0]
    ops = [op for op in graph.operators
           if (codes[op.opcodeIndex].customCode or b"") == b"TFLite_Detection_PostProcess"]
    if len(ops) != 1:
        raise ConversionError(f"the converter left {len(ops)} TFLite_Detection_PostProcess ops (expected one)")
    outputs = [int(t) for t in ops[0].outputs]
    if sorted(outputs) != sorted(int(t) for t in graph.outputs):
        raise ConversionError("the file's outputs are not the TFLite_Detection_PostProcess op's outputs")
    graph.outputs = np.asarray(outputs, dtype=np.int32)
    for tensor_index, name in zip(outputs, OUTPUT_NAMES, strict=True):
        graph.tensors[tensor_index].name = name.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def detection_metadata(model: Any, export: Any = None, labels: Any = None) -> dict[str, Any]:
    """What an app needs beside the file: input size and normalisation, labels, outputs, anchors.

    ``export``: how the file was made: the ``ExportReport`` of ``to_tflite``, a ``DetectionExport``
    or None (the defaults, ``postprocess="regular"``). ``labels``: the foreground class names
    (``K`` of them) or None. ``anchors`` are listed in the op's convention (cy, cx, h, w
    fractions), rounded to 7 digits.
    """
    if export is None:
        export = detection_export(model, "regular")
    elif not isinstance(export, DetectionExport):
        settings = getattr(export, "detection", None)
        if not isinstance(settings, dict):
            raise InputError("`export` must be to_tflite's report for this detector, a DetectionExport or None; "
                             f"received {type(export).__name__}")
        keys = ("postprocess", "score_threshold", "iou_threshold", "max_detections", "detections_per_class")
        export = detection_export(model, **{k: settings[k] for k in keys})
    from keras_lightnets.training.detection import input_preprocessing

    names = None
    if labels is not None:
        names = [str(n) for n in labels]
        if len(names) != export.num_classes:
            raise InputError(f"`labels` must name the {export.num_classes} foreground classes; received "
                             f"{len(names)} names")
    info = model.detector_info
    height, width = (int(v) for v in tuple(info["input_shape"])[:2])
    try:
        preprocessing = input_preprocessing(model)
    except InputError:
        preprocessing = None  # a backbone outside the registry (a reference twin): the caller knows
    return {
        "task": "detection", "type": info.get("type"), "backbone": info.get("backbone"),
        "input": {"height": height, "width": width, "channels": int(tuple(info["input_shape"])[2]),
                  "preprocessing": preprocessing},
        "labels": names, "num_classes": export.num_classes,
        "outputs": list(OUTPUT_NAMES) if not export.raw else ["classes", "boxes"],
        "box_format": "ymin, xmin, ymax, xmax as fractions of the image" if not export.raw
        else "deltas against the anchors (see box_coding)",
        "box_coding": {"kind": info["box_coding"], "scales_yxhw": list(export.scales)},
        "score": export.score, "background_class": info.get("background_class"),
        "postprocess": export.as_dict(),
        "anchors_cychw": np.round(export.anchors.astype(np.float64), 7).tolist(),
    }


def postprocess_options(path: str | os.PathLike) -> dict[str, Any] | None:
    """The attributes of the file's ``TFLite_Detection_PostProcess`` op (``max_detections``,
    ``nms_score_threshold``, ``use_regular_nms``, scales, ...), or None for a file without it.
    Reads the flatbuffer with LiteRT's schema (nothing is run); at most ``MAX_FILE_BYTES``."""
    from flatbuffers import flexbuffers

    from keras_lightnets.export.litert import litert_module

    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise InputError(f"{os.fspath(path)!r} is {size} bytes, more than a .tflite file read here may be "
                         f"({MAX_FILE_BYTES})")
    with open(path, "rb") as f:
        content = f.read(MAX_FILE_BYTES)
    schema = litert_module("schema_py_generated")
    root = schema.Model.GetRootAs(content, 0)
    codes = [root.OperatorCodes(i).CustomCode() for i in range(root.OperatorCodesLength())]
    graph = root.Subgraphs(0)
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        if codes[op.OpcodeIndex()] == b"TFLite_Detection_PostProcess":
            options = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))
            return {key: (bool(v) if key == "use_regular_nms" else v) for key, v in options.items()}
    return None
