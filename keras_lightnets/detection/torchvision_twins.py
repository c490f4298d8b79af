"""Exact Keras twins of two torchvision detectors on MobileNetV3-Large, with their checkpoint ports.

* ``ssdlite320_mobilenet_v3_large``: ``torchvision.models.detection.ssdlite320_mobilenet_v3_large``
  (reduced-tail backbone, six levels, 6 anchors per location, 3234 anchors).
* ``retinanet_mobilenet_v3_large_fpn``: torchvision's ``RetinaNet`` (v1 head) on its
  ``_mobilenet_extractor(mobilenet_v3_large(), fpn=True, returned_layers=[2, 3, 5],
  extra_blocks=LastLevelP6P7(256, 256))``: full-tail backbone, FPN P3..P7, 9 anchors per
  location, 19206 anchors. torchvision builds no such model itself; the reference vectors were
  made from its blocks.

Both take ``(B, 320, 320, 3)`` channels-last images (the anchors are those of a 320x320 input),
either already normalised as the reference's ``model.transform`` does (``include_preprocessing=False``:
``[-1, 1]`` for SSDLite, ImageNet mean/std for RetinaNet) or raw ``[0, 255]`` RGB pixels
(``True``: a ``Rescale`` layer named ``"rescaling"`` normalises them). The outputs follow
``detection.builders``: a list ``[classes (B, N, num_classes) logits, boxes (B, N, 4) deltas]``,
final layers ``"classes"`` and ``"boxes"``, rows in torchvision's anchor order; the model carries
``model.anchors`` (float32 ``(N, 4)`` x1 y1 x2 y2 input pixels) and ``model.detector_info``.

The backbone is torchvision's MobileNetV3-Large, layer for layer: BatchNorm eps 1e-3, hard-swish and
hard-sigmoid layers, PyTorch's symmetric padding (``ZeroPadding2D`` + ``"valid"`` before every
stride-2 conv). Keras layer ``features{i}_...`` is torchvision's ``features[i]``; ``torch_mapping_ssdlite``
and ``torch_mapping_retinanet`` give every weighted layer's ``state_dict`` prefix, so
``weights.torchvision.port_checkpoint`` loads the reference's checkpoint (``.safetensors``, ``.pth``,
``.pt``) with every tensor's name and shape checked and every tensor used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from keras_lightnets import _backend
from keras_lightnets.detection import heads
from keras_lightnets.detection.anchor_boxes import PRESET_ANCHORS, preset_anchors
from keras_lightnets.detection.box_coding import RETINANET_WEIGHTS, SSD_WEIGHTS
from keras_lightnets.detection.builders import (
    RETINANET_RATIOS,
    RETINANET_SIZES,
    SSDLITE_EXTRAS,
    check_levels,
    check_twin_arguments,
    finish_detector,
    level_info,
    torchvision_decoding,
)
from keras_lightnets.errors import InputError
from keras_lightnets.layout import image_data_format
from keras_lightnets.models.blocks import BatchNorm, conv_bn, inverted_residual
from keras_lightnets.models.builder import in_model_preprocessing, make_divisible
from keras_lightnets.models.mobilenet_v3 import LARGE
from keras_lightnets.weights.torchvision import TorchMapping, port_checkpoint

IMAGE_SIZE = 320  # pixels per side: the anchors (and torchvision's min_size/max_size) are for 320x320
SSDLITE = "ssdlite320_mobilenet_v3_large"
RETINANET = "retinanet_mobilenet_v3_large_fpn"
# BatchNorm2d(eps=0.001, momentum=0.03) in SSDLite; mobilenet_v3_large's default momentum 0.01 in RetinaNet
# (Keras momentum = 1 - PyTorch momentum; it only matters when training).
SSDLITE_BN = heads.SSDLITE_BN
RETINANET_BN = BatchNorm(epsilon=1e-3, momentum=0.99)
SSDLITE_SPLIT_BLOCK = 13  # the first stride-32 block: its expansion output is SSDLite's first level (C4)
RETINANET_TAPS = (4, 7, 16)  # torchvision features indices whose outputs feed the FPN (strides 8, 16, 32)
FPN_CHANNELS = 256
SSDLITE_ANCHORS_PER_LOCATION = 6
RETINANET_ANCHORS_PER_LOCATION = len(RETINANET_SIZES[0]) * len(RETINANET_RATIOS)
SSDLITE_STRIDES = (16, 32, 64, 128, 256, 512)  # nominal, as detection.builders.SSDLite reports them
RETINANET_STRIDES = (8, 16, 32, 64, 128)


# ----------------------------------------------------------------------------- the backbone


@dataclass(frozen=True)
class _Block:
    """One torchvision ``InvertedResidual`` (``features[index]``, 1..15) of MobileNetV3-Large."""

    index: int
    in_channels: int
    expanded: int
    filters: int
    kernel: int
    stride: int
    se: bool
    act: str  # "relu" or "hard_swish"

    @property
    def has_expand(self) -> bool:
        return self.expanded != self.in_channels

    @property
    def prefix(self) -> str:
        return f"features{self.index}_"

    def parts(self) -> list[tuple[str, int, str]]:
        """``(Keras layer name, index j in torchvision's block, leaf)``: the weighted layers in order.

        torchvision's ``block`` is [expand] -> depthwise -> [SqueezeExcitation] -> project, each conv
        block a ``Conv2dNormActivation`` (leaf ``"0"`` conv, ``"1"`` BatchNorm), the squeeze-excite
        ``fc1`` / ``fc2``.
        """
        p, j, parts = self.prefix, 0, []
        if self.has_expand:
            parts += [(f"{p}expand", j, "0"), (f"{p}expand_bn", j, "1")]
            j += 1
        parts += [(f"{p}depthwise", j, "0"), (f"{p}depthwise_bn", j, "1")]
        j += 1
        if self.se:
            parts += [(f"{p}squeeze_excite_conv", j, "fc1"), (f"{p}squeeze_excite_conv_1", j, "fc2")]
            j += 1
        return [*parts, (f"{p}project", j, "0"), (f"{p}project_bn", j, "1")]


def _large_blocks(reduced_tail: bool) -> list[_Block]:
    """torchvision ``mobilenet_v3_large`` blocks at width 1.0; ``reduced_tail`` halves the last stage
    (160 -> 80 channels, so its expansions are 480)."""
    blocks, in_channels = [], 16
    for index, (expansion, filters, kernel, stride, se, act) in enumerate(LARGE, start=1):
        if reduced_tail and index >= SSDLITE_SPLIT_BLOCK:
            filters //= 2
        expanded = make_divisible(in_channels * expansion) if index > 1 else in_channels
        blocks.append(_Block(index, in_channels, expanded, filters, 5 if kernel == "k" else kernel, stride, se,
                             "hard_swish" if act == "act" else act))
        in_channels = filters
    return blocks


def _last_channels(blocks: list[_Block]) -> int:
    return 6 * blocks[-1].filters  # features[16]: 1x1 conv to 6x the last block's channels


def _mobilenet_v3_large(x, *, reduced_tail: bool, bn: BatchNorm, split_block: int | None = None):
    """torchvision's MobileNetV3-Large ``features`` on the channels-last ``x``.

    Returns ``(outputs, split)``: ``{features index: output}`` for indices 0..16 and, when
    ``split_block`` is given, the output of that block's expansion 1x1 conv (+ BN + activation).
    """
    outputs = {}
    x = conv_bn(x, 16, 3, stride=2, name="features0_conv", bn=bn, bn_name="features0_bn", act="hard_swish",
                act_name="features0_hard_swish", pad_mode="symmetric", pad_name="features0_pad")
    outputs[0] = x
    split = None
    for block in _large_blocks(reduced_tail):
        p = block.prefix
        if block.index == split_block:
            x = conv_bn(x, block.expanded, 1, name=f"{p}expand", bn=bn, act=block.act)
            split = x  # inverted_residual below finds the expansion done (its input is `expanded` wide)
        x = inverted_residual(
            x, expanded=block.expanded, filters=block.filters, kernel_size=block.kernel, stride=block.stride,
            prefix=p, bn=bn, act=block.act, se_filters=make_divisible(block.expanded // 4) if block.se else None,
            se_act="relu", se_gate="hard_sigmoid", pad_mode="symmetric",
        )
        outputs[block.index] = x
    outputs[16] = conv_bn(x, _last_channels(_large_blocks(reduced_tail)), 1, name="features16_conv", bn=bn,
                          bn_name="features16_bn", act="hard_swish", act_name="features16_hard_swish")
    return outputs, split


def _backbone_pairs(reduced_tail: bool, where) -> list[tuple[str, str]]:
    """Backbone ``(Keras layer, torch prefix)`` pairs; ``where(index, j)`` is the torch path of
    ``features[index]``'s part ``j`` (``j=None``: a ``Conv2dNormActivation`` outside any block)."""
    pairs = [("features0_conv", f"{where(0, None)}.0"), ("features0_bn", f"{where(0, None)}.1")]
    for block in _large_blocks(reduced_tail):
        pairs += [(keras_name, f"{where(block.index, j)}.{leaf}") for keras_name, j, leaf in block.parts()]
    return [*pairs, ("features16_conv", f"{where(16, None)}.0"), ("features16_bn", f"{where(16, None)}.1")]


# ----------------------------------------------------------------------------- shared plumbing


def _input(include_preprocessing: bool, mode: str):
    """``(model input, normalised image)``: ``(B, 320, 320, 3)``, channels-last only."""
    if image_data_format() != "channels_last":
        raise InputError("detectors are built channels-last; set the image data format to 'channels_last'")
    keras = _backend.keras_module()
    image = keras.layers.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="input")
    return image, in_model_preprocessing(image, include_preprocessing, mode)


def _check_model(model, pairs: list[tuple[str, str]], preset: str) -> list[tuple[str, str]]:
    """``pairs``, after checking that ``model`` has every mapped layer (it is the ``preset`` twin)."""
    names = {layer.name for layer in model.layers}
    missing = [keras_name for keras_name, _ in pairs if keras_name not in names]
    if missing:
        raise InputError(
            f"model {getattr(model, 'name', model)!r} is not a {preset} twin: it has no layer {missing[0]!r}"
        )
    return pairs


def _finish_twin(image, classes, boxes, levels, *, preset: str, name: str, weights, mapping: TorchMapping,
                 info: dict[str, Any]):
    sizes = check_levels(levels, (IMAGE_SIZE, IMAGE_SIZE, 3), f"{preset}'s levels")
    grids = PRESET_ANCHORS[preset].arguments["feature_sizes"]
    expected = [(g, g) if isinstance(g, int) else tuple(g) for g in grids]
    if sizes != expected:  # the architecture and the anchor preset must describe the same grids
        raise AssertionError(f"{preset}: feature-map sizes {sizes} differ from the anchor preset's {expected}")
    strides = info.pop("strides")
    info["levels"] = level_info(strides, sizes, levels)
    model = finish_detector(image, classes, boxes, preset_anchors(preset), name, info)
    if weights is not None:
        port_checkpoint(model, weights, mapping)
    return model


# ----------------------------------------------------------------------------- SSDLite


def ssdlite320_mobilenet_v3_large(
    num_classes: int = 91, *, weights: str | os.PathLike | None = None, include_preprocessing: bool = False,
    flavour: str | None = None, name: str = SSDLITE,
):
    """torchvision's ``ssdlite320_mobilenet_v3_large``, exactly, as a Keras model.

    Levels: the expansion output of the first stride-32 block (672 ch, 20x20), the end of the
    reduced-tail backbone (480 ch, 10x10), then four extra blocks (``heads.extra_block``: 512, 256,
    256, 128 ch at 5, 3, 2, 1). Heads per level: 3x3 depthwise -> BN -> ReLU6 -> 1x1 conv
    (``heads.ssdlite_heads``), 6 anchors per location (``DefaultBoxGenerator([[2, 3]] * 6,
    min_ratio=0.2, max_ratio=0.95)``): 3234 anchors.

    Args:
        num_classes: logits per anchor, background (column 0) included; COCO: 91.
        weights: ``None`` (random initialisation) or the path of a torchvision checkpoint of this
            model (``.safetensors``/``.pth``/``.pt``, torchvision's ``state_dict`` names), ported
            with every tensor checked and used.
        include_preprocessing: ``False``: inputs are ``(B, 320, 320, 3)`` RGB in ``[-1, 1]``
            (``pixels / 127.5 - 1``, the reference's ``model.transform``); ``True``: ``[0, 255]`` pixels.
        flavour: ``"keras"`` or ``"tf_keras"`` (default: the active one).
        name: the model's name.

    Returns:
        A Functional model with outputs ``[classes (B, 3234, num_classes) logits (softmax per anchor),
        boxes (B, 3234, 4) deltas]`` (torchvision's box coding, weights (10, 10, 5, 5)), and the
        attributes ``anchors`` and ``detector_info`` (see ``detection.builders``).
    """
    check_twin_arguments(num_classes, weights, include_preprocessing, flavour, name, source="torchvision")
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return ssdlite320_mobilenet_v3_large(
                num_classes, weights=weights, include_preprocessing=include_preprocessing, name=name)
    image, x = _input(include_preprocessing, "tf")
    outputs, c4 = _mobilenet_v3_large(x, reduced_tail=True, bn=SSDLITE_BN, split_block=SSDLITE_SPLIT_BLOCK)
    levels = [c4, outputs[16]]
    for k, filters in enumerate(SSDLITE_EXTRAS):
        levels.append(heads.extra_block(levels[-1], filters, prefix=f"extra{k}", bn=SSDLITE_BN))
    classes, boxes = heads.ssdlite_heads(levels, int(num_classes), SSDLITE_ANCHORS_PER_LOCATION, prefix="head")
    info = {
        "type": "ssdlite", "backbone": "torchvision mobilenet_v3_large (reduced tail)", "preset": SSDLITE,
        "num_classes": int(num_classes), "input_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
        "include_preprocessing": include_preprocessing, "anchors_per_location": SSDLITE_ANCHORS_PER_LOCATION,
        **torchvision_decoding("softmax", SSD_WEIGHTS), "strides": list(SSDLITE_STRIDES),
    }
    return _finish_twin(image, classes, boxes, levels, preset=SSDLITE, name=name, weights=weights,
                        mapping=torch_mapping_ssdlite, info=info)


def _ssdlite_where(index: int, j: int | None) -> str:
    """The torch path of ``features[index]`` (part ``j``) inside SSDLite's two-part backbone.

    torchvision splits ``features`` at the first stride-32 block (13): ``backbone.features.0`` holds
    ``features[0..12]`` and block 13's expansion (``.13``); ``backbone.features.1`` holds the rest of
    block 13 (``.0``, keeping the block's own indices 1..3), blocks 14, 15 (``.1``, ``.2``) and the
    last 1x1 conv (``.3``).
    """
    if index < SSDLITE_SPLIT_BLOCK:
        return f"backbone.features.0.{index}" + ("" if j is None else f".block.{j}")
    if index == SSDLITE_SPLIT_BLOCK:
        return f"backbone.features.0.{index}" if j == 0 else f"backbone.features.1.0.{j}"
    return f"backbone.features.1.{index - SSDLITE_SPLIT_BLOCK}" + ("" if j is None else f".block.{j}")


def torch_mapping_ssdlite(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, torchvision state_dict prefix)]`` for every weighted layer of an
    ``ssdlite320_mobilenet_v3_large`` twin (``InputError`` when ``model`` is not one)."""
    pairs = _backbone_pairs(True, _ssdlite_where)
    for k in range(len(SSDLITE_EXTRAS)):
        torch = f"backbone.extra.{k}"
        pairs += [(f"extra{k}_expand", f"{torch}.0.0"), (f"extra{k}_expand_bn", f"{torch}.0.1"),
                  (f"extra{k}_dw", f"{torch}.1.0"), (f"extra{k}_dw_bn", f"{torch}.1.1"),
                  (f"extra{k}_project", f"{torch}.2.0"), (f"extra{k}_project_bn", f"{torch}.2.1")]
    for task, torch_head in (("cls", "classification_head"), ("box", "regression_head")):
        for k in range(len(SSDLITE_STRIDES)):
            torch = f"head.{torch_head}.module_list.{k}"
            pairs += [(f"head_{task}{k}_dw", f"{torch}.0.0"), (f"head_{task}{k}_dw_bn", f"{torch}.0.1"),
                      (f"head_{task}{k}_conv", f"{torch}.1")]
    return _check_model(model, pairs, SSDLITE)


# ----------------------------------------------------------------------------- RetinaNet


def retinanet_mobilenet_v3_large_fpn(
    num_classes: int = 91, *, weights: str | os.PathLike | None = None, include_preprocessing: bool = False,
    flavour: str | None = None, name: str = RETINANET,
):
    """torchvision's RetinaNet (v1 head) on its MobileNetV3-Large FPN extractor, exactly, as a Keras model.

    The FPN (``heads.fpn``, 256 ch) takes the outputs of ``features[4]`` (40 ch, stride 8),
    ``features[7]`` (80 ch, stride 16) and ``features[16]`` (960 ch, stride 32) of the full-tail
    backbone and gives P3..P7 (40, 20, 10, 5, 3 at 320x320); the heads (``heads.retinanet_heads``:
    4 x (3x3 conv + ReLU), then a 3x3 conv, shared by the levels) give 9 anchors per location
    (``AnchorGenerator`` with RetinaNet's default sizes and ratios): 19206 anchors. The class
    logits' bias starts at ``-log((1 - 0.01) / 0.01)``.

    Args:
        num_classes: logits per anchor (sigmoid per class, no background column); COCO: 91.
        weights: ``None`` (random initialisation) or the path of a torchvision checkpoint of this
            model (``.safetensors``/``.pth``/``.pt``), ported with every tensor checked and used.
        include_preprocessing: ``False``: inputs are ``(B, 320, 320, 3)`` RGB normalised with ImageNet's
            mean and std (``(pixels / 255 - mean) / std``); ``True``: ``[0, 255]`` pixels.
        flavour: ``"keras"`` or ``"tf_keras"`` (default: the active one).
        name: the model's name.

    Returns:
        A Functional model with outputs ``[classes (B, 19206, num_classes) logits, boxes (B, 19206, 4)
        deltas]`` (torchvision's box coding, weights (1, 1, 1, 1)), and the attributes ``anchors``
        and ``detector_info`` (see ``detection.builders``).
    """
    check_twin_arguments(num_classes, weights, include_preprocessing, flavour, name, source="torchvision")
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return retinanet_mobilenet_v3_large_fpn(
                num_classes, weights=weights, include_preprocessing=include_preprocessing, name=name)
    image, x = _input(include_preprocessing, "torch")
    outputs, _ = _mobilenet_v3_large(x, reduced_tail=False, bn=RETINANET_BN)
    levels = heads.fpn([outputs[i] for i in RETINANET_TAPS], FPN_CHANNELS, prefix="fpn")
    classes, boxes = heads.retinanet_heads(levels, int(num_classes), RETINANET_ANCHORS_PER_LOCATION, prefix="head")
    info = {
        "type": "retinanet", "backbone": "torchvision mobilenet_v3_large + FPN P3-P7", "preset": RETINANET,
        "num_classes": int(num_classes), "input_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
        "include_preprocessing": include_preprocessing, "anchors_per_location": RETINANET_ANCHORS_PER_LOCATION,
        **torchvision_decoding("sigmoid", RETINANET_WEIGHTS), "strides": list(RETINANET_STRIDES),
    }
    return _finish_twin(image, classes, boxes, levels, preset=RETINANET, name=name, weights=weights,
                        mapping=torch_mapping_retinanet, info=info)


def _retinanet_where(index: int, j: int | None) -> str:
    """The torch path of ``features[index]`` (part ``j``): ``IntermediateLayerGetter`` keeps the indices."""
    return f"backbone.body.{index}" + ("" if j is None else f".block.{j}")


def torch_mapping_retinanet(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, torchvision state_dict prefix)]`` for every weighted layer of a
    ``retinanet_mobilenet_v3_large_fpn`` twin (``InputError`` when ``model`` is not one)."""
    pairs = _backbone_pairs(False, _retinanet_where)
    for k, level in enumerate((3, 4, 5)):
        pairs += [(f"fpn_lateral{level}", f"backbone.fpn.inner_blocks.{k}.0"),
                  (f"fpn_output{level}", f"backbone.fpn.layer_blocks.{k}.0")]
    pairs += [("fpn_p6", "backbone.fpn.extra_blocks.p6"), ("fpn_p7", "backbone.fpn.extra_blocks.p7")]
    for task, torch_head, last, torch_last in (("cls", "classification_head", "logits", "cls_logits"),
                                               ("box", "regression_head", "reg", "bbox_reg")):
        pairs += [(f"head_{task}_conv{i}", f"head.{torch_head}.conv.{i}.0") for i in range(4)]
        pairs.append((f"head_{task}_{last}", f"head.{torch_head}.{torch_last}"))
    return _check_model(model, pairs, RETINANET)
