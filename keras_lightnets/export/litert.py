"""The package's only doors into LiteRT (``ai_edge_litert``): its modules, an interpreter, its op table,
and the conversion of float arrays to and from a tensor's dtype (``quantize_input``, ``dequantize_output``).

Nothing here imports TensorFlow, so the benchmark child process can use it too.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import numpy as np


def litert_module(module: str) -> ModuleType:
    """``ai_edge_litert.<module>``, or an ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module(f"ai_edge_litert.{module}")
    except ImportError as err:
        raise ImportError(
            f"TFLite export needs LiteRT (ai_edge_litert.{module}): pip install 'keras_lightnets[export]' ({err})"
        ) from err


def open_interpreter(path: str | os.PathLike, threads: int | None = None) -> Any:
    """A LiteRT interpreter (XNNPACK, its default delegate, on ``threads`` threads) over the
    file at ``path``, after ``allocate_tensors()``."""
    interpreter = litert_module("interpreter").Interpreter(model_path=os.fspath(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def op_table(interpreter: Any) -> list[dict[str, Any]]:
    """The interpreter's node table, one dict per node: ``index``, ``op_name``, ``inputs`` and
    ``outputs`` (tensor indices, -1 for an absent optional input). After delegation it holds
    the original nodes and one ``DELEGATE`` node per partition.

    LiteRT's only view of it is the private ``_get_ops_details``; this is its one reader.
    """
    return interpreter._get_ops_details()


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the input tensor's dtype with its scale and zero point (identity for float inputs)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    if not scale:
        raise ValueError(f"input tensor {detail['name']!r} is {dtype} without quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor's values as float32 (``scale * (q - zero_point)`` for a quantized one)."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(q.dtype, np.floating) or not scale:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
