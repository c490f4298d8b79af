"""Checks of what the export functions are given: the model, the quantization mode, paths.

Models are Keras 3 or tf_keras models (TFMOT QAT tf_keras models included) with one
image input ``(batch, H, W, C)``; a channels-first Keras 3 model is exported as its
channels-last twin. Every check raises ``ValueError`` (``FileNotFoundError`` for a
missing file or folder) naming the argument, before any conversion work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from keras_lightnets.export.describe import describe_tflite
from keras_lightnets.export.images import channels_last_data
from keras_lightnets.layers import QAT_LAYER_CLASSES, nested_layers
from keras_lightnets.layout import channels_last_twin, is_channels_first
from keras_lightnets.validation import check_choice, is_int

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8")


def check_quantization(quantization: Any) -> str:
    """``quantization`` after checking it is one of ``QUANTIZATION_MODES``."""
    check_choice("quantization", quantization, QUANTIZATION_MODES)
    return quantization


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


def qat_per_channel(model: Any) -> bool:
    """Whether a QAT model (``compression.quantize_aware``) quantizes any kernel per output
    channel (its weight quantizers' ``per_axis``), i.e. its int8 file has a scale per channel."""
    for layer in nested_layers(model):
        config, inner = getattr(layer, "quantize_config", None), getattr(layer, "layer", None)
        if config is None or inner is None:
            continue
        if any(getattr(quantizer, "per_axis", False) for _, quantizer in config.get_weights_and_quantizers(inner)):
            return True
    return False


def exportable(model: Any, *data: Any, what: str) -> tuple[Any, ...]:
    """``(model, *data)`` ready for TFLite: ``model`` must be a Keras model
    (``model_flavour``) on the TensorFlow backend, and a channels-first Keras 3 model
    is replaced by its channels-last twin (``layout.channels_last_twin``: same weights,
    outputs checked) with its data moved to channels-last, since TFLite files (and
    XNNPACK) are NHWC."""
    from keras_lightnets._backend import require_tensorflow_backend

    flavour = model_flavour(model)
    require_tensorflow_backend(what, model)
    if flavour == "keras" and is_channels_first(model):
        return (channels_last_twin(model), *(channels_last_data(d) for d in data))
    return (model, *data)


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


def resolve_input_shape(model: Any, input_shape: Sequence[int] | None) -> tuple[tuple[int, int, int], str]:
    """``((H, W, C), input dtype name)`` to convert for: the model's shape, or ``input_shape``
    where the model leaves dims open."""
    known, dtype = _model_input(model)
    if input_shape is not None:
        ok = isinstance(input_shape, Sequence) and len(input_shape) == 3 and all(
            is_int(d) and d > 0 for d in input_shape)
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


def check_tflite_path(path: Any) -> str:
    """``path`` as a str, after checking it is an existing, parseable ``.tflite`` file (``InputError`` if not)."""
    if not isinstance(path, str | os.PathLike) or not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"`path` must be an existing .tflite file; received path={path!r}")
    describe_tflite(path)
    return os.fspath(path)
