"""Shared building blocks over the Functional API, for every family.

Each block takes a Keras image tensor in the active ``image_data_format()``
(``(batch, height, width, channels)``, or ``(batch, channels, height, width)`` for
channels-first; Keras' own layers read the same setting) and returns one, and
names every layer from a ``prefix`` so that weights load by name and layer names
are deterministic. Convolutions carry no bias when a
BatchNorm follows, and conv, BatchNorm and activation are separate layers, so
TFMOT can fold and quantize each op. The active Keras flavour (see ``_backend``)
decides whether Keras 3 or tf_keras layers are created.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_lightnets import _backend
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layout import channel_axis, channels, spatial_size
from keras_lightnets.models.builder import correct_pad

ACTIVATIONS = ("relu", "relu6", "hard_swish", "hard_sigmoid", "sigmoid")


@dataclass(frozen=True)
class BatchNorm:
    """BatchNormalization hyper-parameters of a family (Keras ``momentum`` convention)."""

    epsilon: float = 1e-3
    momentum: float = 0.99

    def __call__(self, x, name: str):
        keras = _backend.keras_module()
        return keras.layers.BatchNormalization(
            axis=channel_axis(), epsilon=self.epsilon, momentum=self.momentum, name=name
        )(x)


def activation(x, kind: str | None, name: str | None = None):
    """Apply the activation layer ``kind`` (one of ``ACTIVATIONS``; ``None`` is identity)."""
    if kind is None:
        return x
    layers = _backend.keras_module().layers
    if kind == "relu":
        return layers.ReLU(name=name)(x)
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    if kind == "hard_swish":
        return get_layer_class("HardSwish")(name=name)(x)
    if kind == "hard_sigmoid":
        return get_layer_class("HardSigmoid")(name=name)(x)
    if kind == "sigmoid":
        return layers.Activation("sigmoid", name=name)(x)
    raise ValueError(f"unknown activation {kind!r}; allowed values: {', '.join(ACTIVATIONS)}")


def pad_for_stride(x, kernel_size: int, stride: int, mode: str, name: str):
    """Pad ``x`` before a conv; returns ``(x, conv_padding)``.

    ``mode="tf"`` reproduces TensorFlow ``same`` for stride 2 with an explicit
    asymmetric ``ZeroPadding2D`` (keras.applications' ``correct_pad``);
    ``mode="symmetric"`` pads ``kernel_size // 2`` on every side, like PyTorch.
    ``mode="same"`` leaves it to the conv's own ``padding="same"``.
    Stride 1 with an odd kernel is ``same`` padding in every mode.
    """
    if stride == 1 or mode == "same":
        return x, "same"
    layers = _backend.keras_module().layers
    if mode == "tf":
        padding = correct_pad(spatial_size(x), kernel_size)
    elif mode == "symmetric":
        padding = kernel_size // 2
    else:
        raise ValueError(f"unknown padding mode {mode!r}; allowed values: 'tf', 'symmetric', 'same'")
    return layers.ZeroPadding2D(padding=padding, name=name)(x), "valid"


def conv_bn(
    x, filters: int, kernel_size: int, *, name: str, bn: BatchNorm, bn_name: str | None = None,
    stride: int = 1, act: str | None = None, act_name: str | None = None,
    pad_mode: str = "tf", pad_name: str | None = None, groups: int = 1,
):
    """``Conv2D`` (no bias) -> ``BatchNormalization`` -> optional activation.

    ``groups``: a grouped convolution (``Conv2D(groups=...)``; input channels and ``filters``
    divisible by it), e.g. ShuffleNet V1's pointwise group convolutions.
    """
    layers = _backend.keras_module().layers
    x, padding = pad_for_stride(x, kernel_size, stride, pad_mode, pad_name or f"{name}_pad")
    x = layers.Conv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=False, groups=groups, name=name
    )(x)
    x = bn(x, bn_name or f"{name}_bn")
    return activation(x, act, act_name or f"{name}_{act}")


def depthwise_bn(
    x, kernel_size: int, *, name: str, bn: BatchNorm, stride: int = 1, act: str | None = None,
    pad_mode: str = "symmetric",
):
    """``DepthwiseConv2D`` (no bias) -> ``BatchNormalization`` -> optional activation, named
    ``name``, ``{name}_pad`` (stride 2), ``{name}_bn``, ``{name}_{act}``; PyTorch's symmetric
    padding by default (``pad_for_stride``)."""
    layers = _backend.keras_module().layers
    x, padding = pad_for_stride(x, kernel_size, stride, pad_mode, f"{name}_pad")
    x = layers.DepthwiseConv2D(kernel_size, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = bn(x, f"{name}_bn")
    return activation(x, act, f"{name}_{act}")


def squeeze_excite(
    x, squeeze_filters: int, *, prefix: str, act: str = "relu", gate: str = "hard_sigmoid",
):
    """Squeeze-and-excite: global average -> 1x1 conv + ``act`` -> 1x1 conv + ``gate`` -> scale.

    Layer names follow keras.applications' MobileNetV3
    (``{prefix}squeeze_excite_conv``, ``..._conv_1``, ``..._mul``).
    """
    layers = _backend.keras_module().layers
    filters = channels(x)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(x)
    s = layers.Conv2D(squeeze_filters, 1, padding="same", name=f"{prefix}squeeze_excite_conv")(s)
    s = activation(s, act, f"{prefix}squeeze_excite_{act}")
    s = layers.Conv2D(filters, 1, padding="same", name=f"{prefix}squeeze_excite_conv_1")(s)
    s = activation(s, gate, f"{prefix}squeeze_excite_{gate}")
    return layers.Multiply(name=f"{prefix}squeeze_excite_mul")([x, s])


@dataclass(frozen=True)
class InvertedResidualNames:
    """Name suffixes of an inverted residual block (families differ only in these)."""

    bn: str = "_bn"
    pad: str = "depthwise_pad"
    act: str | None = None  # activation name suffix; None: the activation's kind

    def act_name(self, prefix: str, stage: str, kind: str) -> str:
        return f"{prefix}{stage}_{self.act or kind}"


def inverted_residual(
    x, *, expanded: int, filters: int, kernel_size: int, stride: int, prefix: str,
    bn: BatchNorm, act: str, se_filters: int | None = None, se_act: str = "relu",
    se_gate: str = "hard_sigmoid", names: InvertedResidualNames = InvertedResidualNames(),
    pad_mode: str = "tf", residual: bool = True, drop_path: float = 0.0,
):
    """MobileNetV2/V3, MnasNet and EfficientNet block: [1x1 expand] -> depthwise -> [SE] -> 1x1 project.

    ``expanded`` is the channel count inside the block; the 1x1 expansion conv is
    left out when it equals the input channels (expansion factor 1). A residual
    ``Add`` joins input and output when ``residual`` and the shapes agree
    (stride 1, same channels). ``drop_path`` > 0 puts stochastic depth on that
    residual branch (keras.applications EfficientNet's ``drop_connect_rate``): a
    ``Dropout`` named ``{prefix}drop`` with ``noise_shape`` ``(None, 1, 1, 1)``, which in
    training zeroes the whole branch of a sample with probability ``drop_path`` (and
    scales the kept ones by ``1 / (1 - drop_path)``); the identity at inference.
    """
    layers = _backend.keras_module().layers
    shortcut = x
    in_channels = channels(x)
    if expanded != in_channels:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{prefix}expand")(x)
        x = bn(x, f"{prefix}expand{names.bn}")
        x = activation(x, act, names.act_name(prefix, "expand", act))
    x, padding = pad_for_stride(x, kernel_size, stride, pad_mode, f"{prefix}{names.pad}")
    x = layers.DepthwiseConv2D(
        kernel_size, strides=stride, padding=padding, use_bias=False, name=f"{prefix}depthwise"
    )(x)
    x = bn(x, f"{prefix}depthwise{names.bn}")
    x = activation(x, act, names.act_name(prefix, "depthwise", act))
    if se_filters:
        x = squeeze_excite(x, se_filters, prefix=prefix, act=se_act, gate=se_gate)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = bn(x, f"{prefix}project{names.bn}")
    if residual and stride == 1 and in_channels == filters:
        if drop_path:
            x = layers.Dropout(drop_path, noise_shape=(None, 1, 1, 1), name=f"{prefix}drop")(x)
        x = layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


def classifier_or_pooling(
    x, *, include_top: bool, pooling: str | None, classes: int, classifier_activation,
    dropout: float = 0.0, dropout_name: str = "dropout", pool_names: tuple[str | None, str | None] = (None, None),
    use_bias: bool = True,
):
    """The usual end of a network: ``GlobalAveragePooling2D`` + ``Dense`` top, or the
    optional ``pooling`` ("avg"/"max") of a headless model.

    ``use_bias=False``: a classifier without bias (ShuffleNet V1's ``Linear(bias=False)``).
    Returns ``(batch, classes)`` with the top, ``(batch, channels)`` when pooled,
    else ``x`` unchanged.
    """
    layers = _backend.keras_module().layers
    if include_top:
        x = layers.GlobalAveragePooling2D(name=pool_names[0] or "avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=dropout_name)(x)
        return layers.Dense(classes, activation=classifier_activation, use_bias=use_bias, name="predictions")(x)
    return global_pool(x, pooling, pool_names)


def global_pool(x, pooling: str | None, names: tuple[str | None, str | None] = (None, None)):
    """Apply ``pooling`` ("avg", "max" or None) to a headless model's feature map."""
    layers = _backend.keras_module().layers
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=names[0] or "avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=names[1] or "max_pool")(x)
    return x
