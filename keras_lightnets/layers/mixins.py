"""The logic of every package layer, written once and flavour-neutral.

Each ``*Mixin`` holds a layer's whole body (``__init__`` checks, ``call``, shapes,
config); ``keras3.py`` and ``tfkeras.py`` put it in front of their flavour's
``Layer`` base and set ``ops`` (the flavour's tensor functions), in two lines per
layer. Nothing here imports Keras or TensorFlow.

Shapes: ``(batch, height, width, channels)`` for ``data_format="channels_last"``,
``(batch, channels, height, width)`` for ``"channels_first"``; every layer keeps the
shape except ``ChannelSplit`` (``groups`` tensors of ``channels / groups`` channels).
``call`` accepts (and ignores) the ``mask`` Keras or TFMOT wrappers pass after a
masking-aware layer such as ``Concatenate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

PACKAGE = "keras_lightnets"
LAYER_NAMES = ("HardSigmoid", "HardSwish", "Rescale", "ChannelShuffle", "ChannelSplit")
DATA_FORMATS = ("channels_last", "channels_first")


@dataclasses.dataclass(frozen=True)
class Ops:
    """The flavour's functions a layer body calls: ``keras.ops`` (Keras 3, every backend) or
    TensorFlow (tf_keras)."""

    relu6: Callable[[Any], Any]
    reshape: Callable[[Any, Any], Any]
    transpose: Callable[[Any, Any], Any]
    shape: Callable[[Any], Any]
    split: Callable[..., Any]
    constant: Callable[[Any], Any]  # array-like -> float32 tensor
    linear: Callable[[Any], Any]  # the flavour's identity activation (marks a value for QAT)
    image_data_format: Callable[[], str]


class LayerMixin:
    """Base of every package layer: weightless (nothing to prune, TFMOT's ``PrunableLayer`` API).

    How TFMOT quantizes each layer is ``compression.configs.QUANTIZE_POLICY``.
    """

    ops: ClassVar[Ops]
    # True while the layer is traced for an int8 graph (set by its QuantizeConfig in QAT
    # and by ``int8_graph`` during int8 export); not serialized.
    int8_graph = False

    def get_prunable_weights(self) -> list:
        return []


class ElementwiseMixin(LayerMixin):
    """Base of the shape-preserving layers."""

    def compute_output_shape(self, input_shape):
        return input_shape


class TwoStepMixin(ElementwiseMixin):
    """A layer of two TFLite ops. ``self.intermediate`` (identity) marks the value between
    them, so that quantization-aware training can fake-quantize it too (see
    ``compression.configs``): a full-int8 file needs a range for every tensor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.intermediate = self.ops.linear


class LayoutMixin:
    """Mixin of the layers that find the channel axis from ``data_format``: ``None`` means the
    flavour's ``image_data_format()`` at creation; the resolved value is saved in the config
    (a config without one is channels-last: every file before it was)."""

    def _set_data_format(self, data_format) -> None:
        if data_format is None:
            data_format = self.ops.image_data_format()
        if data_format not in DATA_FORMATS:
            raise ValueError(
                f"{type(self).__name__}: `data_format` must be None, 'channels_last' or "
                f"'channels_first'; received data_format={data_format!r}"
            )
        self.data_format = data_format
        self.channel_axis = 1 if data_format == "channels_first" else -1

    @classmethod
    def from_config(cls, config):
        # Files written before `data_format` existed were all channels-last.
        return super().from_config({"data_format": "channels_last", **config})

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class HardSigmoidMixin(TwoStepMixin):
    """``relu6(x + 3) / 6``, elementwise; any shape in, same shape out."""

    def call(self, inputs, mask=None):
        return self.intermediate(self.ops.relu6(inputs + 3.0)) * (1.0 / 6.0)


class HardSwishMixin(ElementwiseMixin):
    """``x * relu6(x + 3) / 6``, elementwise; any shape in, same shape out.

    Written ``x * (relu6(x + 3) * (1/6))``, which the TFLite converter fuses into one
    ``HARD_SWISH`` op: the fastest float form. XNNPACK has no int8 ``HARD_SWISH``, so
    for an int8 graph (``int8_graph``) the layer is written ``(x / 6) * relu6(x + 3)``
    instead: ``MUL``, ``ADD`` with a fused ``RELU6``, ``MUL``, all run by XNNPACK
    (about 3x faster than the unfused int8 ``HARD_SWISH`` kernel on MobileNetV3).
    ``self.scaled`` and ``self.gate`` (identities) mark its two inner values for QAT.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scaled = self.ops.linear
        self.gate = self.ops.linear

    def call(self, inputs, mask=None):
        if self.int8_graph:
            return self.scaled(inputs * (1.0 / 6.0)) * self.gate(self.ops.relu6(inputs + 3.0))
        return inputs * (self.ops.relu6(inputs + 3.0) * (1.0 / 6.0))


class RescaleMixin(LayoutMixin, TwoStepMixin):
    """``x * scale + offset`` with constants (no weights): Python floats, or one
    float per channel (lists as long as the input's channel axis, the last one or,
    with ``data_format="channels_first"``, axis 1).

    Used for in-model preprocessing, e.g. ``scale=1/127.5, offset=-1`` maps
    pixels in ``[0, 255]`` to ``[-1, 1]``.
    """

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0,
                 data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale = _floats("scale", scale)
        self.offset = _floats("offset", offset)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        if self.channel_axis == 1:
            rank = len(inputs.shape)
            return (self.intermediate(inputs * self._channels_first_constant(self.scale, rank))
                    + self._channels_first_constant(self.offset, rank))
        width = _narrow_image_width(inputs.shape)
        return self.intermediate(inputs * self._constant(self.scale, width)) + self._constant(self.offset, width)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    def _constant(self, value, width: int | None = None):
        """A per-channel list as a constant ``(C,)``, or tiled to ``(width, C)``; a float as is."""
        if not isinstance(value, list):
            return value
        return self.ops.constant([value] * width if width else value)

    def _channels_first_constant(self, value, rank: int):
        """A per-channel list as a constant ``(C, 1, ..., 1)`` broadcasting over axis 1; a float as is."""
        if not isinstance(value, list):
            return value
        return self.ops.constant(np.asarray(value, np.float32).reshape((len(value),) + (1,) * max(rank - 2, 0)))


def _floats(argument: str, value) -> float | list[float]:
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(v, int | float) for v in value):
            raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
        return [float(v) for v in value]
    if not isinstance(value, int | float):
        raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
    return float(value)


def _narrow_image_width(shape) -> int | None:
    """The width of an image batch with few channels (``(B, H, W, C)``, ``C`` < 8), else None.

    LiteRT/XNNPACK broadcasts a per-channel constant one innermost row at a time: for
    a 3-channel image that is one tiny call per pixel (doubling the int8 latency of a
    small ShuffleNet). A constant tiled to ``(W, C)`` makes the rows ``W * C`` long.
    """
    if len(shape) == 4 and shape[2] is not None and shape[3] is not None and shape[3] < 8:
        return int(shape[2])
    return None


class GroupsMixin(LayoutMixin):
    """Mixin of the layers that cut the channel axis into ``groups`` equal parts."""

    def _set_groups(self, groups: int) -> None:
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{type(self).__name__}: `groups` must be a positive int; received groups={groups!r}")
        self.groups = groups

    def _check_channels(self, input_shape) -> int:
        """The input's channel count; ``ValueError`` unless a 4-D shape with channels divisible by ``groups``."""
        channels = input_shape[self.channel_axis] if len(input_shape) == 4 else None
        if channels is None or channels % self.groups:
            layout = ("(batch, channels, height, width)" if self.channel_axis == 1
                      else "(batch, height, width, channels)")
            raise ValueError(
                f"{type(self).__name__} expects {layout} with channels divisible "
                f"by groups={self.groups}; received input shape {tuple(input_shape)}"
            )
        return channels

    def build(self, input_shape):
        self._check_channels(input_shape)
        super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class ChannelShuffleMixin(GroupsMixin, ElementwiseMixin):
    """Shuffle channels across ``groups``: channel ``g * (C/groups) + k`` moves to
    ``k * groups + g`` (torchvision's ``channel_shuffle``), on ``(N, H, W, C)``
    (``(N, C, H, W)`` with ``data_format="channels_first"``)."""

    def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self._set_groups(groups)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        ops = self.ops
        shape = ops.shape(inputs)
        channels = inputs.shape[self.channel_axis]
        if self.channel_axis == 1:
            x = ops.reshape(inputs, (-1, self.groups, channels // self.groups, shape[2], shape[3]))
            x = ops.transpose(x, (0, 2, 1, 3, 4))
            return ops.reshape(x, (-1, channels, shape[2], shape[3]))
        x = ops.reshape(inputs, (-1, shape[1], shape[2], self.groups, channels // self.groups))
        x = ops.transpose(x, (0, 1, 2, 4, 3))
        return ops.reshape(x, (-1, shape[1], shape[2], channels))


class ChannelSplitMixin(GroupsMixin, LayerMixin):
    """Split ``(N, H, W, C)`` into ``groups`` tensors of ``(N, H, W, C/groups)``
    (the channel axis 1 with ``data_format="channels_first"``)."""

    def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self._set_groups(groups)
        self._set_data_format(data_format)

    def call(self, inputs, mask=None):
        return list(self.ops.split(inputs, self.groups, axis=self.channel_axis))

    def compute_output_shape(self, input_shape):
        part = list(input_shape)
        part[self.channel_axis] = self._check_channels(input_shape) // self.groups
        return [tuple(part)] * self.groups
