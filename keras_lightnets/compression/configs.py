"""How TFMOT quantizes the layers its default 8-bit scheme does not cover: one table.

``QUANTIZE_POLICY`` maps a layer class name to its ``Policy``, as TFMOT's
``default_8bit_quantize_registry`` keeps ``_LAYER_QUANTIZE_INFO``: the package's layers
(``keras_lightnets.layers``) and the standard Keras layers TFMOT has no config for.
Two configs do all the work, because every layer involved is weightless:

* ``OutputQuantizeConfig``: fake-quantize the layer's output (8 bits, asymmetric,
  per tensor, moving-average range), as TFMOT does for ``Add`` or ``ReLU``, and
  the values between the layer's TFLite ops that its policy names (``points``). For
  layers that compute new values: ``HardSigmoid``, ``HardSwish``, ``Rescale``, Keras'
  ``Multiply`` (squeeze-and-excite) and ``Rescaling``. (A ``BatchNormalization`` that
  follows no convolution, as in NASNet, is frozen into a per-channel ``Rescale`` before
  QAT: see ``compression.qat``.)
* ``PassThroughQuantizeConfig``: quantize nothing. For layers that only move
  values (``ChannelSplit``, ``ChannelShuffle``, Keras' ``CenterCrop``) or resample
  them (Keras' ``Resizing``): int8 in, int8 out at the same scale. Also for a
  detector's post-processing (``DecodeBoxes``, ``ClassScores``, ``NonMaxSuppression``):
  float maths on the network's outputs (pixels, probabilities, indices) that stays
  float, so nothing in it is fake-quantized (``DecodeBoxes``' anchors included).

``config_for`` answers for any layer. This module imports TFMOT, so it is only
imported by the compression functions.
"""

from __future__ import annotations

import dataclasses

import tensorflow_model_optimization as tfmot

from keras_lightnets.layers import LAYER_NAMES
from keras_lightnets.layers.mixins import LayerMixin

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
_quantizers = tfmot.quantization.keras.quantizers


@dataclasses.dataclass(frozen=True)
class Policy:
    """How one layer class is quantized.

    ``output``: ``True`` fake-quantizes the layer's output (``OutputQuantizeConfig``: the
    layer computes new values); ``False`` quantizes no output (``PassThroughQuantizeConfig``:
    the layer only moves or resamples values, int8 in is int8 out at the same scale).
    ``points``: the layer's attributes holding identity activations that mark values
    between its TFLite ops; QAT fake-quantizes them too (a full-int8 file needs a range
    for every tensor), and the layer then traces its int8 form (``int8_graph``).
    """

    output: bool
    points: tuple[str, ...] = ()


_OUTPUT = Policy(output=True)
_PASS_THROUGH = Policy(output=False)

# Layer class name -> Policy: the package's layers, then standard Keras layers TFMOT has no config for.
QUANTIZE_POLICY: dict[str, Policy] = {
    "HardSigmoid": Policy(output=True, points=("intermediate",)),
    "HardSwish": Policy(output=True, points=("scaled", "gate")),
    "Rescale": Policy(output=True, points=("intermediate",)),
    "ChannelShuffle": _PASS_THROUGH,
    "ChannelSplit": _PASS_THROUGH,
    "DecodeBoxes": _PASS_THROUGH,  # float post-processing: quantize nothing
    "ClassScores": _PASS_THROUGH,
    "NonMaxSuppression": _PASS_THROUGH,
    "Multiply": _OUTPUT,  # squeeze-and-excite
    "Rescaling": _OUTPUT,
    "Resizing": _PASS_THROUGH,  # an int8 resize keeps its input's scale
    "CenterCrop": _PASS_THROUGH,
}

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


def policy_for(layer) -> Policy | None:
    """``layer``'s entry of ``QUANTIZE_POLICY``, or ``None`` (a class named like one of the
    package's layers that is not one of them has none)."""
    name = type(layer).__name__
    if name in LAYER_NAMES and not isinstance(layer, LayerMixin):
        return None
    return QUANTIZE_POLICY.get(name)


def _points(layer) -> tuple[str, ...]:
    """Names of the attributes marking values inside ``layer`` (its policy's ``points``)."""
    policy = policy_for(layer)
    return policy.points if policy is not None else ()


class OutputQuantizeConfig(_QuantizeConfig):
    """Quantize the output of a weightless layer (8-bit, asymmetric, per tensor), and the
    values between its ops that its policy names (``Policy.points``, e.g.
    ``intermediate``; TFMOT wraps each as a post-quantized ``linear`` activation).
    The layer then traces its int8 form."""

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
    """The package's QuantizeConfig for ``layer`` (tf_keras, from ``QUANTIZE_POLICY``), or
    ``None`` to leave it to TFMOT."""
    policy = policy_for(layer)
    if policy is None:
        return None
    return OutputQuantizeConfig() if policy.output else PassThroughQuantizeConfig()
