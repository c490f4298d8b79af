"""MnasNet-A1 and MnasNet-B1 (Tan et al., 2019).

``MnasNetB1`` is torchvision's ``MNASNet`` (``mnasnet0_5`` .. ``mnasnet1_3``; the
version-2 stem that scales with ``alpha``), so its checkpoints port exactly
(``keras_lightnets.weights.torchvision``): no squeeze-excite, ReLU, BatchNorm
epsilon 1e-5 and momentum 0.9997 (torch's 0.0003). ``MnasNetA1`` is the paper's
headline model (Figure 7: squeeze-and-excite in three stages, about 3.9M
parameters and 312M MACs at 224x224) as timm 1.0 builds it (``semnasnet_050`` ..
``semnasnet_140``, ``timm/models/efficientnet.py`` ``_gen_mnasnet_a1``,
https://github.com/huggingface/pytorch-image-models), so timm's checkpoints port
exactly with ``weights=PATH`` (``torch_mapping_a1``). Both pad like PyTorch
(``kernel // 2`` on every side; explicit ``ZeroPadding2D`` + ``valid`` for stride 2).
Inputs are ``(batch, height, width, 3)`` RGB normalised with ImageNet mean/std
(``preprocess_input``, mode "torch").
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.errors import InputError
from keras_lightnets.layout import channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, activation, classifier_or_pooling, conv_bn, inverted_residual
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import WeightFile, register_model, registered, variant_of
from keras_lightnets.validation import check_rate

PAPER = "https://arxiv.org/abs/1807.11626"
PRETRAINED_ALPHAS_B1 = (0.5, 0.75, 1.0, 1.3)
STEM_FILTERS = 32  # stem conv; then a depthwise-separable conv to SEPARABLE_FILTERS (both scaled)
SEPARABLE_FILTERS = 16
HEAD_FILTERS = 1280  # not scaled by alpha (as torchvision and the paper)
SE_RATIO = 0.25  # of the block's input channels (the paper's TensorFlow reference; timm's se_from_exp=False)

# One row per stage of inverted residuals:
# (expansion, output filters at alpha=1, kernel, stride of the first block, repeats, squeeze-excite).
# A1_STAGES are timm's arch_def rows 1-6 (row 0, "ds_r1_k3_s1_e1_c16_noskip", is the stem's
# depthwise-separable conv), e.g. "ir_r3_k5_s2_e3_c40_se0.25" -> (3, 40, 5, 2, 3, True).
B1_STAGES = (
    (3, 24, 3, 2, 3, False),
    (3, 40, 5, 2, 3, False),
    (6, 80, 5, 2, 3, False),
    (6, 96, 3, 1, 2, False),
    (6, 192, 5, 2, 4, False),
    (6, 320, 3, 1, 1, False),
)
A1_STAGES = (
    (6, 24, 3, 2, 2, False),
    (3, 40, 5, 2, 3, True),
    (6, 80, 3, 2, 4, False),
    (6, 112, 3, 1, 2, True),
    (6, 160, 5, 2, 3, True),
    (6, 320, 3, 1, 1, False),
)
_BN = BatchNorm(epsilon=1e-5, momentum=1.0 - 0.0003)  # torch momentum 0.0003 -> Keras 0.9997
_FIRST_STAGE_LAYER = 8  # torchvision's ``layers`` index of the first stage (after the 8-module stem)
# Blocks for unfreezing: each inverted residual ("stage1_block1", ...) and the stem ("stem");
# head_conv is a block of its own.
LAYER_GROUPS = ((r"(stage\d+_block\d+)(?:_|$)", r"\1"), (r"(stem)(?:_|$)", r"\1"))


def _prefix(stage: int, block: int) -> str:
    return f"stage{stage}_block{block}_"


def torch_mapping_b1(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, torchvision state_dict prefix)]`` of torchvision's MNASNet (any alpha)."""
    pairs = [
        ("stem_conv", "layers.0"), ("stem_conv_bn", "layers.1"),
        ("stem_depthwise", "layers.3"), ("stem_depthwise_bn", "layers.4"),
        ("stem_project", "layers.6"), ("stem_project_bn", "layers.7"),
    ]
    for stage, (*_, repeats, _se) in enumerate(B1_STAGES, start=1):
        for block in range(repeats):
            p, t = _prefix(stage, block + 1), f"layers.{_FIRST_STAGE_LAYER + stage - 1}.{block}.layers"
            pairs += [(f"{p}expand", f"{t}.0"), (f"{p}expand_bn", f"{t}.1"),
                      (f"{p}depthwise", f"{t}.3"), (f"{p}depthwise_bn", f"{t}.4"),
                      (f"{p}project", f"{t}.6"), (f"{p}project_bn", f"{t}.7")]
    head = _FIRST_STAGE_LAYER + len(B1_STAGES)
    return [*pairs, ("head_conv", f"layers.{head}"), ("head_conv_bn", f"layers.{head + 1}"),
            ("predictions", "classifier.1")]


def torch_mapping_a1(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, timm state_dict prefix)]`` of timm's ``semnasnet_*`` (any alpha).

    timm's ``EfficientNet``: ``conv_stem``/``bn1``; ``blocks.0.0`` the stem's
    depthwise-separable block (``conv_dw``, ``bn1``, ``conv_pw``, ``bn2``);
    ``blocks.{stage}.{block}`` the inverted residuals (``conv_pw``, ``bn1``, ``conv_dw``,
    ``bn2``, ``se.conv_reduce``, ``se.conv_expand``, ``conv_pwl``, ``bn3``);
    ``conv_head``/``bn2`` and ``classifier``.
    """
    pairs = [
        ("stem_conv", "conv_stem"), ("stem_conv_bn", "bn1"),
        ("stem_depthwise", "blocks.0.0.conv_dw"), ("stem_depthwise_bn", "blocks.0.0.bn1"),
        ("stem_project", "blocks.0.0.conv_pw"), ("stem_project_bn", "blocks.0.0.bn2"),
    ]
    for stage, (*_, repeats, se) in enumerate(A1_STAGES, start=1):
        for block in range(repeats):
            p, t = _prefix(stage, block + 1), f"blocks.{stage}.{block}"
            pairs += [(f"{p}expand", f"{t}.conv_pw"), (f"{p}expand_bn", f"{t}.bn1"),
                      (f"{p}depthwise", f"{t}.conv_dw"), (f"{p}depthwise_bn", f"{t}.bn2")]
            if se:
                pairs += [(f"{p}squeeze_excite_conv", f"{t}.se.conv_reduce"),
                          (f"{p}squeeze_excite_conv_1", f"{t}.se.conv_expand")]
            pairs += [(f"{p}project", f"{t}.conv_pwl"), (f"{p}project_bn", f"{t}.bn3")]
    return [*pairs, ("head_conv", "conv_head"), ("head_conv_bn", "bn2"), ("predictions", "classifier")]


def se_filters_a1(expanded: int, expansion: int) -> int:
    """Squeeze-excite channels of an A1 block: a quarter of the block's input channels.

    Computed as timm does (``SqueezeExcite`` on the ``expanded`` channels with ratio
    ``0.25 / expansion``, Python ``round``), e.g. 72 expanded channels of a 24-channel
    block with expansion 3 -> 6.
    """
    return round(expanded * (SE_RATIO / expansion))


def _mnasnet(
    stages, *, alpha, input_shape, include_top, weights, input_tensor, pooling, classes,
    classifier_activation, dropout_rate, name, imagenet_file, torch_mapping, include_preprocessing,
):
    """Stem (conv 3x3/2, depthwise-separable 3x3), inverted-residual stages, 1x1 head conv."""
    check_rate("dropout_rate", dropout_rate)
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    layers = _backend.keras_module().layers
    image = in_model_preprocessing(image, include_preprocessing, "torch")

    x = conv_bn(image, make_divisible(STEM_FILTERS * alpha, 8), 3, stride=2, pad_mode="symmetric",
                name="stem_conv", bn=_BN, act="relu")
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="stem_depthwise")(x)
    x = _BN(x, "stem_depthwise_bn")
    x = activation(x, "relu", "stem_depthwise_relu")
    x = conv_bn(x, make_divisible(SEPARABLE_FILTERS * alpha, 8), 1, name="stem_project", bn=_BN)
    features.mark(x)
    for stage, (expansion, filters, kernel, first_stride, repeats, se) in enumerate(stages, start=1):
        for block in range(repeats):
            block_stride = first_stride if block == 0 else 1
            in_channels = channels(x)  # a multiple of 8, so in * expansion is timm's make_divisible(in * e)
            x = inverted_residual(
                x, expanded=in_channels * expansion, filters=make_divisible(filters * alpha, 8),
                kernel_size=kernel, stride=block_stride, prefix=_prefix(stage, block + 1), bn=_BN,
                act="relu", se_filters=se_filters_a1(in_channels * expansion, expansion) if se else None,
                se_act="relu", se_gate="sigmoid", pad_mode="symmetric",
            )
            features.mark(x)
    x = conv_bn(x, HEAD_FILTERS, 1, name="head_conv", bn=_BN, act="relu")
    features.mark(x)
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout=dropout_rate,
    )
    return finish_model(inputs, x, name=name, weights=weights, imagenet_file=imagenet_file,
                        torch_mapping=torch_mapping)


def _alpha_text(alpha: float) -> str:
    return f"{round(alpha * 100):03d}"


def MnasNetB1(
    input_shape=None,
    alpha=1.0,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout_rate=0.2,
    name=None,
    *,
    include_preprocessing=False,
):
    """Instantiates MnasNet-B1, torchvision's ``MNASNet`` (``mnasnet0_5`` .. ``mnasnet1_3``).

    Reference: [MnasNet: Platform-Aware Neural Architecture Search for Mobile](
    https://arxiv.org/abs/1807.11626).

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.mnasnet.preprocess_input``, mode "torch"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: depth multiplier of every stage but the 1280-channel head (channels
            rounded to multiples of 8, never down by more than 10%). ImageNet weights
            exist for 0.5, 0.75, 1.0 and 1.3; any positive value builds without them.
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (torchvision's ImageNet checkpoint,
            downloaded and converted once), the path of a Keras weights file, or of a
            torchvision checkpoint (``.safetensors`` / ``.pth``) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        dropout_rate: dropout before the classifier, in ``[0, 1)``.
        name: model name (default ``mnasnet_b1_{100 * alpha:03d}``, e.g. ``mnasnet_b1_100``).
        include_preprocessing: keyword only, default False (inputs normalised as torchvision
            expects, by ``preprocess_input``); True puts that normalisation in the model (a
            ``Rescale`` layer named ``rescaling``), which then takes raw ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_alpha(alpha, weights=weights, pretrained=PRETRAINED_ALPHAS_B1)
    return _mnasnet(
        B1_STAGES, alpha=alpha, input_shape=input_shape, include_top=include_top, weights=weights,
        input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate,
        name=name or f"mnasnet_b1_{_alpha_text(alpha)}",
        imagenet_file=lambda: variant_of(MnasNetB1, alpha=alpha).weight_file(include_top=include_top),
        torch_mapping=torch_mapping_b1,
        include_preprocessing=include_preprocessing,
    )


def _pretrained_alphas_a1() -> tuple[float, ...]:
    """The widths whose registry record names ImageNet weight files (read when asked)."""
    return tuple(c.kwargs["alpha"] for c in registered() if c.builder is MnasNetA1 and c.weight_files)


def MnasNetA1(
    input_shape=None,
    alpha=1.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout_rate=0.2,
    name=None,
    *,
    include_preprocessing=False,
):
    """Instantiates MnasNet-A1 (with squeeze-and-excite), timm's ``semnasnet_*``.

    Reference: [MnasNet: Platform-Aware Neural Architecture Search for Mobile](
    https://arxiv.org/abs/1807.11626), Figure 7, as timm 1.0 builds it
    (``semnasnet_050`` / ``_075`` / ``_100`` / ``_140``, ``_gen_mnasnet_a1`` in
    https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/efficientnet.py).
    Squeeze-excite (global average -> 1x1 conv + ReLU -> 1x1 conv + sigmoid -> scale)
    reduces to a quarter of each block's input channels (``se_filters_a1``).

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.mnasnet.preprocess_input``, mode "torch", as timm's
    ``pretrained_cfg``), or raw ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: depth multiplier (timm's ``channel_multiplier``) of the stem and every
            stage but the 1280-channel head (channels rounded to multiples of 8, never
            down by more than 10%); any positive value builds. 0.5, 0.75, 1.0 and 1.4
            are registered (``mnasnet_a1_050`` .. ``mnasnet_a1_140``).
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (timm's ImageNet checkpoint, for alpha 0.75 and
            1.0, downloaded and converted once), the path of a Keras weights file, or of a
            timm checkpoint (``.safetensors`` / ``.pth``) of the same width to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        dropout_rate: dropout before the classifier, in ``[0, 1)``.
        name: model name (default ``mnasnet_a1_{100 * alpha:03d}``, e.g. ``mnasnet_a1_100``).
        include_preprocessing: keyword only, default False (inputs normalised as timm
            expects, by ``preprocess_input``); True puts that normalisation in the model (a
            ``Rescale`` layer named ``rescaling``), which then takes raw ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_alpha(alpha, weights=None, pretrained=())
    if weights == "imagenet" and alpha not in _pretrained_alphas_a1():
        with_weights = ", ".join(str(a) for a in _pretrained_alphas_a1()) or "none"
        raise InputError(
            f"MnasNetA1 has no ImageNet weights for alpha={alpha!r} (widths with weights: {with_weights}); "
            "`weights` must be None, the path to a Keras weights file, or a timm checkpoint "
            "(.safetensors / .pth) to port"
        )
    return _mnasnet(
        A1_STAGES, alpha=alpha, input_shape=input_shape, include_top=include_top, weights=weights,
        input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate,
        name=name or f"mnasnet_a1_{_alpha_text(alpha)}",
        imagenet_file=lambda: variant_of(MnasNetA1, alpha=alpha).weight_file(include_top=include_top),
        torch_mapping=torch_mapping_a1,
        include_preprocessing=include_preprocessing,
    )


preprocess_input = imagenet.preprocess_torch
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224: torchvision's documented ImageNet-1K acc@1 (B1; the whole network in one file,
# also used without the top) and timm's results/results-imagenet.csv (A1: semnasnet_075.rmsp_in1k
# 72.992, semnasnet_100.rmsp_in1k 75.450; timm has no checkpoint of 0.5 and 1.4, "untrained").
# ``params`` is Keras' count (BatchNorm moving statistics included); the trainable
# count equals torchvision's ``num_params`` (B1) and timm's parameter count (A1).
_FACTS = dict(family="mnasnet", input_size=224, preprocessing="torch", paper=PAPER, layer_groups=LAYER_GROUPS)
for _alpha, _file, _params, _trainable, _macs, _top1 in (
    (0.5, "mnasnet0.5_top1_67.823-3ffadce67e.pth", 2_239_136, 2_218_512, 104_455_968, 67.734),
    (0.75, "mnasnet0_75-7090bc5f.pth", 3_200_016, 3_170_208, 215_493_104, 71.180),
    (1.0, "mnasnet1.0_top1_73.512-f206786ef8.pth", 4_421_232, 4_383_312, 314_415_872, 73.456),
    (1.3, "mnasnet1_3-a4c69d6f.pth", 6_331_072, 6_282_256, 526_362_432, 76.506),
):
    register_model(f"mnasnet_b1_{_alpha_text(_alpha)}", MnasNetB1, {"alpha": _alpha}, params=_params,
                   macs=_macs, top1=_top1, weight_files=(WeightFile(_file, 224),),
                   notes=f"{_trainable:,} trainable parameters (torchvision's num_params)", **_FACTS)
# A1's ImageNet files are timm's hub checkpoints (``<hub id>.safetensors``, see weights.manifest_tools).
for _alpha, _file, _params, _trainable, _macs, _top1 in (
    (0.5, None, 2_100_406, 2_082_006, 103_162_992, None),
    (0.75, "semnasnet_075.rmsp_in1k.safetensors", 2_939_110, 2_912_278, 223_448_480, 72.992),
    (1.0, "semnasnet_100.rmsp_in1k.safetensors", 3_920_526, 3_887_038, 311_579_072, 75.450),
    (1.4, None, 6_152_008, 6_105_992, 586_317_952, None),
):
    register_model(f"mnasnet_a1_{_alpha_text(_alpha)}", MnasNetA1, {"alpha": _alpha}, params=_params,
                   macs=_macs, top1=_top1, weight_files=(WeightFile(_file, 224),) if _file else (),
                   notes=f"{_trainable:,} trainable parameters (timm's semnasnet_{_alpha_text(_alpha)})"
                         + ("" if _file else "; timm has no ImageNet checkpoint of this width"), **_FACTS)
