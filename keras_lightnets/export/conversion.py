"""``to_tflite``: convert a Keras model to a ``.tflite`` file, check it and write it atomically.

Quantization modes (``QUANTIZATION_MODES``):

===========  ===================================================================
``none``     float32 weights and activations
``float16``  float16 weights (dequantized to float32 at load), float32 compute
``dynamic``  int8 weights, activations quantized on the fly; float32 inputs/outputs
``int8``     int8 weights and activations, int8 inputs and outputs, no float op
             left (float models need ``representative_data``; QAT models carry
             their ranges and need none)
===========  ===================================================================

One call runs in phases: ``resolve_request`` checks every argument and gathers the
calibration images into an ``ExportRequest``; ``_flatbuffer`` traces and converts;
the result is described (``describe_tflite``), checked (``int8``: no float op left),
written (``files.write_bytes``) and reported (``ExportReport``). TensorFlow is
imported only by the conversion phase.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_lightnets.compression.detectors import is_detector
from keras_lightnets.export.benchmark import delegate_coverage
from keras_lightnets.export.describe import describe_tflite
from keras_lightnets.export.detectors import (
    POSTPROCESS_FLOAT_OPS,
    DetectionExport,
    detection_export,
    order_outputs,
    postprocess_converter,
)
from keras_lightnets.export.images import collect_images
from keras_lightnets.export.inputs import (
    check_output_path,
    check_quantization,
    exportable,
    is_qat_model,
    model_flavour,
    qat_per_channel,
    resolve_input_shape,
)
from keras_lightnets.export.reports import ConversionError, ExportReport, TFLiteSummary
from keras_lightnets.files import write_bytes
from keras_lightnets.layers import int8_graph
from keras_lightnets.validation import check_bool, check_positive_int

MAX_REPRESENTATIVE_SAMPLES = 100
BRIDGE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass(frozen=True)
class ExportRequest:
    """One ``to_tflite`` call after every check: what to convert, how, and where to.

    ``model``: a channels-last Keras 3 or tf_keras model; ``path``: absolute path of
    the file; ``input_shape``: ``(H, W, C)`` and ``input_dtype`` of the file's input
    ``(batch_size, H, W, C)``; ``samples``: calibration images ``(N, H, W, C)`` float32
    (``int8`` of a float model only, else None).
    """

    model: Any
    path: str
    quantization: str
    flavour: str
    qat: bool
    batch_size: int
    input_shape: tuple[int, int, int]
    input_dtype: str
    samples: np.ndarray | None
    allow_float_ops: bool
    per_channel: bool
    strip_names: bool
    detection: DetectionExport | None = None

    @property
    def postprocessed(self) -> bool:
        """The file ends with ``TFLite_Detection_PostProcess`` (float32 outputs)."""
        return self.detection is not None and not self.detection.raw

    @property
    def calibration_images(self) -> int:
        """Images the converter is fed: whole batches of ``samples`` (0 without calibration)."""
        return 0 if self.samples is None else len(self.samples) - len(self.samples) % self.batch_size


# --------------------------------------------------------------------------- phase 1: the request

def _check_mode(quantization: str, flavour: str, qat: bool, per_channel: Any, strip_names: Any) -> None:
    """The combinations of model kind and options that convert: QAT models to ``int8`` only
    (and as tf_keras models), ``per_channel=False`` for ``int8`` only."""
    if qat and quantization != "int8":
        raise ValueError(
            f"`model` is a quantization-aware (TFMOT QAT) model: it converts with quantization='int8' only "
            f"(its ranges are learned); received quantization={quantization!r}. Convert the float model it "
            "was made from for the other modes"
        )
    if flavour == "keras" and qat:
        raise ValueError("`model`: TFMOT QAT models must be tf_keras models")
    check_bool("per_channel", per_channel)
    check_bool("strip_names", strip_names)
    if not per_channel and quantization != "int8":
        raise ValueError(
            f"per_channel=False applies to quantization='int8' only; received quantization={quantization!r}")


def _qat_per_channel(model: Any, per_channel: bool) -> bool:
    """A QAT model's weights are quantized as ``quantize_aware(per_channel=...)`` chose:
    ``per_channel=False`` is refused for a per-channel one; returns the model's choice."""
    model_per_channel = qat_per_channel(model)
    if model_per_channel and not per_channel:
        raise ValueError(
            "per_channel=False: this quantization-aware model quantizes its kernels per channel, and its "
            "int8 file follows its quantizers; make it with compression.quantize_aware(..., per_channel=False)"
        )
    return model_per_channel


def _calibration_samples(
    representative_data: Any, shape: tuple[int, int, int], batch_size: int, num_samples: int,
) -> np.ndarray:
    """At most ``num_samples`` calibration images ``(N, H, W, C)``, at least one batch."""
    if representative_data is None:
        raise ValueError(
            "quantization='int8' of a float model needs `representative_data`: about 100 typical inputs, "
            f"a numpy array (N, {', '.join(map(str, shape))}) of what the model takes (e.g. float pixels) "
            "or an iterable of such batches (a QAT model needs none)"
        )
    samples = collect_images(representative_data, shape, limit=num_samples, name="representative_data")
    if len(samples) < batch_size:
        raise ValueError(f"`representative_data` has {len(samples)} images, fewer than batch_size={batch_size}")
    return samples


def resolve_request(
    model: Any, path: str | os.PathLike, quantization: str, representative_data: Any, *, batch_size: int,
    input_shape: Sequence[int] | None, num_samples: int, allow_float_ops: bool, per_channel: bool,
    strip_names: bool, detection: dict[str, Any] | None = None,
) -> ExportRequest:
    """Check every argument of ``to_tflite`` (the model first, the calibration data last) and gather
    the calibration images; no conversion work is done."""
    model, representative_data = exportable(model, representative_data, what="TFLite export")
    flavour = model_flavour(model)
    quantization = check_quantization(quantization)
    path = check_output_path(path)
    batch_size = check_positive_int("batch_size", batch_size)
    num_samples = check_positive_int("num_samples", num_samples)
    shape, dtype = resolve_input_shape(model, input_shape)
    qat = is_qat_model(model)
    _check_mode(quantization, flavour, qat, per_channel, strip_names)
    if qat:
        per_channel = _qat_per_channel(model, per_channel)
    export = _detection(model, detection or {}, batch_size)
    samples = None
    if quantization == "int8" and not qat:
        samples = _calibration_samples(representative_data, shape, batch_size, num_samples)
    return ExportRequest(
        model=model, path=path, quantization=quantization, flavour=flavour, qat=qat, batch_size=batch_size,
        input_shape=shape, input_dtype=dtype, samples=samples, allow_float_ops=allow_float_ops,
        per_channel=per_channel, strip_names=strip_names, detection=export,
    )


def _detection(model: Any, arguments: dict[str, Any], batch_size: int) -> DetectionExport | None:
    """The detection settings of a detector (``postprocess`` defaults to ``"regular"``); None for
    other models, which must not be given any."""
    given = {k: v for k, v in arguments.items() if v is not None}
    if not is_detector(model):
        if given:
            raise ValueError(f"{', '.join(f'`{k}`' for k in given)} apply to detectors only (models with "
                             "`anchors` and `detector_info`, from keras_lightnets.detection)")
        return None
    export = detection_export(model, **{"postprocess": "regular", **given})
    if not export.raw and batch_size != 1:
        raise ValueError(f"TFLite_Detection_PostProcess handles one image per invoke: batch_size must be 1 with "
                         f"postprocess={export.postprocess!r} (postprocess='raw' takes any); received {batch_size}")
    return export


# --------------------------------------------------------------------------- phase 2: conversion

def _converter(model: Any, shape: tuple[int, ...], dtype: str, batch_size: int):
    """Converter over a traced ``model(x, training=False)`` with a static ``(batch, H, W, C)`` input.

    One path for Keras 3, tf_keras and TFMOT QAT models: the concrete function's
    variables are frozen into constants (``experimental_lower_to_saved_model=False``).
    Lowered to a SavedModel instead, Keras 3 variables stay resource variables (int8
    calibration then fails on READ_VARIABLE), and tf_keras/QAT models give the same
    file as ``from_keras_model`` about ten times slower. The converter recognises
    QAT models by their FakeQuant ops.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((batch_size, *shape), tf.as_dtype(dtype), name="images")
    function = tf.function(lambda images: model(images, training=False), input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.experimental_lower_to_saved_model = False
    return converter


def _representative(samples: np.ndarray, batch_size: int):
    """The converter's ``representative_dataset``: one ``[batch]`` list per call."""

    def generate():
        for start in range(0, len(samples) - batch_size + 1, batch_size):
            yield [samples[start:start + batch_size]]

    return generate


def _configure(converter: Any, request: ExportRequest) -> None:
    """Set the converter's optimizations and types for ``request.quantization``."""
    import tensorflow as tf

    if request.quantization == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if request.quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif request.quantization == "int8":
        converter.inference_input_type = tf.int8
        if not request.postprocessed:  # the post-processing op's outputs stay float32
            converter.inference_output_type = tf.int8
        # With QAT and no dataset, TF's metrics step rejects INT8-only ops; float ops are checked after.
        if not request.qat:
            converter.representative_dataset = _representative(request.samples, request.batch_size)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # One scale per weight tensor instead of one per output channel (the converter's only switch).
            converter._experimental_disable_per_channel = not request.per_channel


def _conversion_failure(err: Exception, quantization: str) -> ConversionError:
    """One-paragraph ``ConversionError`` naming the ops the converter could not handle."""
    text = str(err)
    select = re.search(r"TF Select ops: ([^\n]+)", text)
    if select:
        return ConversionError(
            f"TFLite conversion failed: ops without a TFLite builtin kernel: {select.group(1).strip()} "
            "(TF Select / Flex ops are not supported by this exporter)"
        )
    unsupported = sorted(set(re.findall(r"(?:[Qq]uantization not yet supported for op|op): '?([\w.]+)'?", text)))
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower() and ln.strip()]
    detail = lines[0] if lines else (text.strip().splitlines() or [type(err).__name__])[0]
    ops = f" (ops: {', '.join(unsupported)})" if unsupported and quantization == "int8" else ""
    return ConversionError(f"TFLite conversion (quantization={quantization!r}) failed{ops}: {detail[:500]}")


def _convert(converter: Any, quantization: str) -> bytes:
    """Run the converter; its failures become ``ConversionError``."""
    try:
        with warnings.catch_warnings():  # int8 I/O without TF1 input stats: irrelevant for TF2 converters
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return bytes(converter.convert())
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:
        raise _conversion_failure(err, quantization) from err


def _without_names(content: bytes) -> bytes:
    """The flatbuffer without tensor and subgraph names, description and signatures."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _flatbuffer(request: ExportRequest) -> bytes:
    """The ``.tflite`` content for ``request`` (names stripped when asked)."""
    # int8: the package's layers trace their int8 form (e.g. HardSwish as ops XNNPACK runs in int8).
    tracing = int8_graph(request.model) if request.quantization == "int8" else contextlib.nullcontext()
    with tracing:
        if request.postprocessed:
            import tensorflow as tf

            spec = tf.TensorSpec((1, *request.input_shape), tf.as_dtype(request.input_dtype), name="images")
            converter = postprocess_converter(request.model, spec, request.detection)
        else:
            converter = _converter(request.model, request.input_shape, request.input_dtype, request.batch_size)
        _configure(converter, request)
        content = _convert(converter, request.quantization)
    if request.postprocessed:
        content = order_outputs(content)
    return _without_names(content) if request.strip_names else content


# --------------------------------------------------------------------------- phase 3: check and report

def _check_int8(summary: TFLiteSummary, allow_float_ops: bool, postprocessed: bool = False) -> None:
    """An ``int8`` file has int8 inputs and outputs and no float op (unless allowed). A file ending
    with ``TFLite_Detection_PostProcess`` has float32 outputs, and float tensors only at the
    ``DEQUANTIZE`` ops feeding it and the op itself."""
    tensors = summary.inputs + ([] if postprocessed else summary.outputs)
    wrong = [f"{t.name}: {t.dtype}" for t in tensors if t.dtype != "int8"]
    if wrong:
        raise ConversionError(f"int8 conversion left non-int8 inputs/outputs: {', '.join(wrong)}")
    allowed = POSTPROCESS_FLOAT_OPS if postprocessed else frozenset()
    float_ops = [op for op in summary.float_ops if op not in allowed]
    compute = [op for op in float_ops if op not in BRIDGE_OPS]
    if float_ops and not allow_float_ops:
        named = compute or float_ops
        counts = ", ".join(f"{op} x{summary.op_counts.get(op, 0)}" for op in named)
        raise ConversionError(
            f"int8 conversion left float ops: {counts}. These ops have no int8 kernel (the converter kept them in "
            "float32 between QUANTIZE/DEQUANTIZE); replace them in the model, or pass allow_float_ops=True"
        )


def _report(request: ExportRequest, summary: TFLiteSummary, seconds: float) -> ExportReport:
    return ExportReport(
        path=request.path, size_bytes=summary.size_bytes, quantization=request.quantization,
        flavour=request.flavour, qat=request.qat, batch_size=request.batch_size,
        input_shape=list(request.input_shape), op_counts=summary.op_counts, inputs=summary.inputs,
        outputs=summary.outputs, float_ops=summary.float_ops, representative_samples=request.calibration_images,
        seconds=round(seconds, 3), per_channel=request.per_channel, strip_names=request.strip_names,
        detection=None if request.detection is None else request.detection.as_dict(),
    )


def to_tflite(
    model: Any, path: str | os.PathLike, quantization: str = "none", representative_data: Any = None, *,
    batch_size: int = 1, input_shape: Sequence[int] | None = None,
    num_samples: int = MAX_REPRESENTATIVE_SAMPLES, allow_float_ops: bool = False, per_channel: bool = True,
    strip_names: bool = False, postprocess: str | None = None, score_threshold: float | None = None,
    iou_threshold: float | None = None, max_detections: int | None = None,
    detections_per_class: int | None = None,
) -> ExportReport:
    """Convert ``model`` to a ``.tflite`` file at ``path`` and describe it.

    ``model``: a Keras 3 model, a tf_keras model, or a TFMOT QAT tf_keras model
    (which converts only with ``quantization="int8"``), with one image input
    ``(batch, H, W, C)``. ``quantization``: one of ``QUANTIZATION_MODES`` (see the
    module docstring). ``representative_data``: calibration images for ``int8`` of
    a float model (required there, ignored otherwise): what the model takes as
    input (e.g. float pixels), a numpy array ``(N, H, W, C)`` or an iterable of
    such batches; the first ``num_samples`` (<= 100 is plenty) images are fed one
    batch of ``batch_size`` per call. ``batch_size``: the file's static batch.
    ``input_shape``: ``(H, W, C)``, required when the model leaves H or W open.
    ``allow_float_ops``: keep an ``int8`` file even if ops were left in float.
    ``per_channel``: ``int8`` only; ``False`` quantizes each weight
    tensor with one scale instead of one per output channel: a smaller file (each
    channel's scale and int64 zero point, for weights and biases, weigh 24 bytes,
    10-15% of a small model) for a usually small accuracy cost, and what some
    accelerators require. A QAT model's file follows its quantizers
    (``quantize_aware(per_channel=...)``): ``False`` is refused for a per-channel one,
    and the report's ``per_channel`` says which the file is.
    ``strip_names``: drop the tensor names (debug strings only; a fused tensor is named
    after every TF op folded into it, 3-10% of a small file), as TFLite's
    ``flatbuffer_utils.strip_strings`` does. Inputs and outputs are then found by index.

    Detectors (``keras_lightnets.detection``; see ``export.detectors``): ``postprocess`` is
    ``"regular"`` (default: per-class NMS in TFLite's ``TFLite_Detection_PostProcess``, outputs
    boxes, classes, scores, count as the TF Object Detection API), ``"fast"`` (its class-agnostic
    NMS) or ``"raw"`` (the class logits and box deltas); ``score_threshold`` (0.05),
    ``iou_threshold`` (0.5), ``max_detections`` (100) and ``detections_per_class`` (100, regular
    NMS) configure the op. ``representative_data`` are then images as the detector takes them.
    The report adds ``detection`` (these settings) and, for every file, how XNNPACK
    delegates it (``delegate_partitions``, ``ops_outside_delegate``).

    Arguments are checked before any conversion work (``ValueError``, or
    ``FileNotFoundError`` for a missing folder); a converter failure raises
    ``ConversionError``. The file is written atomically: nothing is left at
    ``path`` (nor a temporary file) when anything fails.
    """
    started = time.perf_counter()
    request = resolve_request(
        model, path, quantization, representative_data, batch_size=batch_size, input_shape=input_shape,
        num_samples=num_samples, allow_float_ops=allow_float_ops, per_channel=per_channel, strip_names=strip_names,
        detection={"postprocess": postprocess, "score_threshold": score_threshold, "iou_threshold": iou_threshold,
                   "max_detections": max_detections, "detections_per_class": detections_per_class},
    )
    content = _flatbuffer(request)
    summary = describe_tflite(content)
    if request.quantization == "int8":
        _check_int8(summary, request.allow_float_ops, request.postprocessed)
    write_bytes(request.path, content)
    report = _report(request, summary, time.perf_counter() - started)
    report.delegate_partitions, report.ops_outside_delegate = delegate_coverage(request.path)
    return report
