"""Fold each BatchNormalization into the convolution before it (tf_keras functional models).

``fold_batch_norms(model)`` returns a copy of ``model`` in which every
``Conv2D``/``DepthwiseConv2D`` with a linear activation that feeds only a
``BatchNormalization`` over its channels becomes one convolution with a bias,
computing the BatchNormalization's inference-time map:

    scale  = gamma / sqrt(moving_variance + epsilon)          (per output channel)
    kernel = kernel * scale                                   (along the output channels)
    bias   = (bias - moving_mean) * scale + beta

The folded convolution keeps its name and the BatchNormalization layer is gone (its
consumers read the convolution). Pruned zeros stay zeros. Nothing else changes: the
graph is rebuilt from the model's own config, the other layers keep their weights.

Why: quantization-aware training with one range per kernel (``quantize_aware(per_channel=False)``)
fake-quantizes the kernel before TFLite's converter multiplies the BatchNormalization's
per-channel scale into it; the product is no longer representable with one scale, and
the converter leaves that convolution in float. Folded first, the range QAT learns is
the one the file uses. The statistics are frozen from then on, as is usual when a
trained model is fine-tuned quantization-aware.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

FOLDABLE_CONVS = ("Conv2D", "DepthwiseConv2D")


def normalizes_channels(batch_norm) -> bool:
    """Whether a BatchNormalization normalizes the last (channels) axis and only that one."""
    axis = batch_norm.axis
    if not isinstance(axis, int):
        axis = axis[0] if len(axis) == 1 else None
    return axis in (-1, len(batch_norm.input_shape) - 1)


def batch_norm_affine(batch_norm) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)`` per channel, float64: the BatchNormalization's inference-time map is
    ``x * scale + offset`` with ``scale = gamma / sqrt(moving_variance + epsilon)`` and
    ``offset = beta - moving_mean * scale`` (gamma 1 and beta 0 when the layer has none)."""
    scale = 1.0 / np.sqrt(np.asarray(batch_norm.moving_variance, dtype="float64") + batch_norm.epsilon)
    if batch_norm.gamma is not None:
        scale = scale * np.asarray(batch_norm.gamma, dtype="float64")
    offset = -np.asarray(batch_norm.moving_mean, dtype="float64") * scale
    if batch_norm.beta is not None:
        offset = offset + np.asarray(batch_norm.beta, dtype="float64")
    return scale, offset


def foldable_pairs(model, config: dict[str, Any] | None = None) -> dict[str, str]:
    """``{batch norm name: conv name}`` for each BatchNormalization ``fold_batch_norms`` folds.

    Read from the model's functional ``config`` (its own calls only: a layer shared with
    another model, as after ``clone_model`` or ``strip``, has more nodes than this model uses)."""
    config = model.get_config() if config is None else config
    by_name = {entry["config"]["name"]: entry for entry in config["layers"]}
    consumers: dict[str, int] = {}
    for entry in config["layers"]:
        for node in entry.get("inbound_nodes") or []:
            for source in node:
                consumers[source[0]] = consumers.get(source[0], 0) + 1
    for source in config["output_layers"]:
        consumers[source[0]] = consumers.get(source[0], 0) + 1
    pairs = {}
    for name, entry in by_name.items():
        nodes = entry.get("inbound_nodes") or []
        if entry["class_name"] != "BatchNormalization" or len(nodes) != 1 or len(nodes[0]) != 1:
            continue
        if not normalizes_channels(model.get_layer(name)):
            continue
        conv = by_name.get(nodes[0][0][0])
        if (conv is None or conv["class_name"] not in FOLDABLE_CONVS or len(conv.get("inbound_nodes") or []) != 1
                or consumers.get(conv["config"]["name"]) != 1 or conv["config"].get("activation") != "linear"):
            continue
        pairs[name] = conv["config"]["name"]
    return pairs


def folded_weights(conv, batch_norm) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, bias)`` of ``conv`` followed by ``batch_norm`` at inference, float32."""
    depthwise = type(conv).__name__ == "DepthwiseConv2D"
    kernel = np.asarray(conv.depthwise_kernel if depthwise else conv.kernel, dtype="float64")
    scale, offset = batch_norm_affine(batch_norm)
    bias = np.asarray(conv.bias, dtype="float64") if conv.use_bias else 0.0
    kernel = kernel * scale.reshape(kernel.shape[-2:] if depthwise else (-1,))
    return kernel.astype("float32"), (bias * scale + offset).astype("float32")


def fold_batch_norms(model, custom_objects: dict[str, Any] | None = None):
    """A copy of the tf_keras functional ``model`` with its foldable BatchNormalizations folded into
    the convolutions before them (see the module docstring); ``model`` itself when there is none."""
    config = copy.deepcopy(model.get_config())
    pairs = foldable_pairs(model, config)
    if not pairs:
        return model
    import tf_keras

    def rewire(entry: list) -> list:
        return [pairs.get(entry[0], entry[0]), *entry[1:]]

    layers = []
    for layer_config in config["layers"]:
        name = layer_config["config"]["name"]
        if name in pairs:
            continue
        if name in pairs.values():
            layer_config["config"]["use_bias"] = True
        layer_config["inbound_nodes"] = [[rewire(entry) for entry in node]
                                         for node in layer_config.get("inbound_nodes") or []]
        layers.append(layer_config)
    config["layers"] = layers
    config["output_layers"] = [rewire(entry) for entry in config["output_layers"]]
    folded = tf_keras.Model.from_config(config, custom_objects=custom_objects)
    batch_norm_of = {conv: bn for bn, conv in pairs.items()}
    for layer in folded.layers:
        source = model.get_layer(layer.name)
        if layer.name in batch_norm_of:
            layer.set_weights(list(folded_weights(source, model.get_layer(batch_norm_of[layer.name]))))
        else:
            layer.set_weights(source.get_weights())
    return folded
