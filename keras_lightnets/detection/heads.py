"""The layers between a backbone's feature maps and a detector's outputs (SSDLite, RetinaNet).

Every op is a Keras layer of the active flavour (``_backend.keras_module()``: Keras 3 or
tf_keras), named from a ``prefix``; a convolution followed by BatchNorm has no bias, and conv,
BatchNorm and activation are separate layers (as in ``models.blocks``), so TFMOT can fold and
quantize each op. Images are channels-last (the builders refuse channels-first).

* ``extra_block``: torchvision SSDLite's extra block (1x1 conv, 3x3 stride-2 depthwise, 1x1
  conv, each -> BatchNorm -> ReLU6); also the stride-32 map added to a backbone without one.
* ``ssdlite_heads``: per level a 3x3 depthwise -> BatchNorm -> ReLU6 -> 1x1 conv with bias,
  separately for class logits and box deltas.
* ``fpn``: torchvision's ``FeaturePyramidNetwork`` + ``LastLevelP6P7`` (P3..P7).
* ``retinanet_heads``: the classification and regression subnets, one set of layers called on
  every level (shared weights).
* ``ssd_extra_block``: the classic SSD extra level (1x1 conv -> ReLU -> 3x3 stride-2 conv -> ReLU,
  convolutions with bias and no BatchNorm, as in Liu et al. and pytorch-ssd's MobileNetV1-SSD).
* ``ssd_heads``: per level a plain 3x3 conv with bias, for class logits and for box deltas.
* ``flatten_levels``: per level ``Reshape((-1, k))``, then ``Concatenate(axis=1)``: the rows are in
  anchor order (level, y, x, anchor), the NHWC order of the conv outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras_lightnets import _backend
from keras_lightnets.layout import spatial_size
from keras_lightnets.models.blocks import BatchNorm, activation, conv_bn, pad_for_stride

# torchvision SSDLite: BatchNorm2d(eps=0.001, momentum=0.03), i.e. Keras momentum 0.97.
SSDLITE_BN = BatchNorm(epsilon=1e-3, momentum=0.97)


def extra_block(x, filters: int, *, prefix: str, bn: BatchNorm = SSDLITE_BN):
    """torchvision SSDLite ``_extra_block``: 1x1 conv to ``filters // 2`` -> 3x3 stride-2 depthwise
    (PyTorch's symmetric padding 1: ``ceil(size / 2)``) -> 1x1 conv to ``filters``, each -> BN -> ReLU6."""
    layers = _backend.keras_module().layers
    x = conv_bn(x, filters // 2, 1, name=f"{prefix}_expand", bn=bn, act="relu6")
    x, padding = pad_for_stride(x, 3, 2, "symmetric", f"{prefix}_dw_pad")
    x = layers.DepthwiseConv2D(3, strides=2, padding=padding, use_bias=False, name=f"{prefix}_dw")(x)
    x = bn(x, f"{prefix}_dw_bn")
    x = activation(x, "relu6", f"{prefix}_dw_relu6")
    return conv_bn(x, filters, 1, name=f"{prefix}_project", bn=bn, act="relu6")


def _prediction_block(x, filters: int, *, prefix: str, bn: BatchNorm = SSDLITE_BN):
    """torchvision SSDLite ``_prediction_block``: 3x3 depthwise -> BN -> ReLU6 -> 1x1 conv with bias."""
    layers = _backend.keras_module().layers
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{prefix}_dw")(x)
    x = bn(x, f"{prefix}_dw_bn")
    x = activation(x, "relu6", f"{prefix}_dw_relu6")
    return layers.Conv2D(filters, 1, use_bias=True, name=f"{prefix}_conv")(x)


MAX_CONCAT_INPUTS = 5  # the most inputs of a CONCATENATION that TFLite's XNNPACK delegate takes


def flatten_levels(maps: Sequence, width: int, *, prefix: str, name: str):
    """``(B, H_k, W_k, A * width)`` maps -> one ``(B, sum H_k W_k A, width)`` tensor named ``name``.

    More than ``MAX_CONCAT_INPUTS`` levels (SSD's six) are joined in groups first
    (``<prefix>_rows<k>``), so no ``CONCATENATION`` of the ``.tflite`` file falls outside XNNPACK;
    the rows keep their order.
    """
    layers = _backend.keras_module().layers
    rows = [layers.Reshape((-1, width), name=f"{prefix}_reshape{k}")(m) for k, m in enumerate(maps)]
    if len(rows) > MAX_CONCAT_INPUTS:
        groups = [rows[i:i + MAX_CONCAT_INPUTS - 1] for i in range(0, len(rows), MAX_CONCAT_INPUTS - 1)]
        rows = [g[0] if len(g) == 1 else layers.Concatenate(axis=1, name=f"{prefix}_rows{k}")(g)
                for k, g in enumerate(groups)]
    return layers.Concatenate(axis=1, name=name)(rows)


def ssdlite_heads(levels: Sequence, num_classes: int, anchors: int, *, prefix: str):
    """``(classes, boxes)``: ``(B, N, num_classes)`` logits and ``(B, N, 4)`` deltas, named
    ``"classes"`` and ``"boxes"``; one unshared prediction block per level and task."""
    classes = [_prediction_block(x, anchors * num_classes, prefix=f"{prefix}_cls{k}") for k, x in enumerate(levels)]
    boxes = [_prediction_block(x, anchors * 4, prefix=f"{prefix}_box{k}") for k, x in enumerate(levels)]
    return (
        flatten_levels(classes, num_classes, prefix=f"{prefix}_cls", name="classes"),
        flatten_levels(boxes, 4, prefix=f"{prefix}_box", name="boxes"),
    )


def ssd_extra_block(x, filters: int, *, prefix: str):
    """Classic SSD extra level: 1x1 conv to ``filters // 2`` -> ReLU -> 3x3 stride-2 conv to ``filters``
    (PyTorch's symmetric padding 1: ``ceil(size / 2)``) -> ReLU; both convs with bias, no BatchNorm."""
    layers = _backend.keras_module().layers
    x = layers.Conv2D(filters // 2, 1, name=f"{prefix}_reduce")(x)
    x = layers.ReLU(name=f"{prefix}_reduce_relu")(x)
    x, padding = pad_for_stride(x, 3, 2, "symmetric", f"{prefix}_pad")
    x = layers.Conv2D(filters, 3, strides=2, padding=padding, name=f"{prefix}_conv")(x)
    return layers.ReLU(name=f"{prefix}_relu")(x)


def ssd_heads(levels: Sequence, num_classes: int, anchors: int, *, prefix: str):
    """``(classes, boxes)`` named ``"classes"`` and ``"boxes"``: per level one 3x3 conv with bias for
    the ``anchors * num_classes`` logits and one for the ``anchors * 4`` deltas (classic SSD)."""
    layers = _backend.keras_module().layers
    classes = [layers.Conv2D(anchors * num_classes, 3, padding="same", name=f"{prefix}_cls{k}")(x)
               for k, x in enumerate(levels)]
    boxes = [layers.Conv2D(anchors * 4, 3, padding="same", name=f"{prefix}_box{k}")(x) for k, x in enumerate(levels)]
    return (
        flatten_levels(classes, num_classes, prefix=f"{prefix}_cls", name="classes"),
        flatten_levels(boxes, 4, prefix=f"{prefix}_box", name="boxes"),
    )


# ----------------------------------------------------------------------------- RetinaNet


def _match_axis(x, target: int, axis: int, *, prefix: str):
    """Make the upsampled ``x`` as long as ``target`` along ``axis`` (1: height, 2: width).

    torchvision upsamples with ``interpolate(size=lateral size, mode="nearest")``, source row
    ``floor(i * h / H)``. For the sizes a stride-2 step leaves (``H = 2h -/+ 1``) that is exactly
    doubling then dropping the last row (``2h - 1``) or repeating the first row once more
    (``2h + 1``), both done here with layers. Any other mismatch (never met with stride-2 backbones)
    is cropped or zero-padded at the bottom/right.
    """
    layers = _backend.keras_module().layers
    have = x.shape[axis]
    if have == target:
        return x

    def amount(n):
        return ((0, n), (0, 0)) if axis == 1 else ((0, 0), (0, n))

    if have > target:
        return layers.Cropping2D(amount(have - target), name=f"{prefix}_crop")(x)
    if have + 1 == target:  # == 2h + 1: torchvision repeats the first row (column) three times
        first = layers.Cropping2D(amount(have - 1), name=f"{prefix}_first")(x)
        return layers.Concatenate(axis=axis, name=f"{prefix}_repeat")([first, x])
    return layers.ZeroPadding2D(amount(target - have), name=f"{prefix}_pad")(x)


def upsample_nearest(x, *, prefix: str):
    """``(B, H, W, C)`` -> ``(B, 2H, 2W, C)``, every value repeated 2x2 (``UpSampling2D(2, "nearest")``).

    Built of ``Concatenate`` and ``Reshape`` (each pixel's channels twice = each pixel twice along
    the width; each row twice = each row twice along the height), which TFLite's XNNPACK delegate
    runs in float and int8; ``UpSampling2D`` converts to ``TILE`` ops, which it does not take.
    The last layer is named ``prefix``.
    """
    layers = _backend.keras_module().layers
    height, width = spatial_size(x, "channels_last")
    channels = int(x.shape[-1])
    pixels = layers.Concatenate(axis=-1, name=f"{prefix}_cols")([x, x])  # (H, W, 2C) = (H, 2W, C)
    rows = layers.Reshape((height, 2 * width * channels), name=f"{prefix}_rows_flat")(pixels)
    rows = layers.Concatenate(axis=-1, name=f"{prefix}_rows")([rows, rows])  # (H, 2 * 2WC) = (2H, 2W, C)
    return layers.Reshape((2 * height, 2 * width, channels), name=prefix)(rows)


def fpn(features: Sequence, channels: int, *, prefix: str):
    """P3..P7 from the stride 8, 16 and 32 maps (torchvision ``FeaturePyramidNetwork`` + ``LastLevelP6P7``).

    1x1 lateral convs (with bias); top-down: nearest 2x upsampling (``upsample_nearest``, made to
    the lateral's size by ``_match_axis``) + ``Add``; 3x3 output convs; P6 = 3x3/s2 conv on P5, P7 = 3x3/s2 conv on
    ReLU(P6) (symmetric padding 1, as PyTorch). Returns the five maps, finest first.
    """
    layers = _backend.keras_module().layers
    laterals = [
        layers.Conv2D(channels, 1, name=f"{prefix}_lateral{k}")(c) for k, c in zip((3, 4, 5), features, strict=True)
    ]
    merged = [laterals[-1]]
    for k in (4, 3):
        lateral = laterals[k - 3]
        top = upsample_nearest(merged[0], prefix=f"{prefix}_up{k}")
        height, width = spatial_size(lateral, "channels_last")
        top = _match_axis(top, height, 1, prefix=f"{prefix}_up{k}_h")
        top = _match_axis(top, width, 2, prefix=f"{prefix}_up{k}_w")
        merged.insert(0, layers.Add(name=f"{prefix}_add{k}")([lateral, top]))
    outputs = [
        layers.Conv2D(channels, 3, padding="same", name=f"{prefix}_output{k}")(m)
        for k, m in zip((3, 4, 5), merged, strict=True)
    ]
    p6, padding = pad_for_stride(outputs[-1], 3, 2, "symmetric", f"{prefix}_p6_pad")
    p6 = layers.Conv2D(channels, 3, strides=2, padding=padding, name=f"{prefix}_p6")(p6)
    p7 = layers.ReLU(name=f"{prefix}_p6_relu")(p6)
    p7, padding = pad_for_stride(p7, 3, 2, "symmetric", f"{prefix}_p7_pad")
    p7 = layers.Conv2D(channels, 3, strides=2, padding=padding, name=f"{prefix}_p7")(p7)
    return [*outputs, p6, p7]


def retinanet_heads(
    levels: Sequence, num_classes: int, anchors: int, *, prefix: str, num_convs: int = 4,
    prior_probability: float = 0.01,
):
    """``(classes, boxes)`` named ``"classes"`` and ``"boxes"``: torchvision's RetinaNet heads.

    Each is ``num_convs`` x (3x3 conv + ReLU) then a 3x3 conv, one set of layers called on every
    level (shared across levels). Kernels start as N(0, 0.01); the class logits' bias is
    ``-log((1 - p) / p)`` for ``p = prior_probability``, every other bias 0.
    """
    keras = _backend.keras_module()
    layers = keras.layers
    channels = levels[0].shape[-1]

    def kernel(seed):
        return keras.initializers.RandomNormal(stddev=0.01, seed=seed)

    def subnet(task: str, last_name: str, width: int, bias: float, seed: int):
        convs = [
            (layers.Conv2D(channels, 3, padding="same", kernel_initializer=kernel(seed + i),
                           name=f"{prefix}_{task}_conv{i}"),
             layers.ReLU(name=f"{prefix}_{task}_relu{i}"))
            for i in range(num_convs)
        ]
        last = layers.Conv2D(
            anchors * width, 3, padding="same", kernel_initializer=kernel(seed + num_convs),
            bias_initializer=keras.initializers.Constant(bias), name=f"{prefix}_{task}_{last_name}",
        )
        maps = []
        for x in levels:
            for conv, relu in convs:
                x = relu(conv(x))
            maps.append(last(x))
        return maps

    classes = subnet("cls", "logits", num_classes, -math.log((1.0 - prior_probability) / prior_probability), seed=0)
    boxes = subnet("box", "reg", 4, 0.0, seed=100)
    return (
        flatten_levels(classes, num_classes, prefix=f"{prefix}_cls", name="classes"),
        flatten_levels(boxes, 4, prefix=f"{prefix}_box", name="boxes"),
    )
