"""Exact Keras twins of qfgaohao/pytorch-ssd's MobileNetV2-SSD-Lite and MobileNetV1-SSD.

``mb2_ssd_lite`` is ``create_mobilenetv2_ssd_lite(num_classes, width_mult)`` and ``mb1_ssd`` is
``create_mobilenetv1_ssd(num_classes)`` of github.com/qfgaohao/pytorch-ssd (commit 7a839cb,
MIT License), rebuilt layer by layer so that the reference's checkpoints port with no loss
(``weights=PATH``, or ``weights.torchvision.port_checkpoint(model, path, torch_mapping_mb2_ssd_lite)``)
and the model gives the reference's raw outputs to float32 rounding.

Both take ``(B, 300, 300, 3)`` RGB images, channels-last: with ``include_preprocessing=False``
the reference's normalised input ``(pixel - 127) / 128``; with ``True`` raw ``[0, 255]`` pixels,
normalised in the model by one ``layers.Rescale(scale=1/128, offset=-127/128)`` named
``"rescaling"`` (bit-exact: both steps are exact in float32 for integer pixels).

Outputs, as every detector of the package (``detection.builders``): a list ``[classes, boxes]``,
final layers named ``"classes"`` and ``"boxes"``: ``(B, 3000, num_classes)`` raw class logits
(one softmax per row, column 0 the background) and ``(B, 3000, 4)`` raw locations (pytorch-ssd's
coding: ``box_coding.decode_ssd`` with variances 0.1 / 0.2 against ``model.anchors``). Rows are
in the reference's order: level by level (19x19, 10x10, 5x5, 3x3, 2x2, 1x1), row-major over each
grid, then the 6 priors of a location. ``model.anchors`` is float32 ``(3000, 4)`` cx cy w h as
fractions of the image (pytorch-ssd's ``mobilenetv1_ssd_config.priors``, shared by both models);
``model.detector_info`` holds what ``builders`` documents (``DECODING_KEYS`` included).

Architecture (every op a layer; conv without bias -> BatchNorm (eps 1e-5) -> activation as
separate layers; PyTorch's symmetric padding: stride-2 convs are ``ZeroPadding2D(1)`` + a
``"valid"`` conv, as Keras ``"same"`` picks other windows on even sizes):

* ``mb2_ssd_lite``: pytorch-ssd's own MobileNetV2 (ReLU6; channels ``int(c * width_mult)``, no
  rounding to 8); the first level is taken inside ``base_net.14`` after its expansion conv +
  BN + ReLU6 (576 channels at width 1, 19x19), the second is the end of ``base_net`` (1280,
  10x10); four extra ``InvertedResidual`` blocks (stride 2, expand ratios 0.2, 0.25, 0.5,
  0.25) give 5x5, 3x3, 2x2, 1x1. Heads per level: ``SeperableConv2d`` = 3x3 depthwise conv
  *with* bias -> BN -> ReLU6 -> 1x1 conv with bias; the last level a plain 1x1 conv.
* ``mb1_ssd``: pytorch-ssd's MobileNetV1 (``conv_bn`` + 13 ``conv_dw``, ReLU); levels after
  ``base_net.11`` (512, 19x19) and ``base_net.13`` (1024, 10x10), then four extras of 1x1
  conv + ReLU, 3x3 stride-2 conv + ReLU (with biases): 5x5, 3x3, 2x2, 1x1 (512, 256, 256,
  256 channels). Heads: plain 3x3 convs with bias.

Keras layer names follow the reference's ``state_dict`` (``base_net_3_dw`` is in
``base_net.3.conv.3``), and ``torch_mapping_*`` derives the pairs from the names.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from keras_lightnets import _backend
from keras_lightnets.detection import heads
from keras_lightnets.detection.anchor_boxes import preset_anchors
from keras_lightnets.detection.builders import check_twin_arguments, finish_detector, level_info
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layout import image_data_format
from keras_lightnets.models.blocks import BatchNorm, activation, pad_for_stride
from keras_lightnets.models.builder import PREPROCESSING_LAYER
from keras_lightnets.weights.torchvision import port_checkpoint

IMAGE_SIZE = 300  # pixels per side; the priors are fixed to it
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
IMAGE_MEAN, IMAGE_STD = 127.0, 128.0  # mobilenetv1_ssd_config: (pixel - 127) / 128, RGB
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
SHRINKAGES = (16, 32, 64, 100, 150, 300)  # the config's stride per level, in pixels (what the priors assume)
ANCHORS_PER_LOCATION = 6  # min square, sqrt(min * max) square, ratios 2 and 3 both ways
BN = BatchNorm(epsilon=1e-5, momentum=0.9)  # torch BatchNorm2d defaults (momentum 0.1 = Keras 0.9)
SSD_DECODING: dict[str, Any] = {
    "score": "softmax", "background_class": 0, "box_coding": "ssd",
    "variances": (CENTER_VARIANCE, SIZE_VARIANCE), "anchor_format": "cxcywh_relative",
}

# pytorch-ssd MobileNetV2: (expand ratio t, channels c, repeats n, first stride s).
MB2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))
MB2_STEM, MB2_LAST = 32, 1280
MB2_TAP = 14  # GraphPath(14, 'conv', 3): the first level is inside base_net.14, after its expansion
MB2_EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (64, 0.25))  # (output channels, expand ratio), stride 2

# pytorch-ssd MobileNetV1.model: conv_bn(3, 32, 2), then conv_dw (output channels, stride).
MB1_STEM = 32
MB1_DW = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))
MB1_TAP = 12  # source_layer_indexes [12, 14]: after base_net[0:12] and after base_net[12:14]
MB1_EXTRAS = ((256, 512), (128, 256), (128, 256), (128, 256))  # (1x1 channels, 3x3 stride-2 channels)

# Keras layer-name suffix -> the torch sub-module index, per kind of block.
_CONV_BN = {"conv": "0", "bn": "1"}
_IR_EXPAND = {"expand": "conv.0", "expand_bn": "conv.1", "dw": "conv.3", "dw_bn": "conv.4", "project": "conv.6",
              "project_bn": "conv.7"}
_IR_NO_EXPAND = {"dw": "conv.0", "dw_bn": "conv.1", "project": "conv.3", "project_bn": "conv.4"}
_SEPARABLE = {"dw": "0", "dw_bn": "1", "conv": "3"}
_CONV_DW = {"dw": "0", "dw_bn": "1", "pw": "3", "pw_bn": "4"}
_EXTRA_V1 = {"conv1": "0", "conv2": "2"}
_GROUPS = ("base_net", "extras", "classification_headers", "regression_headers")
_NAME = re.compile(rf"^({'|'.join(_GROUPS)})_(\d+)(?:_([a-z0-9_]+))?$")


# ----------------------------------------------------------------------------- argument checks


def _mb2_channels(width_mult) -> dict[str, Any]:
    """pytorch-ssd's MobileNetV2 channels at ``width_mult``; ``InputError`` for a width the
    reference cannot build (its heads and extras assume ``round(576 * w)`` and 1280 channels)."""
    if (isinstance(width_mult, bool) or not isinstance(width_mult, int | float) or not math.isfinite(width_mult)
            or width_mult <= 0):
        raise InputError(f"`width_mult` must be a finite number > 0; received width_mult={width_mult!r}")
    w = float(width_mult)
    blocks = []  # (expand ratio, input channels, output channels, stride)
    channels = int(MB2_STEM * w)
    stem = channels
    for t, c, n, s in MB2_SETTING:
        out = int(c * w)
        for i in range(n):
            blocks.append((t, channels, out, s if i == 0 else 1))
            channels = out
    last = int(MB2_LAST * w) if w > 1.0 else MB2_LAST
    tap = round(blocks[MB2_TAP - 1][1] * blocks[MB2_TAP - 1][0])
    if min(stem, *(b[2] for b in blocks)) < 1 or last != MB2_LAST or tap != round(576 * w):
        raise InputError(
            "`width_mult` must be a width pytorch-ssd's create_mobilenetv2_ssd_lite can build (at most 1, with "
            f"int(96 * w) * 6 == round(576 * w) and every channel count >= 1, e.g. 1.0, 0.75, 0.5); "
            f"received width_mult={width_mult!r}"
        )
    return {"stem": stem, "blocks": blocks, "last": last, "tap": tap}


# ----------------------------------------------------------------------------- building blocks


def _image_input(include_preprocessing: bool):
    """``(input, x)``: the ``(B, 300, 300, 3)`` input and the normalised image the network sees."""
    if image_data_format() != "channels_last":
        raise InputError("pytorch-ssd twins are built channels-last; set the image data format to 'channels_last'")
    keras = _backend.keras_module()
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    if include_preprocessing:
        rescale = get_layer_class("Rescale")
        x = rescale(scale=1.0 / IMAGE_STD, offset=-IMAGE_MEAN / IMAGE_STD, data_format="channels_last",
                    name=PREPROCESSING_LAYER)(x)
    return inputs, x


def _conv(x, filters: int, kernel: int, name: str, *, stride: int = 1, bias: bool = False):
    """``Conv2D`` with PyTorch's symmetric padding ``kernel // 2`` (explicit when strided)."""
    layers = _backend.keras_module().layers
    x, padding = pad_for_stride(x, kernel, stride, "symmetric", f"{name}_pad")
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias, name=name)(x)


def _depthwise(x, name: str, *, stride: int = 1, bias: bool = False):
    """3x3 ``DepthwiseConv2D`` with PyTorch's symmetric padding 1."""
    layers = _backend.keras_module().layers
    x, padding = pad_for_stride(x, 3, stride, "symmetric", f"{name}_pad")
    return layers.DepthwiseConv2D(3, strides=stride, padding=padding, use_bias=bias, name=name)(x)


def _bn_act(x, name: str, act: str | None):
    x = BN(x, f"{name}_bn")
    return activation(x, act, f"{name}_{act}")


def _inverted_residual(x, t: float, out: int, stride: int, prefix: str):
    """pytorch-ssd ``InvertedResidual`` (ReLU6): ``(output, expanded)``, ``expanded`` the map
    after the 1x1 expansion + BN + ReLU6 (the input when ``t == 1``, which has no expansion)."""
    layers = _backend.keras_module().layers
    in_channels = int(x.shape[-1])
    shortcut = x
    if t != 1:
        x = _bn_act(_conv(x, round(in_channels * t), 1, f"{prefix}_expand"), f"{prefix}_expand", "relu6")
    expanded = x
    x = _bn_act(_depthwise(x, f"{prefix}_dw", stride=stride), f"{prefix}_dw", "relu6")
    x = _bn_act(_conv(x, out, 1, f"{prefix}_project"), f"{prefix}_project", None)
    if stride == 1 and in_channels == out:
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x, expanded


def _separable_head(x, filters: int, prefix: str):
    """pytorch-ssd ``SeperableConv2d``: 3x3 depthwise with bias -> BN -> ReLU6 -> 1x1 conv with bias."""
    x = _bn_act(_depthwise(x, f"{prefix}_dw", bias=True), f"{prefix}_dw", "relu6")
    return _conv(x, filters, 1, f"{prefix}_conv", bias=True)


def _finish_ssd(inputs, levels, class_maps, box_maps, num_classes: int, name: str, info: dict[str, Any]):
    classes = heads.flatten_levels(class_maps, num_classes, prefix="classification_headers", name="classes")
    boxes = heads.flatten_levels(box_maps, 4, prefix="regression_headers", name="boxes")
    sizes = [(int(x.shape[1]), int(x.shape[2])) for x in levels]
    info = {
        **info, "num_classes": int(num_classes), "input_shape": INPUT_SHAPE,
        "anchors_per_location": ANCHORS_PER_LOCATION, **SSD_DECODING,
        "levels": level_info(list(SHRINKAGES), sizes, levels),
    }
    # Both models use mobilenetv1_ssd_config's priors (the preset of mb2_ssd_lite).
    return finish_detector(inputs, classes, boxes, preset_anchors("mb2_ssd_lite"), name, info)


# ----------------------------------------------------------------------------- MobileNetV2-SSD-Lite


def mb2_ssd_lite(
    num_classes: int = 21, *, width_mult: float = 1.0, weights: str | os.PathLike | None = None,
    include_preprocessing: bool = False, flavour: str | None = None, name: str = "mb2_ssd_lite",
):
    """pytorch-ssd ``create_mobilenetv2_ssd_lite(num_classes, width_mult)`` in Keras (see the module docstring).

    Args:
        num_classes: classes including the background (column 0); VOC: 21.
        width_mult: the base net's width (pytorch-ssd builds 0 < w <= 1 with ``int(96 w) * 6 ==
            round(576 w)``, e.g. 1.0, 0.75, 0.5; other widths raise ``InputError``).
        weights: ``None`` (random initialisation) or the path of a pytorch-ssd checkpoint
            (``.pth``/``.pt``/``.safetensors``, the reference's ``state_dict`` names; every tensor used,
            every shape checked).
        include_preprocessing: ``False``: the input is ``(pixel - 127) / 128``; ``True``: ``[0, 255]`` RGB.
        flavour: ``"keras"`` or ``"tf_keras"`` (default: the active one).
        name: the model's name.

    Returns:
        A Functional model ``(B, 300, 300, 3) -> [classes (B, 3000, num_classes), boxes (B, 3000, 4)]``
        with ``anchors`` and ``detector_info``. ``InputError`` names a bad argument.
    """
    check_twin_arguments(num_classes, weights, include_preprocessing, flavour, name, source="pytorch-ssd")
    spec = _mb2_channels(width_mult)
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return mb2_ssd_lite(num_classes, width_mult=width_mult, weights=weights,
                                include_preprocessing=include_preprocessing, name=name)
    inputs, x = _image_input(include_preprocessing)
    x = _bn_act(_conv(x, spec["stem"], 3, "base_net_0_conv", stride=2), "base_net_0", "relu6")
    levels = []
    for k, (t, _, out, stride) in enumerate(spec["blocks"], start=1):
        x, expanded = _inverted_residual(x, t, out, stride, f"base_net_{k}")
        if k == MB2_TAP:
            levels.append(expanded)
    last = len(spec["blocks"]) + 1
    x = _bn_act(_conv(x, spec["last"], 1, f"base_net_{last}_conv"), f"base_net_{last}", "relu6")
    levels.append(x)
    for i, (out, ratio) in enumerate(MB2_EXTRAS):
        x, _ = _inverted_residual(x, ratio, out, 2, f"extras_{i}")
        levels.append(x)
    class_maps, box_maps = [], []
    for k, level in enumerate(levels):
        if k < len(levels) - 1:
            class_maps.append(_separable_head(level, ANCHORS_PER_LOCATION * num_classes, f"classification_headers_{k}"))
            box_maps.append(_separable_head(level, ANCHORS_PER_LOCATION * 4, f"regression_headers_{k}"))
        else:  # the 1x1 level: a plain 1x1 conv
            class_maps.append(_conv(level, ANCHORS_PER_LOCATION * num_classes, 1, f"classification_headers_{k}",
                                    bias=True))
            box_maps.append(_conv(level, ANCHORS_PER_LOCATION * 4, 1, f"regression_headers_{k}", bias=True))
    info = {"type": "ssdlite", "backbone": "pytorch-ssd mobilenet_v2", "width_mult": float(width_mult)}
    model = _finish_ssd(inputs, levels, class_maps, box_maps, num_classes, name, info)
    if weights is not None:
        port_checkpoint(model, weights, torch_mapping_mb2_ssd_lite)
    return model


# ----------------------------------------------------------------------------- MobileNetV1-SSD


def mb1_ssd(
    num_classes: int = 21, *, weights: str | os.PathLike | None = None, include_preprocessing: bool = False,
    flavour: str | None = None, name: str = "mb1_ssd",
):
    """pytorch-ssd ``create_mobilenetv1_ssd(num_classes)`` in Keras (see the module docstring).

    Arguments as ``mb2_ssd_lite`` (no width). Returns a Functional model ``(B, 300, 300, 3) ->
    [classes (B, 3000, num_classes), boxes (B, 3000, 4)]`` with ``anchors`` and ``detector_info``.
    ``InputError`` names a bad argument.
    """
    check_twin_arguments(num_classes, weights, include_preprocessing, flavour, name, source="pytorch-ssd")
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return mb1_ssd(num_classes, weights=weights, include_preprocessing=include_preprocessing, name=name)
    inputs, x = _image_input(include_preprocessing)
    x = _bn_act(_conv(x, MB1_STEM, 3, "base_net_0_conv", stride=2), "base_net_0", "relu")
    levels = []
    for k, (out, stride) in enumerate(MB1_DW, start=1):
        if k == MB1_TAP:
            levels.append(x)
        x = _bn_act(_depthwise(x, f"base_net_{k}_dw", stride=stride), f"base_net_{k}_dw", "relu")
        x = _bn_act(_conv(x, out, 1, f"base_net_{k}_pw"), f"base_net_{k}_pw", "relu")
    levels.append(x)
    layers = _backend.keras_module().layers
    for i, (middle, out) in enumerate(MB1_EXTRAS):
        x = _conv(x, middle, 1, f"extras_{i}_conv1", bias=True)
        x = layers.ReLU(name=f"extras_{i}_conv1_relu")(x)
        x = _conv(x, out, 3, f"extras_{i}_conv2", stride=2, bias=True)
        x = layers.ReLU(name=f"extras_{i}_conv2_relu")(x)
        levels.append(x)
    class_maps = [_conv(level, ANCHORS_PER_LOCATION * num_classes, 3, f"classification_headers_{k}", bias=True)
                  for k, level in enumerate(levels)]
    box_maps = [_conv(level, ANCHORS_PER_LOCATION * 4, 3, f"regression_headers_{k}", bias=True)
                for k, level in enumerate(levels)]
    info = {"type": "ssd", "backbone": "pytorch-ssd mobilenet_v1"}
    model = _finish_ssd(inputs, levels, class_maps, box_maps, num_classes, name, info)
    if weights is not None:
        port_checkpoint(model, weights, torch_mapping_mb1_ssd)
    return model


# ----------------------------------------------------------------------------- torch mappings


def _mapping(model, prefix_of) -> list[tuple[str, str]]:
    names = {layer.name for layer in model.layers}
    pairs = []
    for layer in model.layers:
        if not layer.weights:
            continue
        match = _NAME.match(layer.name)
        prefix = prefix_of(match.group(1), int(match.group(2)), match.group(3), names) if match else None
        if prefix is None:
            raise InputError(
                f"model {model.name!r}: layer {layer.name!r} has no place in a pytorch-ssd state_dict; "
                "is the model one of this module's builders?"
            )
        pairs.append((layer.name, prefix))
    return pairs


def _mb2_prefix(group: str, index: int, part: str | None, names: set[str]) -> str | None:
    if group == "base_net":
        if f"base_net_{index}_dw" not in names:  # the first and last conv_bn blocks
            table = _CONV_BN
        else:
            table = _IR_EXPAND if f"base_net_{index}_expand" in names else _IR_NO_EXPAND
    elif group == "extras":
        table = _IR_EXPAND
    else:  # the heads: SeperableConv2d, or a plain conv (no suffix)
        return f"{group}.{index}" if part is None else (
            f"{group}.{index}.{_SEPARABLE[part]}" if part in _SEPARABLE else None)
    return f"{group}.{index}.{table[part]}" if part in table else None


def _mb1_prefix(group: str, index: int, part: str | None, names: set[str]) -> str | None:
    if group == "base_net":
        table = _CONV_BN if index == 0 else _CONV_DW
    elif group == "extras":
        table = _EXTRA_V1
    else:
        return f"{group}.{index}" if part is None else None
    return f"{group}.{index}.{table[part]}" if part in table else None


def torch_mapping_mb2_ssd_lite(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, pytorch-ssd state_dict prefix)]`` for every layer of ``mb2_ssd_lite``
    with weights (e.g. ``("base_net_3_dw", "base_net.3.conv.3")``), in the model's layer order."""
    return _mapping(model, _mb2_prefix)


def torch_mapping_mb1_ssd(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, pytorch-ssd state_dict prefix)]`` for every layer of ``mb1_ssd`` with
    weights (e.g. ``("base_net_3_pw", "base_net.3.3")``), in the model's layer order."""
    return _mapping(model, _mb1_prefix)
