"""ShuffleNet V1 (Zhang et al., 2017), as megvii-model's ShuffleNet-Series builds it.

Architecture, padding and channel order are those of ``ShuffleNetV1/network.py`` and
``blocks.py`` of https://github.com/megvii-model/ShuffleNet-Series (the authors' PyTorch
code), so its checkpoints port exactly (``weights=`` a ``.safetensors`` / ``.pth`` state_dict,
``torch_mapping``). A unit (``_shuffle_unit``) is

* 1x1 pointwise *group* conv (``groups``; ungrouped in the first unit of stage 2) -> BN -> ReLU,
* 3x3 depthwise conv (stride 1 or 2, PyTorch padding 1) -> BN,
* channel shuffle (only for ``groups`` > 1) -> 1x1 pointwise group conv -> BN,
* stride 1: ``relu(main + input)``; stride 2: ``concat([avg_pool(input), relu(main)])``, the
  3x3/2 average pool padding one zero pixel on every side that it counts in its average
  (PyTorch's ``count_include_pad``: explicit ``ZeroPadding2D`` + ``valid`` pool), the main
  branch giving ``out - in`` channels.

Channel shuffle is megvii's: it views the ``C`` channels as ``(C / g, g)`` and transposes, so
output channel ``i * (C / g) + j`` is input channel ``j * g + i`` -- the inverse of
torchvision's ShuffleNetV2 shuffle, i.e. ``ChannelShuffle(groups=C // g)``. The stem is a 3x3/2
conv -> BN -> ReLU and a 3x3/2 max pool, both padding one pixel on every side like PyTorch
(the pool's input is a ReLU output >= 0, so zero padding equals PyTorch's -inf). The head is
a global average pool (megvii's ``AvgPool2d(7)`` on the 7x7 map of a 224x224 input) and a
``Dense`` **without** bias. BatchNorm: epsilon 1e-5, momentum 0.9 (PyTorch's defaults).

Inputs are ``(batch, height, width, 3)`` **BGR** pixels in ``[0, 255]``, not normalised
(megvii's ``ToBGRTensor``): ``preprocess_input`` (mode "bgr255") turns RGB pixels into that;
``include_preprocessing=True`` does it inside the model, which then takes RGB ``[0, 255]``.

Channels (``stage_channels``). Stages 2, 3, 4 repeat 4, 8, 4 units; each unit's bottleneck
has a quarter of its output channels. At width 1.0 the stage outputs are the paper's Table 1
(arXiv 1707.01083): g1 144/288/576, g2 200/400/800, g3 240/480/960, g4 272/544/1088,
g8 384/768/1536. Width ``alpha`` multiplies them (the paper's "s x") and rounds each to a
multiple of ``4 * groups`` (``make_divisible``), so that the bottleneck splits into the groups;
the stem has 12, 24, 24, 48 channels at widths 0.5, 1.0, 1.5, 2.0 (megvii's lists;
``24 * alpha`` rounded to a multiple of 4 at other widths), rounded up to a multiple of
``groups`` so that a stride-2 unit's main branch (``out - in`` channels) splits too. For
groups 3 and 8 at 0.5x-2.0x this gives megvii's ``stage_out_channels`` exactly (g8 0.5x:
stem 16); groups 1, 2, 4 (which megvii does not define) follow the same rule, e.g. g2 0.5x:
104/200/400, g4 0.5x: 144/272/544, g4 1.5x: 416/816/1632.
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layout import channel_axis, channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, classifier_or_pooling, conv_bn, depthwise_bn
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import register_model, variant_of
from keras_lightnets.models.shufflenet_v2 import width_text
from keras_lightnets.validation import is_int

PAPER = "https://arxiv.org/abs/1707.01083"
REFERENCE = "https://github.com/megvii-model/ShuffleNet-Series/tree/master/ShuffleNetV1"
GROUPS = (1, 2, 3, 4, 8)
WIDTHS = (0.5, 1.0, 1.5, 2.0)  # megvii's model sizes "0.5x" .. "2.0x"
STAGE_REPEATS = (4, 8, 4)  # units of stages 2, 3, 4; the first unit of each has stride 2
# Output channels of stages 2, 3, 4 at width 1.0 (paper Table 1; megvii's 1.0x lists for g3, g8).
BASE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STEM_CHANNELS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}  # megvii's first_conv, before rounding to groups
_BN = BatchNorm(epsilon=1e-5, momentum=0.9)
# Blocks for unfreezing: each unit ("stage2_unit1", ...); conv1 is a block of its own. The same
# pattern as ShuffleNetV2's, whose units are named alike.
LAYER_GROUPS = ((r"(stage\d+_unit\d+)(?:_|$)", r"\1"),)


def check_groups(groups) -> int:
    """``groups`` must be one of ``GROUPS`` (an int); ``InputError`` otherwise."""
    if not is_int(groups) or groups not in GROUPS:
        raise InputError(
            f"`groups` must be one of {', '.join(str(g) for g in GROUPS)} (ShuffleNet V1's group counts); "
            f"received groups={groups!r}"
        )
    return groups


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def stage_channels(groups: int, alpha: float) -> tuple[int, int, int, int]:
    """``(stem, stage2, stage3, stage4)`` output channels for ``groups`` and width ``alpha``.

    See the module docstring for the rule. ``InputError`` for a ``groups`` not in
    ``GROUPS``, or a width so small that a stride-2 unit would have no main branch.
    """
    check_groups(groups)
    stem = STEM_CHANNELS.get(alpha) or make_divisible(24 * alpha, 4)
    stem = _round_up(stem, groups)
    stages = tuple(make_divisible(c * alpha, 4 * groups) for c in BASE_CHANNELS[groups])
    for inp, out in zip((stem, *stages[:2]), stages, strict=True):
        main, mid = out - inp, out // 4
        if main <= 0 or main % groups or mid % groups:
            raise InputError(
                f"ShuffleNetV1 groups={groups}, alpha={alpha!r}: a stage of {inp} -> {out} channels leaves a "
                f"main branch of {main} and a bottleneck of {mid} channels, which must be positive and divisible "
                f"by groups; use a larger alpha"
            )
    return (stem, *stages)


def _prefix(stage: int, unit: int) -> str:
    return f"stage{stage}_unit{unit}_"


def torch_mapping(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, megvii state_dict prefix)]`` of a ShuffleNetV1 (any groups and width).

    megvii's modules: ``first_conv`` (conv, BN), ``features.<i>`` (the 16 units in order, each
    ``branch_main_1`` = pw conv 0, BN 1, ReLU 2, dw conv 3, BN 4 and ``branch_main_2`` = pw conv
    0, BN 1), ``classifier.0`` (Linear without bias).
    """
    pairs = [("conv1", "first_conv.0"), ("conv1_bn", "first_conv.1")]
    index = 0
    for stage, repeats in enumerate(STAGE_REPEATS, start=2):
        for unit in range(repeats):
            p, t = _prefix(stage, unit + 1), f"features.{index}"
            pairs += [(f"{p}pw1", f"{t}.branch_main_1.0"), (f"{p}pw1_bn", f"{t}.branch_main_1.1"),
                      (f"{p}dw", f"{t}.branch_main_1.3"), (f"{p}dw_bn", f"{t}.branch_main_1.4"),
                      (f"{p}pw2", f"{t}.branch_main_2.0"), (f"{p}pw2_bn", f"{t}.branch_main_2.1")]
            index += 1
    return [*pairs, ("predictions", "classifier.0")]


def _shuffle_unit(x, out_channels: int, groups: int, stride: int, first_group: bool, prefix: str):
    """One ShuffleNet V1 unit: ``(N, H, W, C)`` -> ``(N, H/stride, W/stride, out_channels)``."""
    layers = _backend.keras_module().layers
    mid = out_channels // 4
    main_channels = out_channels - channels(x) if stride == 2 else out_channels
    y = conv_bn(x, mid, 1, groups=1 if first_group else groups, name=f"{prefix}pw1", bn=_BN, act="relu")
    y = depthwise_bn(y, 3, stride=stride, name=f"{prefix}dw", bn=_BN)
    if groups > 1:
        # megvii's shuffle, (C/g, g) -> (g, C/g): ChannelShuffle (the (g, C/g) -> (C/g, g) one) with C/g groups
        y = get_layer_class("ChannelShuffle")(groups=mid // groups, name=f"{prefix}shuffle")(y)
    y = conv_bn(y, main_channels, 1, groups=groups, name=f"{prefix}pw2", bn=_BN)
    if stride == 1:
        y = layers.Add(name=f"{prefix}add")([y, x])
        return layers.ReLU(name=f"{prefix}relu")(y)
    shortcut = layers.ZeroPadding2D(1, name=f"{prefix}shortcut_pad")(x)
    shortcut = layers.AveragePooling2D(3, strides=2, padding="valid", name=f"{prefix}shortcut_pool")(shortcut)
    y = layers.ReLU(name=f"{prefix}relu")(y)
    return layers.Concatenate(axis=channel_axis(), name=f"{prefix}concat")([shortcut, y])


def ShuffleNetV1(
    input_shape=None,
    groups=3,
    alpha=1.0,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    *,
    include_preprocessing=False,
):
    """Instantiates ShuffleNet V1 (megvii's ``ShuffleNetV1(group=groups, model_size="{alpha}x")``).

    Reference: [ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
    Devices](https://arxiv.org/abs/1707.01083); code: megvii-model/ShuffleNet-Series
    (https://github.com/megvii-model/ShuffleNet-Series, ``ShuffleNetV1/``).

    Inputs are ``(batch, height, width, 3)`` float **BGR** pixels in ``[0, 255]``
    (``keras_lightnets.shufflenet_v1.preprocess_input`` turns RGB into that, mode
    "bgr255"), or RGB ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        groups: groups of the pointwise convolutions, one of 1, 2, 3, 4, 8 (the paper's
            Table 1; megvii publishes 3 and 8).
        alpha: width (the paper's "s x"): 0.5, 1.0, 1.5, 2.0 are the registered variants;
            any positive value builds scaled channels (see the module docstring).
        include_top: whether to include the dense classifier (no bias, as megvii's).
        weights: ``None``, ``"imagenet"`` (only where the registry lists weight files for
            the variant), the path of a Keras weights file, or of a megvii checkpoint
            (``.safetensors`` / ``.pth`` state_dict) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``shufflenet_v1_g{groups}_x{alpha}``, e.g. ``shufflenet_v1_g3_x1_0``).
        include_preprocessing: keyword only, default False (BGR inputs, as megvii expects, from
            ``preprocess_input``); True reverses the channels inside the model (a
            ``ChannelSplit`` and a ``Concatenate`` named ``rescaling``), which then takes RGB
            ``[0, 255]`` pixels (3 channels).

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_groups(groups)
    check_alpha(alpha, weights=weights, pretrained=WIDTHS)
    stem, *stages = stage_channels(groups, alpha)
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    layers = _backend.keras_module().layers
    image = in_model_preprocessing(image, include_preprocessing, "bgr255")

    x = conv_bn(image, stem, 3, stride=2, pad_mode="symmetric", name="conv1", bn=_BN, act="relu")
    features.mark(x)
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    features.mark(x)
    for stage, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, stages, strict=True), start=2):
        for unit in range(repeats):
            x = _shuffle_unit(x, out_channels, groups, 2 if unit == 0 else 1, first_group=stage == 2 and unit == 0,
                              prefix=_prefix(stage, unit + 1))
            features.mark(x)
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, use_bias=False,
    )
    return finish_model(
        inputs, x, name=name or f"shufflenet_v1_g{groups}_x{width_text(alpha)}", weights=weights,
        imagenet_file=lambda: variant_of(ShuffleNetV1, groups=groups, alpha=alpha).weight_file(
            include_top=include_top),
        torch_mapping=torch_mapping,
    )


preprocess_input = imagenet.preprocess_bgr255
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224 (100 - the published top-1 error):
# * groups 3 and 8: megvii's ShuffleNetV1/README.md "Results" table of its released checkpoints
#   (https://github.com/megvii-model/ShuffleNet-Series/blob/master/ShuffleNetV1/README.md):
#   errors g3 42.7 / 32.2 / 28.4 / 25.9, g8 41.2 / 32.0 / 29.0 / 27.1 at 0.5x / 1.0x / 1.5x / 2.0x;
# * groups 1, 2, 4: the paper's Table 2 (arXiv 1707.01083v2, "classification error vs. number of
#   groups"): 1x g1 33.6, g2 32.7, g4 32.8; 0.5x g1 45.1, g2 44.4, g4 41.6; no checkpoints exist.
#   1.5x and 2.0x are not in that table: None.
# ``params`` is Keras' count (BatchNorm moving statistics included); ``trainable`` the reference's
# parameter count (megvii's g3 1.0x: 1,864,728, the reference vectors' state_dict).
_ERRORS = {
    1: {0.5: 45.1, 1.0: 33.6},
    2: {0.5: 44.4, 1.0: 32.7},
    3: {0.5: 42.7, 1.0: 32.2, 1.5: 28.4, 2.0: 25.9},
    4: {0.5: 41.6, 1.0: 32.8},
    8: {0.5: 41.2, 1.0: 32.0, 1.5: 29.0, 2.0: 27.1},
}
# (groups, alpha): (Keras params, trainable params, MACs at 224x224), re-derived by the tests.
_FACTS = {
    (1, 0.5): (540_828, 533_484, 38_517_408),
    (1, 1.0): (1_545_624, 1_530_936, 143_078_976),
    (1, 1.5): (3_014_064, 2_992_032, 308_096_352),
    (1, 2.0): (4_947_120, 4_917_744, 550_334_592),
    (2, 0.5): (653_560, 643_320, 38_914_784),
    (2, 1.0): (1_753_248, 1_732_848, 140_836_512),
    (2, 1.5): (3_303_040, 3_272_400, 303_198_368),
    (2, 2.0): (5_297_696, 5_256_896, 539_138_624),
    (3, 0.5): (729_564, 717_324, 37_589_856),
    (3, 1.0): (1_889_208, 1_864_728, 137_460_672),
    (3, 1.5): (3_477_888, 3_441_168, 292_443_552),
    (3, 2.0): (5_498_736, 5_449_776, 524_045_184),
    (4, 0.5): (791_544, 777_592, 37_943_936),
    (4, 1.0): (1_995_088, 1_967_344, 134_339_776),
    (4, 1.5): (3_616_232, 3_574_536, 287_149_120),
    (4, 2.0): (5_648_016, 5_592_528, 510_289_536),
    (8, 0.5): (1_030_032, 1_010_448, 40_469_760),
    (8, 1.0): (2_472_936, 2_433_768, 138_365_952),
    (8, 1.5): (4_327_704, 4_268_952, 290_188_800),
    (8, 2.0): (6_599_568, 6_521_232, 521_942_016),
}


def _top1(groups: int, alpha: float) -> float | None:
    error = _ERRORS[groups].get(alpha)
    return None if error is None else round(100.0 - error, 1)


for _groups in GROUPS:
    for _alpha in WIDTHS:
        _params, _trainable, _macs = _FACTS[_groups, _alpha]
        _source = "megvii's channels (its published checkpoints)" if _groups in (3, 8) else \
            "the paper's Table 1 channels scaled by the width (megvii defines only groups 3 and 8)"
        register_model(
            f"shufflenet_v1_g{_groups}_x{width_text(_alpha)}", ShuffleNetV1, {"groups": _groups, "alpha": _alpha},
            family="shufflenet_v1", input_size=224, preprocessing="bgr255", params=_params, macs=_macs,
            top1=_top1(_groups, _alpha), paper=PAPER, layer_groups=LAYER_GROUPS,
            # Group counts share the code; groups 1 has no grouped convolution (a different int8 graph).
            architecture=f"ShuffleNetV1(groups={'1' if _groups == 1 else '>1'})",
            notes=f"{_trainable:,} trainable parameters; {_source}; inputs BGR [0, 255] ({REFERENCE})",
        )
