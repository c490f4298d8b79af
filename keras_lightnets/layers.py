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

The layers that know about channels (``Rescale`` per channel, ``ChannelShuffle``,
``ChannelSplit``) take a ``data_format`` like Keras' own image layers:
``"channels_last"`` ``(batch, height, width, channels)`` or ``"channels_first"``
``(batch, channels, height, width)``; ``None`` (the default) means the flavour's
``image_data_format()`` when the layer is created, and the resolved value is saved in
the layer's config (a config without one is channels-last: every file before it was).
All layers keep the shape (``ChannelSplit`` returns ``groups`` tensors of
``channels / groups`` channels each).

In Keras 3 ``call`` uses only ``keras.ops``, so the layers run on every Keras 3
backend (TensorFlow, JAX, PyTorch); the tf_keras twins use TensorFlow ops.

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
import importlib.abc
import sys
import warnings
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np

from keras_lightnets import _backend

PACKAGE = "keras_lightnets"
LAYER_NAMES = ("HardSigmoid", "HardSwish", "Rescale", "ChannelShuffle", "ChannelSplit")
DATA_FORMATS = ("channels_last", "channels_first")


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

    class _Layout:
        """Mixin of the layers that find the channel axis from ``data_format``."""

        def _set_data_format(self, data_format) -> None:
            if data_format is None:
                data_format = keras.backend.image_data_format()
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
    class Rescale(_Layout, _TwoStep):
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
                return (self.intermediate(inputs * _channels_first_constant(self.scale, rank))
                        + _channels_first_constant(self.offset, rank))
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

    def _channels_first_constant(value, rank: int):
        """A per-channel list as a constant ``(C, 1, ..., 1)`` broadcasting over axis 1; a float as is."""
        if not isinstance(value, list):
            return value
        return ops.constant(np.asarray(value, np.float32).reshape((len(value),) + (1,) * max(rank - 2, 0)))

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

    def _check_channels(layer_name: str, input_shape, groups: int, axis: int = -1) -> int:
        channels = input_shape[axis] if len(input_shape) == 4 else None
        if channels is None or channels % groups:
            layout = "(batch, channels, height, width)" if axis == 1 else "(batch, height, width, channels)"
            raise ValueError(
                f"{layer_name} expects {layout} with channels divisible "
                f"by groups={groups}; received input shape {tuple(input_shape)}"
            )
        return channels

    @register()
    class ChannelShuffle(_Layout, _Elementwise):
        """Shuffle channels across ``groups``: channel ``g * (C/groups) + k`` moves to
        ``k * groups + g`` (torchvision's ``channel_shuffle``), on ``(N, H, W, C)``
        (``(N, C, H, W)`` with ``data_format="channels_first"``)."""

        quantize_mode = "pass_through"

        def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self.groups = _check_groups("ChannelShuffle", groups)
            self._set_data_format(data_format)

        def build(self, input_shape):
            _check_channels("ChannelShuffle", input_shape, self.groups, self.channel_axis)
            super().build(input_shape)

        def call(self, inputs, mask=None):
            shape = ops.shape(inputs)
            channels = inputs.shape[self.channel_axis]
            if self.channel_axis == 1:
                x = ops.reshape(inputs, (-1, self.groups, channels // self.groups, shape[2], shape[3]))
                x = ops.transpose(x, (0, 2, 1, 3, 4))
                return ops.reshape(x, (-1, channels, shape[2], shape[3]))
            x = ops.reshape(inputs, (-1, shape[1], shape[2], self.groups, channels // self.groups))
            x = ops.transpose(x, (0, 1, 2, 4, 3))
            return ops.reshape(x, (-1, shape[1], shape[2], channels))

        def get_config(self):
            return {**super().get_config(), "groups": self.groups}

    @register()
    class ChannelSplit(_Layout, _Weightless):
        """Split ``(N, H, W, C)`` into ``groups`` tensors of ``(N, H, W, C/groups)``
        (the channel axis 1 with ``data_format="channels_first"``)."""

        quantize_mode = "pass_through"

        def __init__(self, groups: int = 2, data_format: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self.groups = _check_groups("ChannelSplit", groups)
            self._set_data_format(data_format)

        def build(self, input_shape):
            _check_channels("ChannelSplit", input_shape, self.groups, self.channel_axis)
            super().build(input_shape)

        def call(self, inputs, mask=None):
            return list(ops.split(inputs, self.groups, axis=self.channel_axis))

        def compute_output_shape(self, input_shape):
            channels = _check_channels("ChannelSplit", input_shape, self.groups, self.channel_axis)
            part = list(input_shape)
            part[self.channel_axis] = channels // self.groups
            return [tuple(part)] * self.groups

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
    ``keras.saving.load_model`` (or tf_keras') finds them. For Keras 3, ``import
    keras_lightnets`` does this (now, or as soon as ``keras`` is imported); for tf_keras,
    ``import keras_lightnets.legacy`` does; building any model does too."""
    _define(_backend.check_flavour(flavour))


# TFMOT's layers, by class name (recognised without importing TFMOT): the wrappers that hold
# one of the model's layers, and the layers a quantization-aware (QAT) model contains.
WRAPPER_CLASSES = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeAnnotate")
QAT_LAYER_CLASSES = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")


def unwrap(layer):
    """The layer inside TFMOT wrappers (pruning, quantization), or ``layer`` itself."""
    while type(layer).__name__ in WRAPPER_CLASSES:
        layer = layer.layer
    return layer


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


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    """Registers the Keras 3 layers the moment ``import keras`` finishes, in whatever order
    ``keras`` and ``keras_lightnets`` are imported (Keras 3 resolves a saved
    ``"keras_lightnets>Rescale"`` only through its registry; it never imports our module).

    It finds nothing itself: it asks the other finders for ``keras`` and wraps the loader
    so that registration runs right after Keras' own module code, then steps aside.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """``keras``' own loader, then ``register("keras")``; puts the original loader back."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        _stop_watching()
        try:
            register("keras")
        except Exception as err:  # never break `import keras`; loading a file will name the layer
            warnings.warn(f"keras_lightnets could not register its layers with Keras: {err}", stacklevel=2)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


def _stop_watching() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterWhenImported)]


# `import keras_lightnets` stays free of TensorFlow (fast CLI, one-line errors). When Keras
# is already loaded, registering costs nothing; otherwise it happens when Keras is imported,
# so `.keras` files load in a fresh process whatever the import order.
if "keras" in sys.modules:
    register("keras")
elif not any(isinstance(f, _RegisterWhenImported) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenImported())
