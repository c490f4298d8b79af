"""ShuffleNet V2 (Ma et al., 2018), as torchvision builds it.

Architecture, padding and channel order are those of torchvision's
``shufflenet_v2_x0_5`` .. ``shufflenet_v2_x2_0``, so its checkpoints port exactly
(``keras_lightnets.weights.torchvision``). A stride-1 unit splits the channels in
two halves (``ChannelSplit``), keeps the first and transforms the second
(1x1 conv, 3x3 depthwise, 1x1 conv); a stride-2 unit transforms the whole input in
two branches. Both concatenate ``[kept or branch1, branch2]`` and interleave the
two halves (``ChannelShuffle``, groups 2). Stride-2 convs and the 3x3 max pool pad
one pixel on every side like PyTorch (explicit ``ZeroPadding2D`` + ``valid``; the
pool's input is a ReLU output >= 0, so zero padding equals PyTorch's -inf).
BatchNorm: epsilon 1e-5, momentum 0.9 (PyTorch's defaults). Inputs are
``(batch, height, width, 3)`` RGB normalised with ImageNet mean/std
(``preprocess_input``, mode "torch").
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layout import channel_axis
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, classifier_or_pooling, conv_bn, depthwise_bn
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of

PAPER = "https://arxiv.org/abs/1807.11164"
PRETRAINED_ALPHAS = (0.5, 1.0, 1.5, 2.0)
STEM_CHANNELS = 24
STAGE_REPEATS = (4, 8, 4)  # units of stages 2, 3, 4; the first unit of each has stride 2
# Output channels of stages 2, 3, 4 and of conv5 (paper Table 5, torchvision's lists).
STAGE_CHANNELS = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
_BN = BatchNorm(epsilon=1e-5, momentum=0.9)
# Blocks for unfreezing: each unit ("stage2_unit1", ...); conv1 and conv5 are blocks of their own.
LAYER_GROUPS = ((r"(stage\d+_unit\d+)(?:_|$)", r"\1"),)


def stage_channels(alpha: float) -> tuple[int, int, int, int]:
    """Channels of stages 2-4 and conv5 for width ``alpha``.

    The paper's four widths come from its Table 5. Any other ``alpha`` scales the
    1.0 stages, ``make_divisible(alpha * (116, 232, 464), 4)``, with 1024 conv5
    channels up to ``alpha`` 1.5 and 2048 above (no pretrained weights exist for those).
    """
    if alpha in STAGE_CHANNELS:
        return STAGE_CHANNELS[alpha]
    scaled = tuple(make_divisible(c * alpha, 4) for c in STAGE_CHANNELS[1.0][:3])
    return (*scaled, 2048 if alpha > 1.5 else 1024)


def width_text(alpha: float) -> str:
    """``alpha`` for names: 1.0 -> ``"1_0"``, 0.5 -> ``"0_5"``, 0.75 -> ``"0_75"``."""
    text = f"{alpha:.2f}".rstrip("0")
    return (text + "0" if text.endswith(".") else text).replace(".", "_")


def _prefix(stage: int, unit: int) -> str:
    return f"stage{stage}_unit{unit}_"


def torch_mapping(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, torchvision state_dict prefix)]`` of a ShuffleNetV2 (any width)."""
    pairs = [("conv1", "conv1.0"), ("conv1_bn", "conv1.1")]
    for stage, repeats in enumerate(STAGE_REPEATS, start=2):
        for unit in range(repeats):
            p, t = _prefix(stage, unit + 1), f"stage{stage}.{unit}"
            if unit == 0:
                pairs += [(f"{p}branch1_dw", f"{t}.branch1.0"), (f"{p}branch1_dw_bn", f"{t}.branch1.1"),
                          (f"{p}branch1_pw", f"{t}.branch1.2"), (f"{p}branch1_pw_bn", f"{t}.branch1.3")]
            pairs += [(f"{p}branch2_pw1", f"{t}.branch2.0"), (f"{p}branch2_pw1_bn", f"{t}.branch2.1"),
                      (f"{p}branch2_dw", f"{t}.branch2.3"), (f"{p}branch2_dw_bn", f"{t}.branch2.4"),
                      (f"{p}branch2_pw2", f"{t}.branch2.5"), (f"{p}branch2_pw2_bn", f"{t}.branch2.6")]
    return [*pairs, ("conv5", "conv5.0"), ("conv5_bn", "conv5.1"), ("predictions", "fc")]


def _branch2(x, channels: int, stride: int, prefix: str):
    """1x1 conv + BN + ReLU -> 3x3 depthwise (stride) + BN -> 1x1 conv + BN + ReLU."""
    x = conv_bn(x, channels, 1, name=f"{prefix}branch2_pw1", bn=_BN, act="relu")
    x = depthwise_bn(x, 3, stride=stride, name=f"{prefix}branch2_dw", bn=_BN)
    return conv_bn(x, channels, 1, name=f"{prefix}branch2_pw2", bn=_BN, act="relu")


def _shuffle_unit(x, out_channels: int, stride: int, prefix: str):
    """One ShuffleNetV2 unit: ``(N, H, W, C)`` -> ``(N, H/stride, W/stride, out_channels)``."""
    layers = _backend.keras_module().layers
    branch_channels = out_channels // 2
    if stride == 1:
        kept, x = get_layer_class("ChannelSplit")(groups=2, name=f"{prefix}split")(x)
    else:
        kept = depthwise_bn(x, 3, stride=stride, name=f"{prefix}branch1_dw", bn=_BN)
        kept = conv_bn(kept, branch_channels, 1, name=f"{prefix}branch1_pw", bn=_BN, act="relu")
    x = _branch2(x, branch_channels, stride, prefix)
    x = layers.Concatenate(axis=channel_axis(), name=f"{prefix}concat")([kept, x])
    return get_layer_class("ChannelShuffle")(groups=2, name=f"{prefix}shuffle")(x)


def ShuffleNetV2(
    input_shape=None,
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
    """Instantiates ShuffleNet V2 (torchvision's ``shufflenet_v2_x{0_5,1_0,1_5,2_0}``).

    Reference: [ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
    Design](https://arxiv.org/abs/1807.11164).

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.shufflenet_v2.preprocess_input``, mode "torch"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: width (the paper's "0.5x" .. "2x"). 0.5, 1.0, 1.5 and 2.0 use the
            paper's channels and have ImageNet weights; any other positive value
            builds scaled channels (see ``stage_channels``) without weights.
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (torchvision's ImageNet checkpoint,
            downloaded and converted once), the path of a Keras weights file, or of a
            torchvision checkpoint (``.safetensors`` / ``.pth``) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``shufflenet_v2_x{alpha}``, e.g. ``shufflenet_v2_x1_0``).
        include_preprocessing: keyword only, default False (inputs normalised as torchvision
            expects, by ``preprocess_input``); True puts that normalisation in the model (a
            ``Rescale`` layer named ``rescaling``), which then takes raw ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_alpha(alpha, weights=weights, pretrained=PRETRAINED_ALPHAS)
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    layers = _backend.keras_module().layers
    *stages, last_channels = stage_channels(alpha)
    image = in_model_preprocessing(image, include_preprocessing, "torch")

    x = conv_bn(image, STEM_CHANNELS, 3, stride=2, pad_mode="symmetric", name="conv1", bn=_BN, act="relu")
    features.mark(x)
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    features.mark(x)
    for stage, (repeats, channels) in enumerate(zip(STAGE_REPEATS, stages, strict=True), start=2):
        for unit in range(repeats):
            x = _shuffle_unit(x, channels, 2 if unit == 0 else 1, _prefix(stage, unit + 1))
            features.mark(x)
    x = conv_bn(x, last_channels, 1, name="conv5", bn=_BN, act="relu")
    features.mark(x)
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )
    return finish_model(
        inputs, x, name=name or f"shufflenet_v2_x{width_text(alpha)}", weights=weights,
        imagenet_file=lambda: variant_of(ShuffleNetV2, alpha=alpha).weight_file(include_top=include_top),
        torch_mapping=torch_mapping,
    )


preprocess_input = imagenet.preprocess_torch
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224: torchvision's documented ImageNet-1K acc@1 of these checkpoints (the whole
# network in one file, also used without the top). ``params`` is Keras' count (BatchNorm moving
# statistics included); the trainable count equals torchvision's ``num_params``.
for _alpha, _file, _params, _trainable, _macs, _top1 in (
    (0.5, "shufflenetv2_x0.5-f707e7126e.pth", 1_374_744, 1_366_792, 40_476_448, 60.552),
    (1.0, "shufflenetv2_x1-5666bf0f80.pth", 2_294_784, 2_278_604, 144_907_992, 69.362),
    (1.5, "shufflenetv2_x1_5-3c479a10.pth", 3_527_064, 3_503_624, 295_759_392, 72.996),
    (2.0, "shufflenetv2_x2_0-8be3c8ee.pth", 7_427_712, 7_393_996, 583_253_464, 76.230),
):
    register_model(
        f"shufflenet_v2_x{width_text(_alpha)}", ShuffleNetV2, {"alpha": _alpha}, family="shufflenet_v2",
        input_size=224, preprocessing="torch", params=_params, macs=_macs, top1=_top1, paper=PAPER,
        weight_files=(WeightFile(_file, 224),), layer_groups=LAYER_GROUPS,
        notes=f"{_trainable:,} trainable parameters (torchvision's num_params)",
    )
