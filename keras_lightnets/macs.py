"""Multiply-accumulate (MAC) counts of a Keras model (either flavour).

Counted: ``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D`` and ``Dense`` (one
MAC per weight use; biases, BatchNorm, activations, pooling and element-wise
ops are ignored, as in the papers). Layers wrapped by TFMOT (pruning or
quantization wrappers) are counted through the wrapped layer; nested models are
counted recursively. The count is for one image (batch size 1) at the model's
static input size.
"""

from __future__ import annotations

import math

from keras_lightnets.layers import unwrap


def _static(shape, layer_name: str) -> tuple[int, ...]:
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"cannot count MACs: layer {layer_name!r} has a dynamic shape {tuple(shape)}; "
            "build the model with a static input_shape, e.g. input_shape=(224, 224, 3)"
        )
    return dims


def layer_macs(layer) -> int:
    """MACs of one layer for one image (0 for layers that are not counted)."""
    inner = unwrap(layer)
    kind = type(inner).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
        if hasattr(inner, "layers") and kind in ("Functional", "Model", "Sequential"):
            return count_macs(inner)
        return 0
    in_shape = _static(layer.input.shape, layer.name)
    out_shape = _static(layer.output.shape, layer.name)
    if kind == "Dense":
        return math.prod(out_shape[:-1]) * in_shape[-1] * out_shape[-1]
    kh, kw = inner.kernel_size
    positions = out_shape[0] * out_shape[1]
    in_channels = in_shape[-1]
    if kind == "Conv2D":
        return positions * kh * kw * (in_channels // inner.groups) * out_shape[-1]
    depthwise = positions * kh * kw * in_channels * inner.depth_multiplier
    if kind == "DepthwiseConv2D":
        return depthwise
    return depthwise + positions * in_channels * inner.depth_multiplier * out_shape[-1]


def count_macs(model) -> int:
    """Total MACs of ``model`` for one image at its static input size."""
    return sum(layer_macs(layer) for layer in model.layers)
