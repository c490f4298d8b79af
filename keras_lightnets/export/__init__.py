"""Export to TensorFlow Lite: ``to_tflite``, ``verify_tflite``, ``benchmark_tflite``, ``describe_tflite``.

One module per job: ``conversion`` (``to_tflite``), ``detectors`` (a detector's file: raw heads or
TFLite's ``TFLite_Detection_PostProcess``, its metadata), ``verify_detection`` (LiteRT vs Keras
detections, mAP and box agreement), ``describe`` (reading a file
without running it), ``verify`` (LiteRT vs Keras), ``benchmark`` (latency and
memory, measured by the ``benchmark_child`` process; ``delegate_coverage``),
``delegation`` (XNNPACK partitions), ``inputs`` and ``images`` (argument and data
checks), ``reports`` (the result dataclasses), ``litert`` (LiteRT access). The
converter command line lives in ``keras_lightnets.cli.export`` (also run as
``tools/convert_tflite.py`` and ``lightnets export``). TensorFlow, TFMOT and LiteRT
are imported only when a function needs them.
"""

from __future__ import annotations

from keras_lightnets.export.benchmark import benchmark_tflite, delegate_coverage
from keras_lightnets.export.conversion import MAX_REPRESENTATIVE_SAMPLES, to_tflite
from keras_lightnets.export.describe import describe_tflite
from keras_lightnets.export.detectors import POSTPROCESS_MODES, detection_metadata
from keras_lightnets.export.inputs import QUANTIZATION_MODES, is_qat_model
from keras_lightnets.export.reports import (
    BenchmarkReport,
    ConversionError,
    ExportReport,
    TensorInfo,
    TFLiteSummary,
    VerifyReport,
)
from keras_lightnets.export.verify import verify_tflite
from keras_lightnets.export.verify_detection import DetectionVerifyReport

__all__ = [
    "MAX_REPRESENTATIVE_SAMPLES", "POSTPROCESS_MODES", "QUANTIZATION_MODES", "BenchmarkReport", "ConversionError",
    "DetectionVerifyReport", "ExportReport", "TFLiteSummary", "TensorInfo", "VerifyReport", "benchmark_tflite",
    "delegate_coverage", "describe_tflite", "detection_metadata", "is_qat_model", "to_tflite", "verify_tflite",
]
