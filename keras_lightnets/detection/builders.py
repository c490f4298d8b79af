"""Single-shot detectors on the registry backbones: ``SSD``, ``SSDLite`` and ``RetinaNet``.

Each builder takes a registered classifier (``keras_lightnets.list_models()``) as a feature
extractor (``create_model(backbone, features_only=True)``), adds its levels and heads
(``detection.heads``) and returns a Functional model of the active Keras flavour (or
``flavour``), whose graph holds the backbone's layers directly (no nested model). The model
takes ``(B, H, W, 3)`` images as the backbone does (raw ``[0, 255]`` pixels where the backbone
rescales in-model) and has two outputs, in this order:

* ``classes``: ``(B, N, num_classes)`` logits (softmax for SSD and SSDLite, column 0 the
  background; sigmoid for RetinaNet);
* ``boxes``: ``(B, N, 4)`` box deltas against ``model.anchors``, in torchvision's coding
  (``detection.box_coding``, ``SSD_WEIGHTS`` / ``RETINANET_WEIGHTS`` per ``detector_info``).

The outputs are a list, not a dict, so both flavours build, save and convert them alike; the
final layers are named ``"classes"`` and ``"boxes"``, so ``model.output_names`` (and loss dicts in
``compile``) use those names. Rows are in anchor order: level by level, row-major over each
grid (y outer, x inner), then anchor.

The returned model carries two plain attributes (not saved in ``.keras`` files; rebuild them
with the same arguments): ``anchors``, float32 ``(N, 4)`` x1 y1 x2 y2 in input pixels computed
by ``detection.anchor_boxes`` from the real feature-map sizes, and ``detector_info`` (type,
backbone, classes, input shape, anchors per location, per level its stride, size and
channels, and how to read the outputs: the ``DECODING_KEYS``). Channels-last only.

``DECODING_KEYS`` of ``detector_info``, shared by every detector of the package (the generic
builders here and the reference twins), read by post-processing and training:

* ``score``: ``"softmax"`` (SSD, SSDLite: the class logits are one softmax per anchor) or
  ``"sigmoid"`` (RetinaNet: one sigmoid per class);
* ``background_class``: the column of the background class (``0`` for softmax heads), or
  ``None`` (sigmoid heads have none);
* ``box_coding``: ``"torchvision"`` (``box_coding.decode_torchvision`` with ``box_weights``) or
  ``"ssd"`` (``box_coding.decode_ssd`` with ``variances``, pytorch-ssd);
* ``box_weights``: ``(wx, wy, ww, wh)`` for ``"torchvision"``; ``variances``:
  ``(center_variance, size_variance)`` for ``"ssd"``;
* ``anchor_format``: ``"xyxy_pixels"`` (x1 y1 x2 y2 in input pixels, torchvision) or
  ``"cxcywh_relative"`` (centre and size as fractions of the image, pytorch-ssd's priors).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

from keras_lightnets import _backend
from keras_lightnets.detection import heads
from keras_lightnets.detection.anchor_boxes import retinanet_anchors, ssd_default_boxes
from keras_lightnets.detection.box_coding import RETINANET_WEIGHTS, SSD_WEIGHTS
from keras_lightnets.errors import InputError
from keras_lightnets.layout import image_data_format, spatial_size
from keras_lightnets.models.builder import make_divisible
from keras_lightnets.validation import check_bool, check_choice, check_positive_int, is_int

MIN_INPUT = 32  # pixels per side: the stride-32 level needs at least one cell
SSDLITE_EXTRAS = (512, 256, 256, 128)  # torchvision ssdlite320_mobilenet_v3_large's extra levels
SSD_EXTRAS = (512, 256, 256, 256)  # pytorch-ssd MobileNetV1-SSD's extra levels (classic SSD)
SSDLITE_RATIOS = {2: (), 4: (2,), 6: (2, 3)}  # anchors per location -> DefaultBoxGenerator's extra ratios
RETINANET_RATIOS = (0.5, 1.0, 2.0)
RETINANET_ANCHOR_SIZE = 32  # torchvision's P3 anchor side, pixels


def retinanet_sizes(anchor_size: int = RETINANET_ANCHOR_SIZE) -> tuple[tuple[int, int, int], ...]:
    """The anchor sides (pixels) of P3..P7 as torchvision's ``AnchorGenerator`` for RetinaNet:
    ``s = anchor_size * 2 ** level`` (level 0..4), each ``(s, int(s * 2 ** (1/3)), int(s * 2 ** (2/3)))``."""
    return tuple(
        (s, int(s * 2.0 ** (1.0 / 3)), int(s * 2.0 ** (2.0 / 3))) for s in (anchor_size * 2**k for k in range(5))
    )


# torchvision RetinaNet's sizes for P3..P7: ((32, 40, 50), (64, 80, 101), ..., (512, 645, 812)).
RETINANET_SIZES = retinanet_sizes()
DECODING_KEYS = ("score", "background_class", "box_coding", "anchor_format")


def torchvision_decoding(score: str, box_weights: tuple[float, ...]) -> dict[str, Any]:
    """The ``DECODING_KEYS`` (and ``box_weights``) of a torchvision-style head: xyxy pixel anchors."""
    return {
        "score": score, "background_class": 0 if score == "softmax" else None, "box_coding": "torchvision",
        "box_weights": tuple(box_weights), "anchor_format": "xyxy_pixels",
    }


def _check_common(backbone, num_classes, input_shape, flavour) -> tuple[int, int, int]:
    from keras_lightnets.models.registry import list_models

    if not isinstance(backbone, str) or backbone not in list_models():
        raise InputError(
            f"`backbone` must be the name of a registered model; received backbone={backbone!r} "
            "(keras_lightnets.list_models() or `lightnets list-models` gives the names)"
        )
    check_positive_int("num_classes", num_classes)
    if flavour is not None:
        check_choice("flavour", flavour, _backend.FLAVOURS)
    if (
        isinstance(input_shape, str | bytes) or not hasattr(input_shape, "__len__") or len(input_shape) != 3
        or not all(is_int(d) and d >= 1 for d in input_shape)
    ):
        raise InputError(
            f"`input_shape` must be (height, width, channels) with fixed positive ints (the anchors depend on the "
            f"size); received input_shape={input_shape!r}"
        )
    height, width, depth = (int(d) for d in input_shape)
    if min(height, width) < MIN_INPUT:
        raise InputError(
            f"`input_shape` must be at least {MIN_INPUT}x{MIN_INPUT} pixels (the stride-32 level needs one cell); "
            f"received input_shape={tuple(input_shape)!r}"
        )
    return height, width, depth


def _backbone_maps(backbone: str, input_shape, strides: tuple[int, ...], backbone_weights, prefix: str):
    """``(model inputs, {stride: map})``; a missing stride-32 map (SqueezeNet) is
    added as one ``heads.extra_block`` on the stride-16 map, as wide as it."""
    from keras_lightnets.models.registry import create_model

    if image_data_format() != "channels_last":
        raise InputError("detectors are built channels-last; set the image data format to 'channels_last'")
    features = create_model(backbone, features_only=True, input_shape=tuple(input_shape), weights=backbone_weights)
    maps = {info["stride"]: out for info, out in zip(features.feature_info, features.outputs, strict=True)}
    if 32 not in maps and 32 in strides:
        maps[32] = heads.extra_block(maps[16], int(maps[16].shape[-1]), prefix=f"{prefix}_c5")
    return features.inputs, {s: maps[s] for s in strides}


def check_levels(levels, input_shape, argument_hint: str) -> list[tuple[int, int]]:
    """The ``(height, width)`` of each ``(N, H, W, C)`` feature map in ``levels``; ``InputError``
    naming ``input_shape`` when one is unknown or empty (the input is too small for ``argument_hint``)."""
    sizes = [spatial_size(x, "channels_last") for x in levels]
    if any(h is None or w is None or h < 1 or w < 1 for h, w in sizes):
        raise InputError(
            f"`input_shape` {tuple(input_shape)!r} is too small for {argument_hint}: feature-map sizes {sizes}"
        )
    return [(int(h), int(w)) for h, w in sizes]


def finish_detector(inputs, classes, boxes, anchors, name: str, info: dict[str, Any]):
    """The training model ``inputs -> [classes (N, A, C), boxes (N, A, 4)]`` named ``name``, with
    ``anchors`` (``(A, 4)``) and ``info`` (``detector_info``) as plain attributes; ``InputError`` when
    the heads' row count ``A`` differs from the number of anchors."""
    keras = _backend.keras_module()
    rows = int(classes.shape[1])
    if rows != len(anchors) or int(boxes.shape[1]) != len(anchors):
        raise InputError(
            f"the heads give {rows} rows but the anchor generator gave {len(anchors)} anchors "
            f"(levels {info['levels']}); check `anchors_per_location`"
        )
    model = keras.Model(inputs, [classes, boxes], name=name)
    # Plain attributes: object.__setattr__ keeps Keras' attribute tracking from wrapping them
    # (tf_keras would turn the dict into a DictWrapper, Keras 3 into a TrackedDict).
    object.__setattr__(model, "anchors", anchors)
    object.__setattr__(model, "detector_info", info)
    return model


def level_info(strides, sizes, levels) -> list[dict[str, Any]]:
    """``detector_info["levels"]``: one ``{"stride", "size", "channels"}`` record per feature level."""
    return [
        {"stride": s, "size": size, "channels": int(x.shape[-1])}
        for s, size, x in zip(strides, sizes, levels, strict=True)
    ]


def check_twin_arguments(num_classes, weights, include_preprocessing, flavour, name, *, source: str) -> None:
    """The common arguments of the reference twins (``torchvision_twins``, ``pytorch_ssd``):
    ``weights`` is None or an existing checkpoint file of ``source`` (e.g. ``"torchvision"``)."""
    from keras_lightnets.weights.torchvision import TORCH_SUFFIXES

    check_positive_int("num_classes", num_classes)
    check_bool("include_preprocessing", include_preprocessing)
    if flavour is not None:
        check_choice("flavour", flavour, _backend.FLAVOURS)
    if not isinstance(name, str) or not name:
        raise InputError(f"`name` must be a non-empty string; received name={name!r}")
    if weights is None:
        return
    allowed = f"None or the path of a {source} checkpoint ({', '.join(TORCH_SUFFIXES)})"
    path = os.fspath(weights) if isinstance(weights, str | os.PathLike) else None
    if not isinstance(path, str) or not path.lower().endswith(TORCH_SUFFIXES):
        raise InputError(f"`weights` must be {allowed}; received weights={weights!r}")
    if not os.path.isfile(path):
        raise InputError(f"`weights` file not found: {path!r} (allowed: {allowed})")


def _check_width(width) -> None:
    if isinstance(width, bool) or not isinstance(width, int | float) or not math.isfinite(width) or width <= 0:
        raise InputError(
            f"`width` must be a number > 0 (the extra levels' channel multiplier); received width={width!r}"
        )


def _single_shot(kind: str, backbone, num_classes, input_shape, anchors_per_location, width, name, backbone_weights):
    """SSD and SSDLite: six levels (stride 16, 32, then four extras) and per-level heads."""
    height, width_px, _ = (int(d) for d in input_shape)
    extra, extras, make_heads = (
        (heads.extra_block, SSDLITE_EXTRAS, heads.ssdlite_heads) if kind == "ssdlite"
        else (heads.ssd_extra_block, SSD_EXTRAS, heads.ssd_heads)
    )
    inputs, maps = _backbone_maps(backbone, input_shape, (16, 32), backbone_weights, kind)
    levels = [maps[16], maps[32]]
    for k, base in enumerate(extras):
        levels.append(extra(levels[-1], make_divisible(base * width, 8, 16), prefix=f"{kind}_extra{k}"))
    sizes = check_levels(levels, input_shape, f"{'SSDLite' if kind == 'ssdlite' else 'SSD'}'s six levels")
    ratios = [list(SSDLITE_RATIOS[anchors_per_location])] * len(levels)
    anchors = ssd_default_boxes(sizes, (height, width_px), ratios, min_ratio=0.2, max_ratio=0.95)
    classes, boxes = make_heads(levels, num_classes, anchors_per_location, prefix=kind)
    info = {
        "type": kind, "backbone": backbone, "num_classes": int(num_classes), "input_shape": tuple(input_shape),
        "anchors_per_location": anchors_per_location, **torchvision_decoding("softmax", SSD_WEIGHTS),
        "levels": level_info([16, 32, 64, 128, 256, 512], sizes, levels),
    }
    return finish_detector(inputs, classes, boxes, anchors, name or f"{kind}_{backbone}", info)


def SSD(
    backbone: str, num_classes: int, input_shape=(300, 300, 3), flavour: str | None = None,
    anchors_per_location: int = 6, width: float = 1.0, name: str | None = None, backbone_weights=None,
):
    """Classic SSD (Liu et al.) on a registry backbone, as pytorch-ssd's MobileNetV1-SSD.

    Levels as ``SSDLite``'s (the backbone's stride-16 and stride-32 maps, then four extras), but
    the extras are ``heads.ssd_extra_block`` (1x1 conv + ReLU, 3x3 stride-2 conv + ReLU, with bias,
    no BatchNorm) of ``make_divisible(c * width, 8)`` channels for ``c`` in 512, 256, 256, 256, and
    the heads ``heads.ssd_heads`` (one plain 3x3 conv per level and task). Anchors, box coding and
    ``num_classes`` (which counts the background column 0) as ``SSDLite``. ``errors.InputError``
    names a bad argument.
    """
    _check_common(backbone, num_classes, input_shape, flavour)
    check_choice("anchors_per_location", anchors_per_location, tuple(SSDLITE_RATIOS))
    _check_width(width)
    with _backend.use_flavour(flavour) if flavour is not None else contextlib.nullcontext():
        return _single_shot("ssd", backbone, num_classes, input_shape, anchors_per_location, width, name,
                            backbone_weights)


def SSDLite(
    backbone: str, num_classes: int, input_shape=(320, 320, 3), flavour: str | None = None,
    anchors_per_location: int = 6, width: float = 1.0, name: str | None = None, backbone_weights=None,
):
    """torchvision-style SSDLite on a registry backbone.

    Levels: the backbone's stride-16 and stride-32 maps (SqueezeNet has no stride-32 map: one
    ``heads.extra_block`` makes it), then four ``heads.extra_block`` levels of
    ``make_divisible(c * width, 8)`` channels (at least 16) for ``c`` in 512, 256, 256, 128: six
    levels, each ``ceil`` half the previous. Heads per level: ``3x3 depthwise -> BN -> ReLU6 ->
    1x1 conv`` for classes and for boxes. Anchors: ``ssd_default_boxes(sizes, image_size,
    ratios, min_ratio=0.2, max_ratio=0.95)`` with ratios ``(2, 3)`` per level for 6 anchors per
    location (4: ``(2,)``; 2: none). ``backbone_weights``: the backbone's ``weights`` argument
    (``None`` or ``"imagenet"``). See the module docstring for the outputs and attributes.
    ``errors.InputError`` names a bad argument.
    """
    _check_common(backbone, num_classes, input_shape, flavour)
    check_choice("anchors_per_location", anchors_per_location, tuple(SSDLITE_RATIOS))
    _check_width(width)
    with _backend.use_flavour(flavour) if flavour is not None else contextlib.nullcontext():
        return _single_shot("ssdlite", backbone, num_classes, input_shape, anchors_per_location, width, name,
                            backbone_weights)


def RetinaNet(
    backbone: str, num_classes: int, input_shape=(320, 320, 3), flavour: str | None = None,
    fpn_channels: int = 256, num_convs: int = 4, prior_probability: float = 0.01, name: str | None = None,
    backbone_weights=None, anchor_size: int = RETINANET_ANCHOR_SIZE,
):
    """torchvision-style RetinaNet on a registry backbone.

    An FPN (``heads.fpn``) on the stride 8, 16 and 32 maps (SqueezeNet's stride-32 map is one
    ``heads.extra_block`` on its stride-16 map) gives P3..P7 of ``fpn_channels`` channels; the
    heads (``heads.retinanet_heads``: ``num_convs`` x (3x3 conv + ReLU), then a 3x3 conv, shared by
    every level) give 9 anchors per location. Where a backbone's sizes are odd, the upsampled
    map is cropped or extended with layers to the lateral's size, reproducing torchvision's
    nearest interpolation (see ``heads._match_axis``). Anchors: ``retinanet_anchors(sizes,
    image_size, retinanet_sizes(anchor_size), (0.5, 1, 2))``: P3's sides are ``anchor_size``
    (pixels; torchvision's 32, made for ~800-pixel images) times ``2 ** (0, 1/3, 2/3)``, doubling
    per level; smaller inputs with small objects want a smaller ``anchor_size``. The class bias starts at
    ``-log((1 - prior_probability) / prior_probability)``. ``errors.InputError`` names a bad argument.
    """
    height, width_px, _ = _check_common(backbone, num_classes, input_shape, flavour)
    check_positive_int("fpn_channels", fpn_channels)
    check_positive_int("num_convs", num_convs)
    check_positive_int("anchor_size", anchor_size)
    if (
        isinstance(prior_probability, bool) or not isinstance(prior_probability, int | float)
        or not 0.0 < prior_probability < 1.0
    ):
        raise InputError(
            f"`prior_probability` must be a number in (0, 1); received prior_probability={prior_probability!r}"
        )
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return RetinaNet(backbone, num_classes, input_shape, None, fpn_channels, num_convs, prior_probability,
                             name, backbone_weights, anchor_size)
    prefix = "retinanet"
    inputs, maps = _backbone_maps(backbone, input_shape, (8, 16, 32), backbone_weights, prefix)
    check_levels(list(maps.values()), input_shape, "RetinaNet's stride 8, 16 and 32 maps")
    levels = heads.fpn([maps[8], maps[16], maps[32]], fpn_channels, prefix=f"{prefix}_fpn")
    sizes = check_levels(levels, input_shape, "RetinaNet's five levels")
    anchor_sides = retinanet_sizes(int(anchor_size))
    anchors_per_location = len(anchor_sides[0]) * len(RETINANET_RATIOS)
    anchors = retinanet_anchors(sizes, (height, width_px), anchor_sides, RETINANET_RATIOS)
    classes, boxes = heads.retinanet_heads(
        levels, num_classes, anchors_per_location, prefix=prefix, num_convs=num_convs,
        prior_probability=float(prior_probability),
    )
    info = {
        "type": "retinanet", "backbone": backbone, "num_classes": int(num_classes), "input_shape": tuple(input_shape),
        "anchors_per_location": anchors_per_location, "anchor_size": int(anchor_size),
        **torchvision_decoding("sigmoid", RETINANET_WEIGHTS), "levels": level_info([8, 16, 32, 64, 128], sizes, levels),
    }
    return finish_detector(inputs, classes, boxes, anchors, name or f"retinanet_{backbone}", info)
