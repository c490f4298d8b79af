"""TFMOT ``QuantizeConfig``s for what TFMOT's default 8-bit scheme does not cover.

Two configs do all the work, because every layer involved is weightless:

* ``OutputQuantizeConfig``: fake-quantize the layer's output (8 bits, asymmetric,
  per tensor, moving-average range), as TFMOT does for ``Add`` or ``ReLU``, and
  the values between a layer's ops that it marks. For layers that compute
  new values: ``HardSigmoid``, ``HardSwish``, ``Rescale``, Keras' ``Multiply``
  (squeeze-and-excite) and ``Rescaling``. (A ``BatchNormalization`` that follows
  no convolution, as in NASNet, is frozen into a per-channel ``Rescale`` before
  QAT: see ``compression.qat``.)
* ``PassThroughQuantizeConfig``: quantize nothing. For layers that only move
  values (``ChannelSplit``, ``ChannelShuffle``, Keras' ``CenterCrop``) or resample
  them (Keras' ``Resizing``): int8 in, int8 out at the same scale.

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
# Standard Keras layers TFMOT has no config for that only resample or cut values (an int8 resize keeps
# its input's scale): ``PassThroughQuantizeConfig``.
STANDARD_PASS_THROUGH = ("Resizing", "CenterCrop")
# A BatchNormalization right after one of these is folded into it by TFMOT's transforms.
FOLDABLE_INTO = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


class _PrefixedQuantizer(_quantizers.MovingAverageQuantizer):
    """TFMOT's activation quantizer with a prefix on its variable names.

    TFMOT names the range variables of every activation it wraps ``post_activation_min``
    / ``_max``; a layer that marks two values (``HardSwish``) would hold two variables of
    the same name, which an ``.h5`` file cannot store.
    """

    def __init__(self, prefix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, f"{self.prefix}{name}", layer)

    def get_config(self):
        return {**super().get_config(), "prefix": self.prefix}


def _activation_quantizer(prefix: str = ""):
    return _PrefixedQuantizer(prefix, num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


def _points(layer) -> tuple[str, ...]:
    """Names of the attributes marking values inside ``layer`` (``quantize_points``)."""
    return tuple(getattr(layer, "quantize_points", ()))


class OutputQuantizeConfig(_QuantizeConfig):
    """Quantize the output of a weightless layer (8-bit, asymmetric, per tensor), and the
    values between its ops that the layer marks (``layer.quantize_points``, e.g.
    ``intermediate``, see ``keras_lightnets.layers``; TFMOT wraps each as a
    post-quantized ``linear`` activation). The layer then traces its int8 form."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        # The first point keeps TFMOT's variable names; the others are prefixed with their own.
        return [(getattr(layer, point), _activation_quantizer("" if i == 0 else f"{point}_"))
                for i, point in enumerate(_points(layer))]

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        points = _points(layer)
        for point, activation in zip(points, quantize_activations, strict=True):
            setattr(layer, point, activation)
        if hasattr(layer, "int8_graph"):
            layer.int8_graph = True  # a QAT model exists to become int8: trace the int8 form

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
    if type(layer).__name__ in STANDARD_PASS_THROUGH:
        return PassThroughQuantizeConfig()
    return None
