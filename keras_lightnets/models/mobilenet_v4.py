"""MobileNetV4 Conv-S, Conv-M and Conv-L (Qin et al., 2024), as timm builds them.

Architecture, padding and tensor layout are those of timm's ``mobilenetv4_conv_small``,
``mobilenetv4_conv_medium`` and ``mobilenetv4_conv_large`` (timm 1.0.31,
``timm/models/mobilenetv3.py``: ``_gen_mobilenet_v4``; blocks from
``timm/models/_efficientnet_blocks.py``), so timm's checkpoints port exactly
(``weights=`` a ``.safetensors``/``.pth`` state_dict; ``torch_mapping``). The convolutional
variants only: the hybrid ones add Mobile MQA attention, which is not built here.

Each variant is a table of blocks (``SMALL``, ``MEDIUM``, ``LARGE``), one tuple of blocks
per stage, read by one builder. Three kinds of block:

* ``conv``: conv kxk (stride) -> BatchNorm -> ReLU, no residual (timm's ``ConvBnAct``).
* ``fused``: the fused inverted bottleneck (timm's ``EdgeResidual``): conv kxk (stride) to
  ``expansion`` x the input channels -> BN -> ReLU -> conv 1x1 -> BN.
* ``uib``: the universal inverted bottleneck (timm's ``UniversalInvertedResidual``):
  [depthwise ``start`` kxk -> BN] -> conv 1x1 to ``make_divisible(expansion x input
  channels)`` -> BN -> ReLU -> [depthwise ``middle`` kxk -> BN -> ReLU] -> conv 1x1 -> BN.
  A part whose kernel is 0 is left out (timm's ``Identity``): ``start`` and ``middle``
  both give the paper's ExtraDW, ``middle`` only the inverted bottleneck (IB), ``start``
  only ConvNeXt-like, neither the FFN. The stride sits on the middle depthwise conv, or
  on the start one when there is no middle one.

``fused`` and ``uib`` blocks add their input when stride is 1 and the channels agree. The
stem is conv 3x3/2 -> BN -> ReLU. Every conv pads like PyTorch, ``kernel // 2`` pixels on
every side (explicit ``ZeroPadding2D`` + ``valid`` for stride 2; stride 1 is ``same``).
BatchNorm: epsilon 1e-5, momentum 0.9 (PyTorch's defaults). The head (MobileNetV3's
"efficient head") pools first: global average pool -> conv 1x1 to 1280 channels (no
bias) -> BN -> ReLU -> flatten -> ``Dense`` classifier. Without the top the model ends
at the last feature map (960 channels, stride 32) before that pool, as keras.applications'
MobileNetV3 does, and ``pooling`` applies to it. Inputs are ``(batch, height, width, 3)``
RGB normalised with ImageNet mean/std (``preprocess_input``, mode "torch").

Layer names follow timm's indices: ``conv_stem``; ``block{stage}_{index}_...`` for
timm's ``blocks.{stage}.{index}`` (parts ``conv``, ``expand``, ``dw_start``, ``dw_mid``,
``project``, each with ``_bn``); ``conv_head`` (+ ``_bn``, timm's ``norm_head``);
``predictions`` (timm's ``classifier``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from keras_lightnets import _backend, imagenet
from keras_lightnets.layout import channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, conv_bn, depthwise_bn, global_pool
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_rate

PAPER = "https://arxiv.org/abs/2404.10518"
REFERENCE = "https://github.com/huggingface/pytorch-image-models/blob/v1.0.31/timm/models/mobilenetv3.py"
HEAD_CHANNELS = 1280  # timm's num_features: the 1x1 conv after the global pool
_BN = BatchNorm(epsilon=1e-5, momentum=0.9)  # torch's eps and momentum 0.1
# Blocks for unfreezing: each of timm's blocks ("block2_0", ...); conv_stem and conv_head
# (with their BatchNorms) are blocks of their own.
LAYER_GROUPS = ((r"(block\d+_\d+)(?:_|$)", r"\1"),)


@dataclass(frozen=True)
class Block:
    """One row of a variant's table (``repeats`` identical blocks; only the first strides).

    ``kind``: ``"conv"``, ``"fused"`` or ``"uib"`` (see the module docstring);
    ``filters``: output channels; ``kernel``: the conv's kernel (``conv``, ``fused``) or the
    middle depthwise kernel (``uib``; 0: none); ``start``: the start depthwise kernel
    (``uib``; 0: none); ``expansion``: inner channels over input channels.
    """

    kind: str
    filters: int
    kernel: int
    stride: int = 1
    start: int = 0
    expansion: float = 1.0
    repeats: int = 1


def _conv(filters: int, kernel: int, stride: int = 1) -> Block:
    return Block("conv", filters, kernel, stride)


def _fused(filters: int, kernel: int, stride: int, expansion: float) -> Block:
    return Block("fused", filters, kernel, stride, expansion=expansion)


def _uib(filters: int, start: int, middle: int, stride: int, expansion: float, repeats: int = 1) -> Block:
    return Block("uib", filters, middle, stride, start=start, expansion=expansion, repeats=repeats)


# Stages of blocks per variant (timm's arch defs; the stem's channels separately). Output
# strides at the end of each stage: 4, 8, 16, 32, 32.
STEM_CHANNELS = {"small": 32, "medium": 32, "large": 24}
SMALL = (
    (_conv(32, 3, 2), _conv(32, 1)),
    (_conv(96, 3, 2), _conv(64, 1)),
    (_uib(96, 5, 5, 2, 3), _uib(96, 0, 3, 1, 2, repeats=4), _uib(96, 3, 0, 1, 4)),
    (_uib(128, 3, 3, 2, 6), _uib(128, 5, 5, 1, 4), _uib(128, 0, 5, 1, 4), _uib(128, 0, 5, 1, 3),
     _uib(128, 0, 3, 1, 4, repeats=2)),
    (_conv(960, 1),),
)
MEDIUM = (
    (_fused(48, 3, 2, 4),),
    (_uib(80, 3, 5, 2, 4), _uib(80, 3, 3, 1, 2)),
    (_uib(160, 3, 5, 2, 6), _uib(160, 3, 3, 1, 4, repeats=2), _uib(160, 3, 5, 1, 4), _uib(160, 3, 3, 1, 4),
     _uib(160, 3, 0, 1, 4), _uib(160, 0, 0, 1, 2), _uib(160, 3, 0, 1, 4)),
    (_uib(256, 5, 5, 2, 6), _uib(256, 5, 5, 1, 4), _uib(256, 3, 5, 1, 4, repeats=2), _uib(256, 0, 0, 1, 4),
     _uib(256, 3, 0, 1, 4), _uib(256, 3, 5, 1, 2), _uib(256, 5, 5, 1, 4), _uib(256, 0, 0, 1, 4, repeats=2),
     _uib(256, 5, 0, 1, 2)),
    (_conv(960, 1),),
)
LARGE = (
    (_fused(48, 3, 2, 4),),
    (_uib(96, 3, 5, 2, 4), _uib(96, 3, 3, 1, 4)),
    (_uib(192, 3, 5, 2, 4), _uib(192, 3, 3, 1, 4, repeats=3), _uib(192, 3, 5, 1, 4),
     _uib(192, 5, 3, 1, 4, repeats=5), _uib(192, 3, 0, 1, 4)),
    (_uib(512, 5, 5, 2, 4, repeats=4), _uib(512, 5, 0, 1, 4), _uib(512, 5, 3, 1, 4),
     _uib(512, 5, 0, 1, 4, repeats=2), _uib(512, 5, 3, 1, 4), _uib(512, 5, 5, 1, 4),
     _uib(512, 5, 0, 1, 4, repeats=3)),
    (_conv(960, 1),),
)
VARIANTS = {"small": SMALL, "medium": MEDIUM, "large": LARGE}


def expand_stages(variant: str) -> list[list[Block]]:
    """The variant's blocks one by one, per stage (repeats unrolled, stride on the first)."""
    stages = []
    for rows in VARIANTS[variant]:
        blocks = []
        for row in rows:
            blocks += [replace(row, repeats=1)] + [replace(row, stride=1, repeats=1)] * (row.repeats - 1)
        stages.append(blocks)
    return stages


def _prefix(stage: int, index: int) -> str:
    return f"block{stage}_{index}_"


# Keras layer name suffix -> timm module suffix, per block kind (each conv with its BatchNorm).
_PARTS = {
    "conv": (("conv", "conv"), ("conv_bn", "bn1")),
    "fused": (("expand", "conv_exp"), ("expand_bn", "bn1"), ("project", "conv_pwl"), ("project_bn", "bn2")),
    "uib": (("dw_start", "dw_start.conv"), ("dw_start_bn", "dw_start.bn"), ("expand", "pw_exp.conv"),
            ("expand_bn", "pw_exp.bn"), ("dw_mid", "dw_mid.conv"), ("dw_mid_bn", "dw_mid.bn"),
            ("project", "pw_proj.conv"), ("project_bn", "pw_proj.bn")),
}


def torch_mapping(model, variant: str) -> list[tuple[str, str]]:
    """``[(Keras layer name, timm state_dict prefix)]`` of MobileNetV4 ``variant``
    ("small", "medium" or "large"), the head included (a headless model skips it)."""
    pairs = [("conv_stem", "conv_stem"), ("conv_stem_bn", "bn1")]
    for stage, blocks in enumerate(expand_stages(variant)):
        for index, block in enumerate(blocks):
            for keras_part, torch_part in _PARTS[block.kind]:
                if keras_part.startswith("dw_start") and not block.start:
                    continue
                if keras_part.startswith("dw_mid") and not block.kernel:
                    continue
                pairs.append((f"{_prefix(stage, index)}{keras_part}", f"blocks.{stage}.{index}.{torch_part}"))
    return [*pairs, ("conv_head", "conv_head"), ("conv_head_bn", "norm_head"), ("predictions", "classifier")]


def _block(x, block: Block, prefix: str):
    """One block of a variant's table: ``(N, H, W, C)`` -> ``(N, H/stride, W/stride, filters)``."""
    if block.kind == "conv":
        return conv_bn(x, block.filters, block.kernel, stride=block.stride, pad_mode="symmetric",
                       name=f"{prefix}conv", bn=_BN, act="relu", act_name=f"{prefix}relu")
    shortcut = x
    residual = block.stride == 1 and channels(x) == block.filters
    if block.kind == "fused":
        x = conv_bn(x, make_divisible(channels(x) * block.expansion), block.kernel, stride=block.stride,
                    pad_mode="symmetric", name=f"{prefix}expand", bn=_BN, act="relu")
        x = conv_bn(x, block.filters, 1, name=f"{prefix}project", bn=_BN)
    elif block.kind == "uib":
        if block.start:
            x = depthwise_bn(x, block.start, stride=1 if block.kernel else block.stride, name=f"{prefix}dw_start",
                             bn=_BN)
        x = conv_bn(x, make_divisible(channels(x) * block.expansion), 1, name=f"{prefix}expand", bn=_BN,
                    act="relu")
        if block.kernel:
            x = depthwise_bn(x, block.kernel, stride=block.stride, name=f"{prefix}dw_mid", bn=_BN, act="relu")
        x = conv_bn(x, block.filters, 1, name=f"{prefix}project", bn=_BN)
    else:
        raise ValueError(f"unknown block kind {block.kind!r}")
    if residual:  # timm's has_skip: stride 1 and as many output channels as input channels
        x = _backend.keras_module().layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


def _mobilenet_v4(
    variant: str, builder, *, input_shape, alpha, include_top, weights, input_tensor, pooling, classes,
    classifier_activation, dropout_rate, name, include_preprocessing,
):
    """Stem, the variant's stages, then the pool-first head (or the last feature map)."""
    check_alpha(alpha, weights=weights, pretrained=(1.0,))
    if alpha != 1.0:
        raise ValueError(
            f"MobileNetV4 Conv-{variant[0].upper()} has one width (timm's has no width multiplier); "
            f"`alpha` must be 1.0; received alpha={alpha!r}"
        )
    check_rate("dropout_rate", dropout_rate)
    # The head pools before its first conv, so the top takes any input size (keras.applications'
    # MobileNetV3 does the same): the default input shape is (None, None, 3) with or without it.
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, require_flatten=False,
    )
    layers = _backend.keras_module().layers
    x = in_model_preprocessing(image, include_preprocessing, "torch")

    x = conv_bn(x, STEM_CHANNELS[variant], 3, stride=2, pad_mode="symmetric", name="conv_stem", bn=_BN,
                act="relu")
    features.mark(x)
    for stage, blocks in enumerate(expand_stages(variant)):
        for index, block in enumerate(blocks):
            x = _block(x, block, _prefix(stage, index))
            features.mark(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = conv_bn(x, HEAD_CHANNELS, 1, name="conv_head", bn=_BN, act="relu")
        x = layers.Flatten(name="flatten")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    return finish_model(
        inputs, x, name=name or f"mobilenet_v4_conv_{variant}", weights=weights,
        imagenet_file=lambda: variant_of(builder).weight_file(include_top=include_top),
        torch_mapping=lambda model: torch_mapping(model, variant),
    )


_DOCSTRING = """Instantiates MobileNetV4 Conv-{size} (timm's ``mobilenetv4_conv_{variant}``).

    Reference: [MobileNetV4: Universal Models for the Mobile Ecosystem](
    https://arxiv.org/abs/2404.10518); the architecture is timm 1.0.31's
    (``timm/models/mobilenetv3.py``), whose checkpoints port exactly. timm's default
    pretrained weights for it were trained at {size_px}x{size_px}.

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.mobilenet_v4.preprocess_input``, mode "torch"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(None, None, 3)``, with or without the top: the head pools before its
            first conv, so any size works (as keras.applications' MobileNetV3).
        alpha: must be 1.0 (accepted for keras.applications' signature; timm's Conv-S/M/L
            have no width multiplier).
        include_top: whether to include the head (pool, 1x1 conv to 1280, BN, ReLU) and
            the dense classifier. Without it the output is the last feature map
            ``(batch, H/32, W/32, 960)``, before the head's pool.
        weights: ``None``, ``"imagenet"`` (when the registry lists weight files for it),
            the path of a Keras weights file, or of a timm checkpoint
            (``.safetensors`` / ``.pth`` state_dict) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling of the last feature map
            without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``mobilenet_v4_conv_{variant}``).
        include_preprocessing: keyword only, default False (inputs normalised as timm
            expects, by ``preprocess_input``); True puts that normalisation in the model
            (a ``Rescale`` layer named ``rescaling``), which then takes raw ``[0, 255]`` pixels.
        dropout_rate: keyword only, dropout before the classifier, in ``[0, 1)`` (default 0,
            timm's default ``drop_rate``).

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """


def MobileNetV4ConvSmall(
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
    dropout_rate=0.0,
):
    return _mobilenet_v4(
        "small", MobileNetV4ConvSmall, input_shape=input_shape, alpha=alpha, include_top=include_top,
        weights=weights, input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate, name=name,
        include_preprocessing=include_preprocessing,
    )


def MobileNetV4ConvMedium(
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
    dropout_rate=0.0,
):
    return _mobilenet_v4(
        "medium", MobileNetV4ConvMedium, input_shape=input_shape, alpha=alpha, include_top=include_top,
        weights=weights, input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate, name=name,
        include_preprocessing=include_preprocessing,
    )


def MobileNetV4ConvLarge(
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
    dropout_rate=0.0,
):
    return _mobilenet_v4(
        "large", MobileNetV4ConvLarge, input_shape=input_shape, alpha=alpha, include_top=include_top,
        weights=weights, input_tensor=input_tensor, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, dropout_rate=dropout_rate, name=name,
        include_preprocessing=include_preprocessing,
    )


# timm's default pretrained tag of each architecture (the first in its ``default_cfgs``)
# and its training resolution, the registry's input size.
INPUT_SIZES = {"small": 224, "medium": 256, "large": 384}
for _builder, _variant in (
    (MobileNetV4ConvSmall, "small"), (MobileNetV4ConvMedium, "medium"), (MobileNetV4ConvLarge, "large"),
):
    _builder.__doc__ = _DOCSTRING.format(
        size=_variant[0].upper(), variant=_variant, size_px=INPUT_SIZES[_variant])

preprocess_input = imagenet.preprocess_torch
decode_predictions = imagenet.decode_predictions

# ``params`` is Keras' count at the registry's input size with the 1000-class top (BatchNorm moving
# statistics included); the trainable count equals timm's (3,774,024 for Conv-S, the reference
# vectors' README; timm's README rounds all three: 3.77M, 9.72M, 32.59M). ``macs`` is
# ``count_macs`` at that size; timm's model cards round them to 0.2, 1.1 and 6.4 GMACs. The paper
# (arXiv 2404.10518, ImageNet results table) gives 0.2G, 1.0G and 5.9G MACs and 3.8M, 9.2M and 31M
# parameters for its own (TensorFlow) models: timm's Conv-M and Conv-L are 5-8% larger on both.
# Top-1: timm's README (June 12, 2024 table) for the default pretrained tags at their training
# size: e2400_r224_in1k at 224, e500_r256_in1k at 256, e600_r384_in1k at 384.
_FACTS = dict(family="mobilenet_v4", preprocessing="torch", paper=PAPER, layer_groups=LAYER_GROUPS)
for _builder, _variant, _params, _trainable, _macs, _top1, _tag in (
    (MobileNetV4ConvSmall, "small", 3_799_112, 3_774_024, 186_005_568, 73.756, "e2400_r224_in1k"),
    (MobileNetV4ConvMedium, "medium", 9_783_416, 9_715_512, 1_080_244_224, 79.928, "e500_r256_in1k"),
    (MobileNetV4ConvLarge, "large", 32_740_416, 32_590_864, 6_376_220_672, 82.952, "e600_r384_in1k"),
):
    register_model(
        f"mobilenet_v4_conv_{_variant}", _builder, {}, input_size=INPUT_SIZES[_variant], params=_params,
        macs=_macs, top1=_top1, architecture="MobileNetV4Conv",  # one block table per variant, one builder
        weight_files=(WeightFile(f"mobilenetv4_conv_{_variant}.{_tag}.safetensors", INPUT_SIZES[_variant]),),
        notes=f"{_trainable:,} trainable parameters (timm's mobilenetv4_conv_{_variant}); top-1 of timm's "
              f"{_tag} weights",
        **_FACTS,
    )
