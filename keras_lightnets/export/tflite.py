"""TensorFlow Lite export: convert, describe, verify and benchmark ``.tflite`` files.

``to_tflite(model, path, quantization=...)`` converts a Keras 3 model, a tf_keras
model or a TFMOT quantization-aware (QAT) tf_keras model and writes the file
atomically. Quantization modes:

===========  ===================================================================
``none``     float32 weights and activations
``float16``  float16 weights (dequantized to float32 at load), float32 compute
``dynamic``  int8 weights, activations quantized on the fly; float32 inputs/outputs
``int8``     int8 weights and activations, int8 inputs and outputs, no float op
             left (float models need ``representative_data``; QAT models carry
             their ranges and need none)
===========  ===================================================================

Images are channels-last: a model takes ``(batch, height, width, channels)``;
the file gets a static batch (``batch_size``, default 1). ``verify_tflite`` and
``benchmark_tflite`` run files with LiteRT (``ai_edge_litert``), never with
``tf.lite.Interpreter``. TensorFlow, TFMOT and LiteRT are imported inside the
functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.files import temp_file_beside
from keras_lightnets.layers import QAT_LAYER_CLASSES, int8_graph, nested_layers
from keras_lightnets.layout import channels_last_twin, is_channels_first
from keras_lightnets.validation import check_bool

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")
MAX_REPRESENTATIVE_SAMPLES = 100
BRIDGE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_FLOAT_TYPES = frozenset({"float16", "float32", "float64", "bfloat16"})


class ConversionError(RuntimeError):
    """The TFLite converter could not produce the requested file (the arguments were valid)."""


# --------------------------------------------------------------------------- reports

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
    names dropped (both: see ``to_tflite``).
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


# --------------------------------------------------------------------------- argument checks

def _check_quantization(quantization: Any) -> str:
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"`quantization` must be one of {', '.join(map(repr, QUANTIZATION_MODES))}; "
            f"received quantization={quantization!r}"
        )
    return quantization


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; received {name}={value!r}")
    return int(value)


def model_flavour(model: Any) -> str:
    """``"keras"`` or ``"tf_keras"`` for a Keras model; ``ValueError`` for anything else."""
    from keras_lightnets import _backend

    try:
        flavour = _backend.flavour_of(model)
    except TypeError:
        flavour = None
    if flavour is not None and isinstance(model, _backend.keras_module(flavour).Model):
        return flavour
    raise ValueError(
        f"`model` must be a Keras 3 or tf_keras Model (keras.Model / tf_keras.Model, TFMOT QAT models "
        f"included); received an object of type {type(model).__module__}.{type(model).__name__}"
    )


def is_qat_model(model: Any) -> bool:
    """True when ``model`` holds TFMOT quantization layers (``QuantizeWrapper``, ``QuantizeWrapperV2``,
    ``QuantizeLayer``), i.e. it went through ``quantize_model``/``quantize_apply``.

    Looks at class names and modules only; TFMOT is not imported.
    """
    for layer in nested_layers(model):
        for cls in type(layer).__mro__:
            if cls.__name__ in QAT_LAYER_CLASSES and cls.__module__.startswith("tensorflow_model_optimization"):
                return True
    return False


def _model_input(model: Any) -> tuple[tuple[int | None, ...] | None, str]:
    """``((H, W, C) with None for unknown dims or None when unknown, dtype name)`` of the single input."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        return None, "float32"
    if len(inputs) != 1:
        raise ValueError(f"`model` must have exactly one image input; it has {len(inputs)}")
    tensor = inputs[0]
    dtype = getattr(tensor.dtype, "name", tensor.dtype)
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    if len(shape) != 4:
        raise ValueError(f"`model` must take (batch, height, width, channels) images; its input shape is {shape}")
    return shape[1:], str(dtype)


def _resolve_input_shape(model: Any, input_shape: Sequence[int] | None) -> tuple[tuple[int, int, int], str]:
    """The ``(H, W, C)`` to convert for: the model's, or ``input_shape`` where the model leaves dims open."""
    known, dtype = _model_input(model)
    if input_shape is not None:
        ok = (
            isinstance(input_shape, Sequence) and len(input_shape) == 3
            and all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in input_shape)
        )
        if not ok:
            raise ValueError(f"`input_shape` must be (height, width, channels) positive ints; received {input_shape!r}")
        wanted = tuple(int(d) for d in input_shape)
        if known is not None and any(k is not None and k != w for k, w in zip(known, wanted, strict=True)):
            raise ValueError(f"`input_shape`={wanted} does not fit the model's input shape {known}")
        return wanted, dtype
    if known is None or None in known:
        raise ValueError(
            f"the model's input shape is {known if known is not None else 'unknown'}: pass "
            "`input_shape=(height, width, channels)` to fix the size of the converted file"
        )
    return known, dtype  # type: ignore[return-value]


def check_output_path(path: Any, name: str = "path") -> str:
    """Absolute ``path`` of a file to write; its folder must exist and it must not be a folder."""
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise ValueError(f"`{name}` must be a file path (str or os.PathLike); received {name}={path!r}")
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"`{name}`: the folder {folder!r} does not exist (create it first)")
    if os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file path; {path!r} is a folder")
    return path


# --------------------------------------------------------------------------- image data

def _as_batch(batch: Any, input_shape: tuple[int, ...], name: str) -> np.ndarray:
    """One ``(n, H, W, C)`` batch as float32, after shape and dtype checks."""
    if isinstance(batch, tuple) and batch:  # (images, labels) pairs, e.g. from tf.data
        batch = batch[0]
    array = np.asarray(batch.numpy() if hasattr(batch, "numpy") else batch)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            f"`{name}` must hold real numbers (float pixels, or integers); received dtype {array.dtype}"
        )
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"`{name}` must be images of shape (N, {', '.join(map(str, input_shape))}) (N, height, width, "
            f"channels) or an iterable of such batches; received an array of shape {array.shape}"
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or infinite values")
    return array


def _batch_labels(batch: Any, count: int, name: str) -> np.ndarray | None:
    """The labels of an ``(images, labels)`` element as ``(count,)`` ints, None without them."""
    if not (isinstance(batch, tuple) and len(batch) >= 2):
        return None
    labels = np.asarray(batch[1].numpy() if hasattr(batch[1], "numpy") else batch[1]).reshape(-1)
    if len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`{name}` pairs (images, labels) need one integer class index per image; received "
                         f"labels of shape {labels.shape} dtype {labels.dtype} for {count} image(s)")
    return labels.astype(np.int64)


def _element(batch: Any, input_shape: tuple[int, ...], name: str, *, single: bool = True,
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch ``(n, H, W, C)`` or (``single``) one image ``(H, W, C)`` (an unbatched ``tf.data``
    element), with its labels when the element is an ``(images, labels)`` pair."""
    images = batch[0] if isinstance(batch, tuple) and batch else batch
    rank = len(getattr(images, "shape", np.shape(images)))
    if single and rank == len(input_shape):  # one image
        images = images[None]
    array = _as_batch(images, input_shape, name)
    return array, _batch_labels(batch, len(array), name)


def collect_images_and_labels(
    data: Any, input_shape: tuple[int, ...], *, limit: int | None, name: str = "data",
) -> tuple[np.ndarray, np.ndarray | None]:
    """At most ``limit`` images of ``data`` as float32 ``(N, H, W, C)``, and their labels when ``data`` has them.

    ``data``: a numpy array (or tensor) ``(N, H, W, C)``, an ``(images, labels)``
    pair, or an iterable (e.g. a ``tf.data.Dataset``, batched or not) of batches,
    single images or such pairs. Labels are int64 ``(N,)`` when every element
    carries them, else None. ``ValueError`` for a wrong rank, shape or dtype, or no image.
    """
    if data is None:
        raise ValueError(f"`{name}` is required")
    if isinstance(data, np.ndarray) or hasattr(data, "shape") or isinstance(data, tuple):
        images, labels = _element(data, input_shape, name, single=False)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
        parts, label_parts, count = [], [], 0
        for batch in data:
            batch_images, batch_labels = _element(batch, input_shape, name)
            parts.append(batch_images)
            label_parts.append(batch_labels)
            count += len(batch_images)
            if limit is not None and count >= limit:
                break
        if not parts:
            raise ValueError(f"`{name}` is empty; it must hold at least one image")
        images = np.concatenate(parts)
        labels = None if any(p is None for p in label_parts) else np.concatenate(label_parts)
    else:
        raise ValueError(
            f"`{name}` must be a numpy array (N, height, width, channels) or an iterable of such batches; "
            f"received {type(data).__name__}"
        )
    if len(images) == 0:
        raise ValueError(f"`{name}` is empty; it must hold at least one image")
    if limit is not None:
        images, labels = images[:limit], None if labels is None else labels[:limit]
    return images, labels


def collect_images(data: Any, input_shape: tuple[int, ...], *, limit: int | None, name: str = "data") -> np.ndarray:
    """At most ``limit`` images of ``data`` as float32 ``(N, H, W, C)`` (``data`` as for
    ``collect_images_and_labels``; labels are ignored)."""
    return collect_images_and_labels(data, input_shape, limit=limit, name=name)[0]


# --------------------------------------------------------------------------- describing files

def _litert(module: str):
    """``ai_edge_litert.<module>``, or an ``ImportError`` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"ai_edge_litert.{module}")
    except ImportError as err:
        raise ImportError(
            f"TFLite export needs LiteRT (ai_edge_litert.{module}): pip install 'keras_lightnets[export]' ({err})"
        ) from err


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _tensor_info(tensor: Any, type_names: dict[int, str]) -> TensorInfo:
    shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    dtype = type_names.get(tensor.Type(), str(tensor.Type())).lower()
    info = TensorInfo(name=(tensor.Name() or b"").decode("utf-8", "replace"), shape=shape, dtype=dtype)
    quant = tensor.Quantization()
    if quant is not None and quant.ScaleLength() == 1:
        info.scale = float(quant.Scale(0))
        info.zero_point = int(quant.ZeroPoint(0)) if quant.ZeroPointLength() else 0
    return info


def _op_name(code: Any, builtin_names: dict[int, str]) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = builtin_names.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
    return name


def _indices(vector_length: int, getter) -> list[int]:
    return [int(getter(i)) for i in range(vector_length)]


def _not_tflite(name: str, reason: str) -> InputError:
    return InputError(f"{name} is not a valid TFLite flatbuffer ({reason})")


def describe_tflite(model: str | os.PathLike | bytes) -> TFLiteSummary:
    """Parse a ``.tflite`` flatbuffer (a path or its bytes): op counts, inputs, outputs, float ops.

    Uses the TFLite schema that ships with ``ai_edge_litert``; nothing is run.
    ``InputError`` (one line naming the file) for an empty, truncated or foreign file.
    """
    schema = _litert("schema_py_generated")
    if isinstance(model, bytes | bytearray):
        content, name = bytes(model), "the given bytes"
    else:
        name = f"file {os.fspath(model)!r}"
        try:
            with open(os.fspath(model), "rb") as f:
                content = f.read()
        except IsADirectoryError:
            raise InputError(f"{name} is a folder, not a .tflite file") from None
    if not content:
        raise _not_tflite(name, "it is empty")
    if len(content) < 8 or not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise _not_tflite(name, "no 'TFL3' file identifier")
    try:
        return _describe(schema, content)
    except (struct.error, IndexError) as err:
        raise _not_tflite(name, f"truncated or corrupt: offsets point outside the file ({err})") from None
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError, KeyError) as err:
        raise _not_tflite(name, f"truncated or corrupt: {type(err).__name__}: {err}") from None


def _describe(schema: Any, content: bytes) -> TFLiteSummary:
    root = schema.Model.GetRootAs(content, 0)
    if root.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    for b in range(root.BuffersLength()):  # every weight buffer lies inside the file (truncation shows here)
        buffer = root.Buffers(b)
        if buffer.DataLength():
            buffer.DataAsNumpy()
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > len(content):
            raise ValueError(f"buffer {b} ends past the end of the file")
    builtin_names, type_names = _enum_names(schema.BuiltinOperator), _enum_names(schema.TensorType)
    op_names = [_op_name(root.OperatorCodes(i), builtin_names) for i in range(root.OperatorCodesLength())]
    counts: dict[str, int] = {}
    float_ops: set[str] = set()
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        types = [type_names.get(graph.Tensors(t).Type(), "").lower() for t in range(graph.TensorsLength())]
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = op_names[op.OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
            tensors = _indices(op.InputsLength(), op.Inputs) + _indices(op.OutputsLength(), op.Outputs)
            if any(t >= 0 and types[t] in _FLOAT_TYPES for t in tensors):
                float_ops.add(name)
    main = root.Subgraphs(0)
    return TFLiteSummary(
        size_bytes=len(content),
        op_counts=dict(sorted(counts.items())),
        inputs=[_tensor_info(main.Tensors(i), type_names) for i in _indices(main.InputsLength(), main.Inputs)],
        outputs=[_tensor_info(main.Tensors(i), type_names) for i in _indices(main.OutputsLength(), main.Outputs)],
        float_ops=sorted(float_ops),
    )


# --------------------------------------------------------------------------- conversion

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


def _configure(
    converter: Any, quantization: str, samples: np.ndarray | None, qat: bool, batch_size: int, per_channel: bool,
) -> None:
    import tensorflow as tf

    if quantization == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if not qat:  # with QAT and no dataset, TF's metrics step rejects INT8-only ops; float ops are checked after
            converter.representative_dataset = _representative(samples, batch_size)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # One scale per weight tensor instead of one per output channel (the converter's only switch).
            converter._experimental_disable_per_channel = not per_channel


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


def _check_int8(summary: TFLiteSummary, allow_float_ops: bool) -> None:
    """An ``int8`` file has int8 inputs and outputs and no float op (unless allowed)."""
    wrong = [f"{t.name}: {t.dtype}" for t in summary.inputs + summary.outputs if t.dtype != "int8"]
    if wrong:
        raise ConversionError(f"int8 conversion left non-int8 inputs/outputs: {', '.join(wrong)}")
    compute = [op for op in summary.float_ops if op not in BRIDGE_OPS]
    if summary.float_ops and not allow_float_ops:
        named = compute or summary.float_ops
        counts = ", ".join(f"{op} x{summary.op_counts.get(op, 0)}" for op in named)
        raise ConversionError(
            f"int8 conversion left float ops: {counts}. These ops have no int8 kernel (the converter kept them in "
            "float32 between QUANTIZE/DEQUANTIZE); replace them in the model, or pass allow_float_ops=True"
        )


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    On any error or interruption the temporary file is removed and ``path`` is untouched.
    """
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise



def _channels_last_data(data: Any) -> Any:
    """``data`` for a channels-first model moved to channels-last: an ``(N, C, H, W)``
    array (or ``(C, H, W)`` image), an ``(images, labels)`` pair, or an iterable of those
    (a ``tf.data.Dataset`` too); labels are left as they are."""
    if data is None:
        return None
    if isinstance(data, tuple) and len(data) == 2:
        return _channels_last_data(data[0]), data[1]
    if hasattr(data, "shape"):  # numpy arrays and tensors
        array = np.asarray(data)
        return np.moveaxis(array, array.ndim - 3, -1) if array.ndim in (3, 4) else array
    if isinstance(data, Iterable):
        return (_channels_last_data(item) for item in data)
    return data


def _exportable(model: Any, *data: Any, what: str) -> tuple[Any, ...]:
    """``(model, *data)`` ready for TFLite: ``model`` must be a Keras model
    (``model_flavour``) on the TensorFlow backend, and a channels-first Keras 3 model
    is replaced by its channels-last twin (``layout.channels_last_twin``: same weights,
    outputs checked) with its data moved to channels-last, since TFLite files (and
    XNNPACK) are NHWC."""
    from keras_lightnets._backend import require_tensorflow_backend

    flavour = model_flavour(model)
    require_tensorflow_backend(what, model)
    if flavour == "keras" and is_channels_first(model):
        return (channels_last_twin(model), *(_channels_last_data(d) for d in data))
    return (model, *data)


def to_tflite(
    model: Any, path: str | os.PathLike, quantization: str = "none", representative_data: Any = None, *,
    batch_size: int = 1, input_shape: Sequence[int] | None = None,
    num_samples: int = MAX_REPRESENTATIVE_SAMPLES, allow_float_ops: bool = False, per_channel: bool = True,
    strip_names: bool = False,
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
    ``per_channel``: ``int8`` of a float model only; ``False`` quantizes each weight
    tensor with one scale instead of one per output channel: a smaller file (each
    channel's scale and int64 zero point, for weights and biases, weigh 24 bytes,
    10-15% of a small model) for a usually small accuracy cost, and what some
    accelerators require. A QAT model's file follows its training (per channel).
    ``strip_names``: drop the tensor names (debug strings only; a fused tensor is named
    after every TF op folded into it, 3-10% of a small file), as TFLite's
    ``flatbuffer_utils.strip_strings`` does. Inputs and outputs are then found by index.

    Arguments are checked before any conversion work (``ValueError``, or
    ``FileNotFoundError`` for a missing folder); a converter failure raises
    ``ConversionError``. The file is written atomically: nothing is left at
    ``path`` (nor a temporary file) when anything fails.
    """
    started = time.perf_counter()
    model, representative_data = _exportable(model, representative_data, what="TFLite export")
    flavour = model_flavour(model)
    quantization = _check_quantization(quantization)
    path = check_output_path(path)
    batch_size = _positive_int(batch_size, "batch_size")
    num_samples = _positive_int(num_samples, "num_samples")
    shape, dtype = _resolve_input_shape(model, input_shape)
    qat = is_qat_model(model)
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
    if not per_channel and (quantization != "int8" or qat):
        detail = " for a QAT model, whose weights are quantized per channel" if qat else ""
        raise ValueError(
            "per_channel=False applies to quantization='int8' of a float model only (post-training); received "
            f"quantization={quantization!r}{detail}"
        )
    samples = None
    if quantization == "int8" and not qat:
        if representative_data is None:
            raise ValueError(
                "quantization='int8' of a float model needs `representative_data`: about 100 typical inputs, "
                f"a numpy array (N, {', '.join(map(str, shape))}) of what the model takes (e.g. float pixels) "
                "or an iterable of such batches (a QAT model needs none)"
            )
        samples = collect_images(representative_data, shape, limit=num_samples, name="representative_data")
        if len(samples) < batch_size:
            raise ValueError(f"`representative_data` has {len(samples)} images, fewer than batch_size={batch_size}")
    # int8: the package's layers trace their int8 form (e.g. HardSwish as ops XNNPACK runs in int8).
    tracing = int8_graph(model) if quantization == "int8" else contextlib.nullcontext()
    with tracing:
        converter = _converter(model, shape, dtype, batch_size)
        _configure(converter, quantization, samples, qat, batch_size, per_channel)
        content = _convert(converter, quantization)
    if strip_names:
        content = _without_names(content)
    summary = describe_tflite(content)
    if quantization == "int8":
        _check_int8(summary, allow_float_ops)
    atomic_write(path, content)
    return ExportReport(
        path=path, size_bytes=summary.size_bytes, quantization=quantization, flavour=flavour, qat=qat,
        batch_size=batch_size, input_shape=list(shape), op_counts=summary.op_counts, inputs=summary.inputs,
        outputs=summary.outputs, float_ops=summary.float_ops,
        representative_samples=0 if samples is None else len(samples) - len(samples) % batch_size,
        seconds=round(time.perf_counter() - started, 3), per_channel=per_channel, strip_names=strip_names,
    )


# --------------------------------------------------------------------------- running files

def _interpreter(path: str, threads: int | None):
    interpreter = _litert("interpreter").Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def delegate_coverage(path: str | os.PathLike, threads: int = 1) -> tuple[int, dict[str, int]]:
    """``(partitions, {op: count})``: how many XNNPACK partitions LiteRT makes of the file, and
    which ops it runs outside them on TFLite's built-in kernels (see ``export.delegation``).
    A file that runs fully in XNNPACK gives ``(1, {})``."""
    from keras_lightnets.export.delegation import ops_outside_delegates

    path = _check_tflite_path(path)
    return ops_outside_delegates(_interpreter(path, _positive_int(threads, "threads")))


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the input tensor's dtype with its scale and zero point (identity for float inputs)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    if not scale:
        raise ValueError(f"input tensor {detail['name']!r} is {dtype} without quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(q.dtype, np.floating) or not scale:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


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
        interpreter.set_tensor(detail["index"], _quantize(chunk, detail))
        interpreter.invoke()
        for out, store in zip(outputs, collected, strict=True):
            store.append(_dequantize(interpreter.get_tensor(out["index"]), out)[: batch - pad])
    return [np.concatenate(parts) for parts in collected]


def _run_keras(model: Any, images: np.ndarray, chunk: int = 32) -> list[np.ndarray]:
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


def _check_labels(labels: Any, count: int) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) < count:
        raise ValueError(
            f"`labels` must be {count} (or more) integer class indices, shape (N,); "
            f"received shape {labels.shape} dtype {labels.dtype}"
        )
    return labels[:count]


def _check_tflite_path(path: Any) -> str:
    """``path`` as a str, after checking it is an existing, parseable ``.tflite`` file (``InputError`` if not)."""
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"`path` must be an existing .tflite file; received path={path!r}")
    describe_tflite(path)
    return os.fspath(path)


def verify_tflite(
    path: str | os.PathLike, model: Any, data: Any, *, labels: Any = None, num_samples: int | None = None,
    threads: int | None = None,
) -> VerifyReport:
    """Run the file with LiteRT image by image and compare with ``model`` on the same images.

    ``data``: what the model takes, ``(N, H, W, C)``, or an iterable of batches or
    single images, e.g. a ``tf.data.Dataset`` of ``(images, labels)`` (batched or
    not), matching the file's input size; int8 files get it quantized with the
    input's scale and zero point and their outputs dequantized. ``labels``: int
    class indices ``(N,)`` for the accuracy of both; by default the labels ``data``
    carries (``(images, labels)`` pairs), if any. ``num_samples``: use at most this
    many images.
    """
    started = time.perf_counter()
    path = _check_tflite_path(path)
    model, data = _exportable(model, data, what="verify_tflite")
    if num_samples is not None:
        _positive_int(num_samples, "num_samples")
    interpreter = _interpreter(path, threads)
    [detail] = interpreter.get_input_details()
    images, carried = collect_images_and_labels(data, tuple(int(d) for d in detail["shape"][1:]), limit=num_samples,
                                                name="data")
    labels = _check_labels(carried if labels is None else labels, len(images))
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


# The benchmark child: a fresh interpreter process importing only numpy and ai_edge_litert.
_BENCHMARK_CHILD = r"""
import json, resource, sys, time
settings = json.loads(sys.argv[1])
import numpy as np
from ai_edge_litert.interpreter import Interpreter

def status_kib(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None

def peak_kib():
    hwm = status_kib("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    baseline, method = status_kib("VmRSS"), "VmHWM after reset"
except OSError:
    baseline, method = peak_kib(), "VmHWM" if status_kib("VmHWM") is not None else "ru_maxrss"
interpreter = Interpreter(model_path=settings["path"], num_threads=settings["threads"])
interpreter.allocate_tensors()
from keras_lightnets.export.delegation import ops_outside_delegates
partitions, outside = ops_outside_delegates(interpreter)
rng = np.random.default_rng(0)
for detail in interpreter.get_input_details():
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        value = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
    else:
        value = rng.uniform(0, 255, size=detail["shape"]).astype(dtype)
    interpreter.set_tensor(detail["index"], value)
for _ in range(settings["warmup"]):
    interpreter.invoke()
times = []
for _ in range(settings["runs"]):
    start = time.perf_counter()
    interpreter.invoke()
    times.append((time.perf_counter() - start) * 1000.0)
peak = peak_kib()
print(json.dumps({"times_ms": times, "peak_kib": peak, "baseline_kib": baseline, "method": method,
                  "partitions": partitions, "outside": outside,
                  "modules": sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)}))
"""


def benchmark_tflite(
    path: str | os.PathLike, *, threads: int = 1, runs: int = 50, warmup: int = 5, timeout: float = 600.0,
) -> BenchmarkReport:
    """Median and p90 latency (ms per ``invoke``) and peak memory (KiB) of a ``.tflite`` file.

    Runs in a fresh ``sys.executable`` process with the LiteRT interpreter
    (XNNPACK, ai_edge_litert's default delegate) on ``threads`` threads:
    ``warmup`` untimed invokes, then ``runs`` timed ones on random input.
    """
    path = os.path.abspath(_check_tflite_path(path))
    threads = _positive_int(threads, "threads")
    runs = _positive_int(runs, "runs")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"`warmup` must be an int >= 0; received warmup={warmup!r}")
    settings = json.dumps({"path": path, "threads": threads, "runs": runs, "warmup": warmup})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", _BENCHMARK_CHILD, settings], capture_output=True, text=True, timeout=timeout, env=env,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConversionError(f"benchmark of {path} failed (exit {result.returncode}): {tail}")
    measured = json.loads(lines[-1])
    times = np.asarray(measured["times_ms"])
    return BenchmarkReport(
        path=path, threads=threads, runs=runs, warmup=warmup,
        median_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()), min_ms=float(times.min()),
        peak_memory_kib=max(int(measured["peak_kib"]) - int(measured["baseline_kib"]), 0),
        memory_method=measured["method"],
        delegate_partitions=measured["partitions"], ops_outside_delegate=measured["outside"],
        extra={"baseline_kib": measured["baseline_kib"], "child_modules": measured["modules"]},
    )
