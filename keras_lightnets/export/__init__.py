"""Export to TensorFlow Lite: ``to_tflite``, ``verify_tflite``, ``benchmark_tflite``, ``describe_tflite``.

The converter command line lives in ``keras_lightnets.export.convert`` (also run as
``tools/convert_tflite.py`` and ``lightnets export``). TensorFlow, TFMOT and LiteRT
are imported only when a function needs them.
"""

from __future__ import annotations

from keras_lightnets.export.tflite import (
    MAX_REPRESENTATIVE_SAMPLES,
    QUANTIZATION_MODES,
    BenchmarkReport,
    ConversionError,
    ExportReport,
    TensorInfo,
    TFLiteSummary,
    VerifyReport,
    benchmark_tflite,
    delegate_coverage,
    describe_tflite,
    is_qat_model,
    to_tflite,
    verify_tflite,
)

__all__ = [
    "MAX_REPRESENTATIVE_SAMPLES", "QUANTIZATION_MODES", "BenchmarkReport", "ConversionError", "ExportReport",
    "TFLiteSummary", "TensorInfo", "VerifyReport", "benchmark_tflite", "delegate_coverage", "describe_tflite",
    "is_qat_model", "to_tflite", "verify_tflite",
]
