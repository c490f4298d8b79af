"""EfficientNet-Lite0 .. Lite4 (Google, 2020), as timm's ``tf_efficientnet_lite0`` .. ``4`` build them.

EfficientNet-Lite is EfficientNet-B0's network made friendly to mobile accelerators and
post-training quantization (https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite):
no squeeze-and-excite, ReLU6 instead of swish, and a stem (32 channels) and head
(1280 channels) that stay fixed while the rest is scaled. A variant is EfficientNet-B0's
stage table scaled by three coefficients, ``(width, depth, resolution)``:

* width: every stage's channels times ``width``, rounded to a multiple of 8 (never more
  than 10% down; ``make_divisible``);
* depth: the repeats of stages 2-6 times ``depth``, rounded *up*; the first and the last
  stage keep one block;
* resolution: the input side the variant was trained at.

Architecture, padding and tensor layout are those of timm 1.0.31's ``tf_efficientnet_lite*``
(``timm/models/efficientnet.py`` ``_gen_efficientnet_lite``), ports of the TensorFlow
checkpoints, so their state_dicts port exactly (``torch_mapping``). Padding is TensorFlow's
"SAME" (the extra pixel of a stride-2 conv at the bottom/right), which Keras ``"same"`` is.
BatchNorm: epsilon 1e-3, momentum 0.99 (TensorFlow's; timm trains its own with PyTorch's
0.1, i.e. Keras 0.9). Inputs are ``(batch, height, width, 3)`` RGB scaled to ``[-1, 1]``
(timm's mean = std = 0.5 of ``[0, 1]`` pixels; ``preprocess_input``, mode "tf").

Training-only parts: dropout before the classifier (``dropout_rate``, TensorFlow's 0.2 for
Lite0/1 and 0.3 for Lite2-4) and, off by default as in timm, stochastic depth on the
residual branches (``drop_connect_rate``; TensorFlow and timm train with 0.2, rising
linearly from 0 at the first block as in keras.applications' EfficientNet).
"""

from __future__ import annotations

import math
import re

from keras_lightnets import imagenet
from keras_lightnets.layout import channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, classifier_or_pooling, conv_bn, inverted_residual
from keras_lightnets.models.builder import (
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_rate

PAPER = "https://arxiv.org/abs/1905.11946"
REFERENCE = "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"
STEM_FILTERS = 32  # fixed for every variant
HEAD_FILTERS = 1280  # fixed for every variant
# EfficientNet-B0's stages, without squeeze-excite (timm's block strings ds_r1_k3_s1_e1_c16,
# ir_r2_k3_s2_e6_c24, ...): (expansion, output filters, kernel, stride of the first block, repeats).
# Stage 1 is a depthwise-separable block (no expansion conv); the others are inverted residuals.
STAGES = (
    (1, 16, 3, 1, 1),
    (6, 24, 3, 2, 2),
    (6, 40, 5, 2, 2),
    (6, 80, 3, 2, 3),
    (6, 112, 5, 1, 3),
    (6, 192, 5, 2, 4),
    (6, 320, 3, 1, 1),
)
# Variant -> (width, depth, resolution, dropout): TensorFlow's efficientnet_lite_builder.py
# ``efficientnet_lite_params`` (timm's ``_gen_efficientnet_lite`` docstring lists the same).
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 280, 0.3),
    4: (1.4, 1.8, 300, 0.3),
}
_BN = BatchNorm(epsilon=1e-3, momentum=0.99)
# Blocks for unfreezing: each block ("stage1_block1", ...) and the stem ("stem"); head_conv is
# a block of its own.
LAYER_GROUPS = ((r"(stage\d+_block\d+)(?:_|$)", r"\1"), (r"(stem)(?:_|$)", r"\1"))
_DEPTHWISE = re.compile(r"stage(\d+)_block(\d+)_depthwise")


def stage_repeats(depth: float) -> tuple[int, ...]:
    """Blocks per stage for the depth coefficient ``depth``.

    timm's ``decode_arch_def(..., fix_first_last=True)`` with ``depth_trunc="ceil"``: the
    repeats of every stage but the first and the last are ``ceil(repeats * depth)``.
    """
    last = len(STAGES) - 1
    return tuple(
        repeats if index in (0, last) else math.ceil(repeats * depth)
        for index, (*_, repeats) in enumerate(STAGES)
    )


def stage_filters(width: float) -> tuple[int, ...]:
    """Output channels per stage for the width coefficient ``width`` (timm's ``round_channels``)."""
    return tuple(make_divisible(filters * width, 8) for _, filters, *_ in STAGES)


def _prefix(stage: int, block: int) -> str:
    return f"stage{stage}_block{block}_"


def torch_mapping(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, timm state_dict prefix)]`` of an EfficientNet-Lite (any variant).

    Stage ``s``, block ``b`` of the Keras model is timm's ``blocks.{s-1}.{b-1}``. A block
    without an expansion conv is timm's ``DepthwiseSeparableConv`` (``conv_dw``, ``bn1``,
    ``conv_pw``, ``bn2``); one with it an ``InvertedResidual`` (``conv_pw``, ``bn1``,
    ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``). The blocks are read from the model's
    layer names, so one mapping serves every width and depth.
    """
    names = {layer.name for layer in model.layers}
    pairs = [("stem_conv", "conv_stem"), ("stem_conv_bn", "bn1")]
    for layer in model.layers:
        match = _DEPTHWISE.fullmatch(layer.name)
        if match is None:
            continue
        p, t = _prefix(int(match[1]), int(match[2])), f"blocks.{int(match[1]) - 1}.{int(match[2]) - 1}"
        if f"{p}expand" in names:
            pairs += [(f"{p}expand", f"{t}.conv_pw"), (f"{p}expand_bn", f"{t}.bn1"),
                      (f"{p}depthwise", f"{t}.conv_dw"), (f"{p}depthwise_bn", f"{t}.bn2"),
                      (f"{p}project", f"{t}.conv_pwl"), (f"{p}project_bn", f"{t}.bn3")]
        else:
            pairs += [(f"{p}depthwise", f"{t}.conv_dw"), (f"{p}depthwise_bn", f"{t}.bn1"),
                      (f"{p}project", f"{t}.conv_pw"), (f"{p}project_bn", f"{t}.bn2")]
    return [*pairs, ("head_conv", "conv_head"), ("head_conv_bn", "bn2"), ("predictions", "classifier")]


def _efficientnet_lite(
    variant: int, *, include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, name, include_preprocessing, dropout_rate, drop_connect_rate, builder,
):
    """Build EfficientNet-Lite ``variant`` from its ``(width, depth, resolution)`` coefficients.

    Stem (3x3/2 conv, 32 channels), the seven scaled stages, 1x1 head conv (1280 channels),
    then the classifier or the optional pooling; every conv is followed by BatchNorm and
    ReLU6 except the 1x1 projection of each block (BatchNorm only).
    """
    width, depth, resolution, _ = VARIANTS[variant]
    check_rate("dropout_rate", dropout_rate)
    check_rate("drop_connect_rate", drop_connect_rate)
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, default_size=resolution,
    )
    if weights == "imagenet":  # refuse a variant without ImageNet weights before building it
        variant_of(builder).weight_file(include_top=include_top)
    image = in_model_preprocessing(image, include_preprocessing, "tf")

    x = conv_bn(image, STEM_FILTERS, 3, stride=2, pad_mode="same", name="stem_conv", bn=_BN, act="relu6")
    features.mark(x)
    repeats = stage_repeats(depth)
    total, done = sum(repeats), 0
    for stage, ((expansion, _, kernel, first_stride, _), filters, count) in enumerate(
        zip(STAGES, stage_filters(width), repeats, strict=True), start=1
    ):
        for block in range(count):
            x = inverted_residual(
                x, expanded=make_divisible(channels(x) * expansion, 8) if expansion != 1 else channels(x),
                filters=filters, kernel_size=kernel, stride=first_stride if block == 0 else 1,
                prefix=_prefix(stage, block + 1), bn=_BN, act="relu6", pad_mode="same",
                drop_path=drop_connect_rate * done / total,
            )
            done += 1
            features.mark(x)
    x = conv_bn(x, HEAD_FILTERS, 1, name="head_conv", bn=_BN, act="relu6")
    features.mark(x)
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout=dropout_rate, dropout_name="top_dropout",
    )
    return finish_model(
        inputs, x, name=name or f"efficientnet_lite{variant}", weights=weights,
        imagenet_file=lambda: variant_of(builder).weight_file(include_top=include_top),
        torch_mapping=torch_mapping,
    )


_DOC = """Instantiates EfficientNet-Lite{n} (timm's ``tf_efficientnet_lite{n}``).

    Reference: [EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks](
    https://arxiv.org/abs/1905.11946); EfficientNet-Lite:
    https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite
    (width {width}, depth {depth}, trained at {size}x{size}).

    Inputs are ``(batch, height, width, 3)`` float RGB scaled to ``[-1, 1]``
    (``keras_lightnets.efficientnet_lite.preprocess_input``, mode "tf"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (where the variant has ImageNet weights), the path
            of a Keras weights file, or of a timm ``tf_efficientnet_lite{n}`` checkpoint
            (``.safetensors`` / ``.pth``) to port.
        input_tensor: optional Keras tensor to build the model on.
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``({size}, {size}, 3)`` with the top, ``(None, None, 3)`` without.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``efficientnet_lite{n}``).
        include_preprocessing: keyword only, default False (inputs scaled to ``[-1, 1]`` by
            ``preprocess_input``); True puts that scaling in the model (a ``Rescale`` layer
            named ``rescaling``), which then takes raw ``[0, 255]`` pixels.
        dropout_rate: keyword only; dropout before the classifier, in ``[0, 1)``
            (default {dropout}, TensorFlow's for this variant).
        drop_connect_rate: keyword only; stochastic depth of the residual branches, in
            ``[0, 1)``: the last block's drop rate, the first's 0, linear in between
            (default 0, timm's; TensorFlow trained with 0.2).

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """


def _variant_doc(builder, n: int):
    width, depth, size, dropout = VARIANTS[n]
    builder.__doc__ = _DOC.format(n=n, width=width, depth=depth, size=size, dropout=dropout)
    return builder


def EfficientNetLite0(
    include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, *, include_preprocessing=False, dropout_rate=0.2,
    drop_connect_rate=0.0,
):
    return _efficientnet_lite(
        0, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        include_preprocessing=include_preprocessing, dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate, builder=EfficientNetLite0,
    )


def EfficientNetLite1(
    include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, *, include_preprocessing=False, dropout_rate=0.2,
    drop_connect_rate=0.0,
):
    return _efficientnet_lite(
        1, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        include_preprocessing=include_preprocessing, dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate, builder=EfficientNetLite1,
    )


def EfficientNetLite2(
    include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, *, include_preprocessing=False, dropout_rate=0.3,
    drop_connect_rate=0.0,
):
    return _efficientnet_lite(
        2, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        include_preprocessing=include_preprocessing, dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate, builder=EfficientNetLite2,
    )


def EfficientNetLite3(
    include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, *, include_preprocessing=False, dropout_rate=0.3,
    drop_connect_rate=0.0,
):
    return _efficientnet_lite(
        3, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        include_preprocessing=include_preprocessing, dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate, builder=EfficientNetLite3,
    )


def EfficientNetLite4(
    include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
    classifier_activation="softmax", name=None, *, include_preprocessing=False, dropout_rate=0.3,
    drop_connect_rate=0.0,
):
    return _efficientnet_lite(
        4, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        include_preprocessing=include_preprocessing, dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate, builder=EfficientNetLite4,
    )


BUILDERS = (EfficientNetLite0, EfficientNetLite1, EfficientNetLite2, EfficientNetLite3, EfficientNetLite4)
for _n, _builder in enumerate(BUILDERS):
    _variant_doc(_builder, _n)

preprocess_input = imagenet.preprocess_tf
decode_predictions = imagenet.decode_predictions

# ``params`` is Keras' count at the default input size (BatchNorm moving statistics included);
# the trainable count equals timm's (tf_efficientnet_lite0: 4,652,008, the reference README) and
# rounds to the TensorFlow EfficientNet-Lite README's 4.7M, 5.4M, 6.1M, 8.2M and 13.0M.
# ``macs``: keras_lightnets.count_macs (convolutions and the classifier) at the variant's resolution.
# The TensorFlow README's MAdds (407M, 631M, 899M, 1.44B, 2.64B) are 3-6% higher: they equal these
# MACs plus three element-wise operations per convolution output (BatchNorm and ReLU6 counted too)
# within 0.4%. ``top1``: the float ImageNet top-1 of the TensorFlow checkpoints that timm ports, from
# that README (https://github.com/tensorflow/tpu/blob/master/models/official/efficientnet/lite/README.md),
# at the resolutions of VARIANTS; timm's pretrained_cfg evaluates Lite3 at 300 and Lite4 at 380 instead.
_FACTS = dict(family="efficientnet_lite", preprocessing="tf", paper=PAPER, layer_groups=LAYER_GROUPS)
for _n, _params, _trainable, _macs, _top1 in (
    (0, 4_694_024, 4_652_008, 385_187_552, 75.1),
    (1, 5_470_344, 5_416_680, 600_185_232, 76.7),
    (2, 6_150_168, 6_092_072, 859_736_272, 77.6),
    (3, 8_273_768, 8_197_096, 1_383_321_872, 79.8),
    (4, 13_118_936, 13_006_568, 2_553_034_336, 81.5),
):
    _timm_size = {3: 300, 4: 380}.get(_n)
    register_model(
        f"efficientnet_lite{_n}", BUILDERS[_n], {}, input_size=VARIANTS[_n][2], params=_params, macs=_macs,
        top1=_top1, architecture="EfficientNetLite",  # one builder, five (width, depth, resolution) coefficients
        # timm's port of TensorFlow's checkpoint (the same weights at any input size).
        weight_files=(WeightFile(f"tf_efficientnet_lite{_n}.in1k.safetensors", VARIANTS[_n][2]),),
        notes=f"{_trainable:,} trainable parameters (timm's tf_efficientnet_lite{_n})"
        + (f"; timm's pretrained_cfg evaluates it at {_timm_size}x{_timm_size}" if _timm_size else ""),
        **_FACTS,
    )
