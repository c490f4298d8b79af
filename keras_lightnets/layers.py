"""The package's custom layers: the only place where custom ops live.

Every operation a model needs that Keras has no layer for is a small, weightless,
serializable layer here, so that a graph never holds raw tensor arithmetic or a
``Lambda`` (models load under ``safe_mode=True``, and TFMOT sees every op):

=================  ===========================================================
``HardSigmoid``    ``relu6(x + 3) / 6`` (the Keras 3 definition)
``HardSwish``      ``x * relu6(x + 3) / 6``
``Rescale``        ``x * scale + offset``, per tensor or per channel (in-model preprocessing)
``ChannelShuffle`` channels ``(g, c/g)`` -> ``(c/g, g)`` (ShuffleNet)
``ChannelSplit``   equal split of the channel axis into ``groups`` tensors
=================  ===========================================================

Each layer is weightless (``get_prunable_weights()`` is empty) and declares its
TFMOT ``QuantizeConfig`` through ``quantize_config()`` (see
``keras_lightnets.compression.configs``; TFMOT is imported only then).

``call`` accepts (and ignores) the ``mask`` Keras or TFMOT wrappers pass after a
masking-aware layer such as ``Concatenate``.

All layers take and return channels-last tensors ``(batch, height, width, channels)``
and keep the shape (``ChannelSplit`` returns ``groups`` tensors of
``channels / groups`` channels each).

The same class body is defined once per Keras flavour (Keras 3 and tf_keras have
separate ``Layer`` base classes and separate serialization registries): use
``get_layer_class(name)`` or ``custom_objects()``. The Keras 3 classes are also
module attributes (``keras_lightnets.layers.HardSwish``); the tf_keras ones are on
``keras_lightnets.legacy``. Both register under the package name
``keras_lightnets``, e.g. ``"keras_lightnets>HardSwish"``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from types import SimpleNamespace

from keras_lightnets import _backend

PACKAGE = "keras_lightnets"
LAYER_NAMES = ("HardSigmoid", "HardSwish", "Rescale", "ChannelShuffle", "ChannelSplit")


def _tensor_ops(flavour: str) -> SimpleNamespace:
    """Backend ops used inside ``call``: Keras 3 ``keras.ops`` or TensorFlow for tf_keras."""
    if flavour == "keras":
        from keras import ops

        return SimpleNamespace(
            relu6=ops.relu6, reshape=ops.reshape, transpose=ops.transpose,
            shape=ops.shape, split=ops.split, constant=lambda v: ops.convert_to_tensor(v, "float32"),
        )
    import tensorflow as tf

    return SimpleNamespace(
        relu6=tf.nn.relu6, reshape=tf.reshape, transpose=tf.transpose,
        shape=tf.shape, split=tf.split, constant=lambda v: tf.constant(v, tf.float32),
    )


@functools.cache
def _define(flavour: str) -> dict[str, type]:
    """Define and register the custom layer classes for one Keras flavour."""
    keras = _backend.keras_module(flavour)
    ops = _tensor_ops(flavour)
    register = functools.partial(keras.saving.register_keras_serializable, package=PACKAGE)
    Layer = keras.layers.Layer

    class _Weightless(Layer):
        """Base of every layer here: no weights, so nothing to prune; a declared QuantizeConfig."""

        # "output": fake-quantize the output (the layer computes new values);
        # "pass_through": quantize nothing (the layer only moves values).
        quantize_mode = "output"
        # Attributes holding identity activations that mark values between the layer's
        # TFLite ops; QAT fake-quantizes them (a full-int8 file needs a range for every tensor).
        quantize_points: tuple[str, ...] = ()
        # True while the layer is traced for an int8 graph (set by its QuantizeConfig in QAT
        # and by ``int8_graph`` during int8 export); not serialized.
        int8_graph = False

        def get_prunable_weights(self) -> list:
            return []

        def quantize_config(self):
            """This layer's TFMOT ``QuantizeConfig`` (imports TFMOT; see ``compression.configs``)."""
            from keras_lightnets.compression import configs

            if self.quantize_mode == "output":
                return configs.OutputQuantizeConfig()
            return configs.PassThroughQuantizeConfig()

    class _Elementwise(_Weightless):
        """Base for shape-preserving layers."""

        def compute_output_shape(self, input_shape):
            return input_shape

    class _TwoStep(_Elementwise):
        """A layer of two TFLite ops. ``self.intermediate`` (identity) marks the value between
        them, so that quantization-aware training can fake-quantize it too (see
        ``compression.configs``): a full-int8 file needs a range for every tensor."""

        quantize_points = ("intermediate",)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.intermediate = keras.activations.linear

    @register()
    class HardSigmoid(_TwoStep):
        """``relu6(x + 3) / 6``, elementwise; any shape in, same shape out."""

        def call(self, inputs, mask=None):
            return self.intermediate(ops.relu6(inputs + 3.0)) * (1.0 / 6.0)

    @register()
    class HardSwish(_Elementwise):
        """``x * relu6(x + 3) / 6``, elementwise; any shape in, same shape out.

        Written ``x * (relu6(x + 3) * (1/6))``, which the TFLite converter fuses into one
        ``HARD_SWISH`` op: the fastest float form. XNNPACK has no int8 ``HARD_SWISH``, so
        for an int8 graph (``int8_graph``) the layer is written ``(x / 6) * relu6(x + 3)``
        instead: ``MUL``, ``ADD`` with a fused ``RELU6``, ``MUL``, all run by XNNPACK
        (about 3x faster than the unfused int8 ``HARD_SWISH`` kernel on MobileNetV3).
        ``self.scaled`` and ``self.gate`` (identities) mark its two inner values for QAT.
        """

        quantize_points = ("scaled", "gate")

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scaled = keras.activations.linear
            self.gate = keras.activations.linear

        def call(self, inputs, mask=None):
            if self.int8_graph:
                return self.scaled(inputs * (1.0 / 6.0)) * self.gate(ops.relu6(inputs + 3.0))
            return inputs * (ops.relu6(inputs + 3.0) * (1.0 / 6.0))

    @register()
    class Rescale(_TwoStep):
        """``x * scale + offset`` with constants (no weights): Python floats, or one
        float per channel (lists as long as the input's last axis).

        Used for in-model preprocessing, e.g. ``scale=1/127.5, offset=-1`` maps
        pixels in ``[0, 255]`` to ``[-1, 1]``.
        """

        def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = _floats("scale", scale)
            self.offset = _floats("offset", offset)

        def call(self, inputs, mask=None):
            width = _narrow_image_width(inputs.shape)
            return self.intermediate(inputs * _constant(self.scale, width)) + _constant(self.offset, width)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    def _floats(argument: str, value):
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(v, int | float) for v in value):
                raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
            return [float(v) for v in value]
        if not isinstance(value, int | float):
            raise ValueError(f"Rescale: `{argument}` must be a float or a list of floats; received {value!r}")
        return float(value)

    def _constant(value, width: int | None = None):
        """A per-channel list as a constant ``(C,)``, or tiled to ``(width, C)``; a float as is."""
        if not isinstance(value, list):
            return value
        return ops.constant([value] * width if width else value)

    def _narrow_image_width(shape) -> int | None:
        """The width of an image batch with few channels (``(B, H, W, C)``, ``C`` < 8), else None.

        LiteRT/XNNPACK broadcasts a per-channel constant one innermost row at a time: for
        a 3-channel image that is one tiny call per pixel (doubling the int8 latency of a
        small ShuffleNet). A constant tiled to ``(W, C)`` makes the rows ``W * C`` long.
        """
        if len(shape) == 4 and shape[2] is not None and shape[3] is not None and shape[3] < 8:
            return int(shape[2])
        return None

    def _check_groups(layer_name: str, groups: int) -> int:
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{layer_name}: `groups` must be a positive int; received groups={groups!r}")
        return groups

    def _check_channels(layer_name: str, input_shape, groups: int) -> int:
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels is None or channels % groups:
            raise ValueError(
                f"{layer_name} expects (batch, height, width, channels) with channels divisible "
                f"by groups={groups}; received input shape {tuple(input_shape)}"
            )
        return channels

    @register()
    class ChannelShuffle(_Elementwise):
        """Shuffle channels across ``groups``: channel ``g * (C/groups) + k`` moves to
        ``k * groups + g`` (torchvision's ``channel_shuffle``), on ``(N, H, W, C)``."""

        quantize_mode = "pass_through"

        def __init__(self, groups: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.groups = _check_groups("ChannelShuffle", groups)

        def build(self, input_shape):
            _check_channels("ChannelShuffle", input_shape, self.groups)
            super().build(input_shape)

        def call(self, inputs, mask=None):
            shape = ops.shape(inputs)
            channels = inputs.shape[-1]
            x = ops.reshape(inputs, (-1, shape[1], shape[2], self.groups, channels // self.groups))
            x = ops.transpose(x, (0, 1, 2, 4, 3))
            return ops.reshape(x, (-1, shape[1], shape[2], channels))

        def get_config(self):
            return {**super().get_config(), "groups": self.groups}

    @register()
    class ChannelSplit(_Weightless):
        """Split ``(N, H, W, C)`` into ``groups`` tensors of ``(N, H, W, C/groups)``."""

        quantize_mode = "pass_through"

        def __init__(self, groups: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.groups = _check_groups("ChannelSplit", groups)

        def build(self, input_shape):
            _check_channels("ChannelSplit", input_shape, self.groups)
            super().build(input_shape)

        def call(self, inputs, mask=None):
            return list(ops.split(inputs, self.groups, axis=-1))

        def compute_output_shape(self, input_shape):
            channels = _check_channels("ChannelSplit", input_shape, self.groups)
            part = (*tuple(input_shape)[:-1], channels // self.groups)
            return [part] * self.groups

        def get_config(self):
            return {**super().get_config(), "groups": self.groups}

    classes = {
        "HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "Rescale": Rescale,
        "ChannelShuffle": ChannelShuffle, "ChannelSplit": ChannelSplit,
    }
    for cls in classes.values():
        cls.__module__ = __name__ if flavour == "keras" else "keras_lightnets.legacy"
    return classes


def get_layer_class(name: str, flavour: str | None = None) -> type:
    """The custom layer class ``name`` for ``flavour`` (default: the active flavour)."""
    if name not in LAYER_NAMES:
        raise ValueError(f"unknown layer {name!r}; allowed values: {', '.join(LAYER_NAMES)}")
    return _define(_backend.check_flavour(flavour or _backend.current_flavour()))[name]


def custom_objects(flavour: str | None = None) -> dict[str, type]:
    """``{class name: class}`` for every custom layer of ``flavour``, for ``custom_objects=``."""
    return dict(_define(_backend.check_flavour(flavour or _backend.current_flavour())))


def __getattr__(name: str) -> type:
    if name in LAYER_NAMES:
        return get_layer_class(name, "keras")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(flavour: str = "keras") -> None:
    """Register the package's layers with ``flavour``'s serialization, so that
    ``keras.saving.load_model`` (or tf_keras') finds them. Building any model does
    this too; call it before loading a file in a fresh process."""
    _define(_backend.check_flavour(flavour))


def nested_layers(model) -> Iterator:
    """Every layer of ``model``, depth first: nested models' layers and the layer inside each
    TFMOT wrapper (``QuantizeWrapper``, ``PruneLowMagnitude``) included."""
    for layer in getattr(model, "layers", []):
        yield layer
        inner = getattr(layer, "layer", None)
        if inner is not None:
            yield inner
        yield from nested_layers(layer)


@contextlib.contextmanager
def int8_graph(model) -> Iterator[None]:
    """While active, the package's layers in ``model`` (nested models and TFMOT wrappers
    included) trace in their int8 form (see ``HardSwish``): wrap an int8 conversion in it."""
    layers = [layer for layer in nested_layers(model) if hasattr(layer, "quantize_points")]
    before = [layer.int8_graph for layer in layers]
    try:
        for layer in layers:
            layer.int8_graph = True
        yield
    finally:
        for layer, value in zip(layers, before, strict=True):
            layer.int8_graph = value


# `import keras_lightnets` stays free of TensorFlow (fast CLI, one-line errors); when Keras
# is already loaded, registering costs nothing, so `.keras` files load right away.
if "keras" in sys.modules:
    register("keras")
