"""TFMOT ``QuantizeConfig``s for what TFMOT's default 8-bit scheme does not cover.

Two configs do all the work, because every layer involved is weightless:

* ``OutputQuantizeConfig``: fake-quantize the layer's output (8 bits, asymmetric,
  per tensor, moving-average range), as TFMOT does for ``Add`` or ``ReLU``. For
  layers that compute new values: ``HardSigmoid``, ``HardSwish``, ``Rescale``,
  Keras' ``Multiply`` (squeeze-and-excite) and ``Rescaling``, and a
  ``BatchNormalization`` that follows no convolution (NASNet), which TFLite runs
  as an int8 multiply-add.
* ``PassThroughQuantizeConfig``: quantize nothing. For layers that only move
  values (``ChannelSplit``, ``ChannelShuffle``): int8 in, the same int8 out.

The package's layers declare their config themselves (``layer.quantize_config()``
in ``keras_lightnets.layers``); ``config_for`` answers for any layer. This module
imports TFMOT, so it is only imported by the compression functions.
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
_quantizers = tfmot.quantization.keras.quantizers

# Standard Keras layers TFMOT has no config for, and the config they get here.
# BatchNormalization gets it only where no conv/dense precedes it (TFMOT folds those).
STANDARD_LAYER_CONFIGS = ("Multiply", "Rescaling", "BatchNormalization")
FOLDABLE_INTO = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def _activation_quantizer():
    return _quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class OutputQuantizeConfig(_QuantizeConfig):
    """Quantize the output of a weightless layer (8-bit, asymmetric, per tensor), and the
    value between its two ops when the layer marks one (``layer.intermediate``, see
    ``keras_lightnets.layers``; TFMOT wraps it as a post-quantized ``linear`` activation)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        if hasattr(layer, "intermediate"):
            return [(layer.intermediate, _activation_quantizer())]
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        if hasattr(layer, "intermediate"):
            (layer.intermediate,) = quantize_activations

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]

    def get_config(self):
        return {}


class PassThroughQuantizeConfig(OutputQuantizeConfig):
    """Quantize nothing: the layer only reorders values, so int8 in is int8 out."""

    def get_output_quantizers(self, layer):
        return []


CONFIG_CLASSES = {"OutputQuantizeConfig": OutputQuantizeConfig, "PassThroughQuantizeConfig": PassThroughQuantizeConfig}


def _inbound_class_names(layer) -> list[str]:
    names = []
    for node in layer.inbound_nodes:
        for inbound in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
            names.append(type(inbound).__name__)
    return names


def config_for(layer):
    """The package's QuantizeConfig for ``layer`` (tf_keras), or ``None`` to leave it to TFMOT.

    ``None`` also for a ``BatchNormalization`` right after a conv or dense layer,
    which TFMOT's transforms fold into that layer.
    """
    declared = getattr(layer, "quantize_config", None)
    if callable(declared):
        return declared()
    kind = type(layer).__name__
    if kind not in STANDARD_LAYER_CONFIGS:
        return None
    if kind == "BatchNormalization" and any(k in FOLDABLE_INTO for k in _inbound_class_names(layer)):
        return None
    return OutputQuantizeConfig()
