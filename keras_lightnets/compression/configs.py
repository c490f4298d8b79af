"""TFMOT ``QuantizeConfig``s for what TFMOT's default 8-bit scheme does not cover.

Two configs do all the work, because every layer involved is weightless:

* ``OutputQuantizeConfig``: fake-quantize the layer's output (8 bits, asymmetric,
  per tensor, moving-average range), as TFMOT does for ``Add`` or ``ReLU``, and
  the value between a layer's two ops when it marks one. For layers that compute
  new values: ``HardSigmoid``, ``HardSwish``, ``Rescale``, Keras' ``Multiply``
  (squeeze-and-excite) and ``Rescaling``. (A ``BatchNormalization`` that follows
  no convolution, as in NASNet, is frozen into a per-channel ``Rescale`` before
  QAT: see ``compression.qat``.)
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

# Standard Keras layers TFMOT has no config for, and that get ``OutputQuantizeConfig`` here.
STANDARD_LAYER_CONFIGS = ("Multiply", "Rescaling")
# A BatchNormalization right after one of these is folded into it by TFMOT's transforms.
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


def is_stray_batch_norm(layer) -> bool:
    """A ``BatchNormalization`` that TFMOT cannot fold: no conv or dense layer feeds it."""
    return type(layer).__name__ == "BatchNormalization" and not any(
        k in FOLDABLE_INTO for k in _inbound_class_names(layer))


def config_for(layer):
    """The package's QuantizeConfig for ``layer`` (tf_keras), or ``None`` to leave it to TFMOT."""
    declared = getattr(layer, "quantize_config", None)
    if callable(declared):
        return declared()
    if type(layer).__name__ in STANDARD_LAYER_CONFIGS:
        return OutputQuantizeConfig()
    return None
