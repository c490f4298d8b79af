"""What a ``.tflite`` file holds, read without running it (``describe_tflite``), and the
share of zeros in its pruned weights (``tflite_kernel_sparsity``).

The flatbuffer is parsed with the TFLite schema that ships with ``ai_edge_litert``
(``schema_py_generated``); the weights are read through LiteRT's op table
(``litert.op_table``). TensorFlow is never imported.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from keras_lightnets.errors import InputError
from keras_lightnets.export.litert import litert_module, op_table, open_interpreter
from keras_lightnets.export.reports import TensorInfo, TFLiteSummary

_FLOAT_TYPES = frozenset({"float16", "float32", "float64", "bfloat16"})
# Kernels TFMOT prunes by default end up as the weights (input 1) of these TFLite ops.
PRUNED_TFLITE_OPS = ("CONV_2D", "FULLY_CONNECTED")


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
    schema = litert_module("schema_py_generated")
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


def _check_buffers(root: Any, size: int) -> None:
    """Every weight buffer lies inside the file of ``size`` bytes (truncation shows here)."""
    for b in range(root.BuffersLength()):
        buffer = root.Buffers(b)
        if buffer.DataLength():
            buffer.DataAsNumpy()
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > size:
            raise ValueError(f"buffer {b} ends past the end of the file")


def _describe(schema: Any, content: bytes) -> TFLiteSummary:
    root = schema.Model.GetRootAs(content, 0)
    if root.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    _check_buffers(root, len(content))
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


def tflite_kernel_sparsity(path: str | os.PathLike) -> float:
    """Fraction (0 to 1) of zeros in the weights of the file's CONV_2D and FULLY_CONNECTED ops
    (int8 weights are symmetric: a zero is a stored 0); 0.0 for a file without such weights."""
    interpreter = open_interpreter(path)
    zeros = total = 0
    for op in op_table(interpreter):
        if op["op_name"] not in PRUNED_TFLITE_OPS or len(op["inputs"]) < 2:
            continue
        try:
            weights = interpreter.get_tensor(int(op["inputs"][1]))
        except ValueError:  # not a constant tensor
            continue
        zeros += int(np.count_nonzero(weights == 0))
        total += int(weights.size)
    return zeros / total if total else 0.0
