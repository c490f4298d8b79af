"""What the export functions return (one dataclass per function) and the one failure they add.

Every report is a plain dataclass with ``as_dict()`` for JSON; sizes are bytes, times
seconds (latencies milliseconds), memory KiB, shapes channels-last ``(H, W, C)`` or
``(batch, H, W, C)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class ConversionError(RuntimeError):
    """The TFLite converter could not produce the requested file (the arguments were valid)."""


@dataclass
class TensorInfo:
    """One input or output tensor of a ``.tflite`` file.

    ``shape``: static shape, e.g. ``[1, 224, 224, 3]``; ``dtype``: numpy name
    (``"float32"``, ``"int8"``); ``scale``/``zero_point``: the affine quantization
    ``real = scale * (q - zero_point)``, ``None`` for unquantized tensors.
    """

    name: str
    shape: list[int]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass
class TFLiteSummary:
    """What a ``.tflite`` file holds: op counts by type, inputs, outputs, float ops.

    ``float_ops``: sorted op types with a float input or output tensor (in an
    ``int8`` file only ``QUANTIZE``/``DEQUANTIZE`` bridges around an op without an
    int8 kernel would appear, and ``to_tflite`` refuses those by default).
    """

    size_bytes: int
    op_counts: dict[str, int]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    float_ops: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportReport:
    """The result of ``to_tflite``.

    ``size_bytes``: file size; ``op_counts``: ``{op type: count}``; ``inputs`` /
    ``outputs``: ``TensorInfo`` (shape, dtype, scale, zero point); ``float_ops``:
    op types left with float tensors; ``input_shape``: ``(H, W, C)`` converted for;
    ``representative_samples``: images used to calibrate (0 unless a float model is
    converted to ``int8``); ``seconds``: wall time of the conversion; ``per_channel``:
    weight scales per output channel (``False``: per tensor); ``strip_names``: tensor
    names dropped (both: see ``to_tflite``); ``detection``: a detector's post-processing
    settings (``export.detectors.DetectionExport.as_dict``), else None;
    ``delegate_partitions`` / ``ops_outside_delegate``: how LiteRT's XNNPACK delegate splits
    the file and which ops (name: count) it leaves to the built-in kernels.
    """

    path: str
    size_bytes: int
    quantization: str
    flavour: str
    qat: bool
    batch_size: int
    input_shape: list[int]
    op_counts: dict[str, int]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    float_ops: list[str]
    representative_samples: int
    seconds: float
    per_channel: bool = True
    strip_names: bool = False
    detection: dict[str, Any] | None = None
    delegate_partitions: int = 0
    ops_outside_delegate: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """LiteRT file vs Keras model on the same images.

    ``max_abs_diff`` / ``mean_abs_diff``: over all output values, after
    dequantizing int8 outputs; ``top1_agreement``: fraction of images whose
    arg-max class agrees (classifier outputs ``(N, classes)`` only, else ``None``);
    ``keras_accuracy`` / ``tflite_accuracy``: top-1 accuracy when ``labels`` were
    given, else ``None``.
    """

    path: str
    samples: int
    input_dtype: str
    output_dtype: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchmarkReport:
    """Latency (milliseconds per ``invoke``) and peak memory of a ``.tflite`` file.

    Measured in a fresh Python process importing only numpy and ai_edge_litert.
    ``peak_memory_kib``: rise of the peak resident set (KiB) from just after the
    imports to after loading, allocating and running the model; ``memory_method``
    says how it was read (``VmHWM`` after resetting it, ``VmHWM``, or ``ru_maxrss``).
    ``delegate_partitions`` / ``ops_outside_delegate``: how XNNPACK split the graph and
    which ops (name: count) it left to TFLite's built-in kernels (``delegate_coverage``).
    """

    path: str
    threads: int
    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    peak_memory_kib: int
    memory_method: str
    delegate_partitions: int = 0
    ops_outside_delegate: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
