"""GhostNet (Han et al., 2020), version 1, as timm builds it.

Architecture, padding and channel order are those of timm 1.0.31's ``ghostnet_050``,
``ghostnet_100`` and ``ghostnet_130`` (``timm/models/ghostnet.py``,
https://github.com/huggingface/pytorch-image-models), so their ``state_dict`` files
port exactly (``torch_mapping``, ``keras_lightnets.weights.torchvision``).

A *ghost module* makes half of its output channels with a 1x1 conv ("primary") and
the other half from those with a cheap 3x3 depthwise conv, and concatenates
``[primary, cheap]``. A *ghost bottleneck* is ghost module 1 (ReLU) -> for stride 2 a
kxk depthwise conv + BatchNorm -> optional squeeze-excite (ReLU inside, hard-sigmoid
gate ``relu6(x + 3) / 6``) -> ghost module 2 (no activation), plus a shortcut:
identity when the stride is 1 and the channels match, else a kxk depthwise conv +
BatchNorm + 1x1 conv + BatchNorm; no activation after the sum. After the stages a
1x1 conv + BatchNorm + ReLU ("conv_last"); the top is global average pooling, a 1x1
conv *with* bias to 1280 channels ("conv_head", not scaled with the width), ReLU,
flatten, dropout 0.2 and the dense classifier.

Every conv pads ``kernel // 2`` on every side like PyTorch (explicit
``ZeroPadding2D`` + ``valid`` for the stride-2 ones). BatchNorm: epsilon 1e-5,
momentum 0.9 (PyTorch's defaults). Channels are ``make_divisible(c * alpha, 4)``.
Inputs are ``(batch, height, width, 3)`` RGB normalised with ImageNet mean/std
(``preprocess_input``, mode "torch").
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.layout import channel_axis, channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import (
    BatchNorm,
    activation,
    conv_bn,
    depthwise_bn,
    global_pool,
    squeeze_excite,
)
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of

PAPER = "https://arxiv.org/abs/1911.11907"
PRETRAINED_ALPHAS = (1.0,)  # timm publishes a checkpoint for ghostnet_100 only
CHANNEL_DIVISOR = 4  # every scaled channel count is a multiple of 4
STEM_CHANNELS = 16
HEAD_CHANNELS = 1280  # conv_head, not scaled with alpha (as timm and the paper)
DROPOUT_RATE = 0.2  # before the classifier (timm's drop_rate; training only)
# The paper's Table 1 as timm groups it: one tuple per stage (timm's ``blocks.<stage>``), one row
# per ghost bottleneck: (depthwise kernel, expanded channels, output channels, squeeze-excite ratio
# of the expanded channels (0: none), stride), channels at alpha = 1.
STAGES = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)
LAST_CHANNELS = 960  # conv_last (timm's ``blocks.9``): the last row's expanded channels, scaled
_BN = BatchNorm(epsilon=1e-5, momentum=0.9)
# Blocks for unfreezing: each bottleneck ("block3_0", ...); conv_stem, conv_last and conv_head are
# blocks of their own.
LAYER_GROUPS = ((r"(block\d+_\d+)(?:_|$)", r"\1"),)


def scaled(value: float, alpha: float) -> int:
    """timm's ``make_divisible(value * alpha, 4)`` (never more than 10% below ``value * alpha``)."""
    return make_divisible(value * alpha, CHANNEL_DIVISOR)


def _prefix(stage: int, block: int) -> str:
    return f"block{stage}_{block}_"


def _ghost_pairs(keras_prefix: str, torch_prefix: str) -> list[tuple[str, str]]:
    return [(f"{keras_prefix}primary", f"{torch_prefix}.primary_conv.0"),
            (f"{keras_prefix}primary_bn", f"{torch_prefix}.primary_conv.1"),
            (f"{keras_prefix}cheap", f"{torch_prefix}.cheap_operation.0"),
            (f"{keras_prefix}cheap_bn", f"{torch_prefix}.cheap_operation.1")]


def torch_mapping(model) -> list[tuple[str, str]]:
    """``[(Keras layer name, timm state_dict prefix)]`` of a GhostNet of any width.

    A shortcut branch is mapped where the model has one (an identity shortcut has no
    tensors); the top (``conv_head``, ``classifier``) is always listed, so that a
    headless model skips its tensors.
    """
    names = {layer.name for layer in model.layers}
    pairs = [("conv_stem", "conv_stem"), ("conv_stem_bn", "bn1")]
    for stage, rows in enumerate(STAGES):
        for block, (_, _, _, se_ratio, stride) in enumerate(rows):
            p, t = _prefix(stage, block), f"blocks.{stage}.{block}"
            pairs += _ghost_pairs(f"{p}ghost1_", f"{t}.ghost1")
            if stride > 1:
                pairs += [(f"{p}dw", f"{t}.conv_dw"), (f"{p}dw_bn", f"{t}.bn_dw")]
            if se_ratio:
                pairs += [(f"{p}squeeze_excite_conv", f"{t}.se.conv_reduce"),
                          (f"{p}squeeze_excite_conv_1", f"{t}.se.conv_expand")]
            pairs += _ghost_pairs(f"{p}ghost2_", f"{t}.ghost2")
            if f"{p}shortcut_dw" in names:
                pairs += [(f"{p}shortcut_dw", f"{t}.shortcut.0"), (f"{p}shortcut_dw_bn", f"{t}.shortcut.1"),
                          (f"{p}shortcut_pw", f"{t}.shortcut.2"), (f"{p}shortcut_pw_bn", f"{t}.shortcut.3")]
    last = f"blocks.{len(STAGES)}.0"
    return [*pairs, ("conv_last", f"{last}.conv"), ("conv_last_bn", f"{last}.bn1"),
            ("conv_head", "conv_head"), ("predictions", "classifier")]


def _ghost_module(x, out_channels: int, *, relu: bool, prefix: str):
    """``(N, H, W, C)`` -> ``(N, H, W, out_channels)``: 1x1 conv + BN (+ ReLU) to half the
    channels, a 3x3 depthwise conv + BN (+ ReLU) of that, concatenated ``[primary, cheap]``.

    timm makes ``ceil(out / 2)`` primary channels and slices the concatenation to
    ``out_channels``. Every ghost module's output count is a ``make_divisible(..., 4)``
    result, so it is even and the slice keeps everything: no slicing layer is needed,
    and an odd count (which would need one) is refused here.
    """
    if out_channels % 2:
        raise ValueError(f"{prefix}: a ghost module needs an even channel count; received {out_channels}")
    layers = _backend.keras_module().layers
    act = "relu" if relu else None
    primary = conv_bn(x, out_channels // 2, 1, name=f"{prefix}primary", bn=_BN, act=act)
    cheap = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{prefix}cheap")(primary)
    cheap = _BN(cheap, f"{prefix}cheap_bn")
    cheap = activation(cheap, act, f"{prefix}cheap_{act}")
    return layers.Concatenate(axis=channel_axis(), name=f"{prefix}concat")([primary, cheap])


def _ghost_bottleneck(x, *, kernel: int, expanded: int, out_channels: int, se_ratio: float, stride: int,
                      prefix: str):
    """One ghost bottleneck: ``(N, H, W, C)`` -> ``(N, H/stride, W/stride, out_channels)``."""
    layers = _backend.keras_module().layers
    in_channels = channels(x)
    y = _ghost_module(x, expanded, relu=True, prefix=f"{prefix}ghost1_")
    if stride > 1:
        y = depthwise_bn(y, kernel, stride=stride, name=f"{prefix}dw", bn=_BN)
    if se_ratio:
        y = squeeze_excite(y, scaled(expanded, se_ratio), prefix=prefix, act="relu", gate="hard_sigmoid")
    y = _ghost_module(y, out_channels, relu=False, prefix=f"{prefix}ghost2_")
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        shortcut = depthwise_bn(x, kernel, stride=stride, name=f"{prefix}shortcut_dw", bn=_BN)
        shortcut = conv_bn(shortcut, out_channels, 1, name=f"{prefix}shortcut_pw", bn=_BN)
    return layers.Add(name=f"{prefix}add")([y, shortcut])


def GhostNet(
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
    """Instantiates GhostNet (version 1; timm's ``ghostnet_050``, ``ghostnet_100``, ``ghostnet_130``).

    Reference: [GhostNet: More Features from Cheap Operations](https://arxiv.org/abs/1911.11907);
    the layers are those of timm's ``GhostNet`` (see the module docstring).

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.ghostnet.preprocess_input``, mode "torch"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: width multiplier of every layer but the 1280-channel ``conv_head``
            (channels ``make_divisible(c * alpha, 4)``); the paper's 0.5, 1.0 and 1.3 are
            registered, any positive value builds.
        include_top: whether to include the top (pooling, ``conv_head``, classifier).
            Without it the output is ``conv_last``'s ``(batch, H/32, W/32, 960 * alpha)`` map.
        weights: ``None``, ``"imagenet"`` (where the registry lists weight files for the
            variant), the path of a Keras weights file, or of a timm ``state_dict``
            (``.safetensors`` / ``.pth``) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``ghostnet_{100 * alpha:03d}``, e.g. ``ghostnet_100``).
        include_preprocessing: keyword only, default False (inputs normalised as timm
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
    image = in_model_preprocessing(image, include_preprocessing, "torch")

    x = conv_bn(image, scaled(STEM_CHANNELS, alpha), 3, stride=2, pad_mode="symmetric", name="conv_stem",
                bn=_BN, act="relu")
    features.mark(x)
    for stage, rows in enumerate(STAGES):
        for block, (kernel, expanded, out_channels, se_ratio, stride) in enumerate(rows):
            x = _ghost_bottleneck(
                x, kernel=kernel, expanded=scaled(expanded, alpha), out_channels=scaled(out_channels, alpha),
                se_ratio=se_ratio, stride=stride, prefix=_prefix(stage, block),
            )
            features.mark(x)
    x = conv_bn(x, scaled(LAST_CHANNELS, alpha), 1, name="conv_last", bn=_BN, act="relu")
    features.mark(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=True, name="conv_head")(x)
        x = activation(x, "relu", "conv_head_relu")
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(DROPOUT_RATE, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    return finish_model(
        inputs, x, name=name or f"ghostnet_{round(alpha * 100):03d}", weights=weights,
        imagenet_file=lambda: variant_of(GhostNet, alpha=alpha).weight_file(include_top=include_top),
        torch_mapping=torch_mapping,
    )


preprocess_input = imagenet.preprocess_torch
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224: ghostnet_100 is timm's measured acc@1 of its checkpoint (the paper authors' weights,
# timm's results/results-imagenet.csv: 73.982; the paper's Table 7 gives 73.9); timm has no checkpoint
# of 050 and 130, whose figures are the paper's Table 7 (66.2, 75.7). ``params`` is Keras' count
# (BatchNorm moving statistics included); the trainable count equals timm's ``state_dict`` parameters.
for _alpha, _params, _trainable, _macs, _top1 in (
    (0.5, 2_598_276, 2_587_292, 42_328_152, 66.2),
    (1.0, 5_204_476, 5_182_508, 141_150_512, 73.982),
    (1.3, 7_387_356, 7_358_820, 227_003_256, 75.7),
):
    register_model(
        f"ghostnet_{round(_alpha * 100):03d}", GhostNet, {"alpha": _alpha}, family="ghostnet", input_size=224,
        preprocessing="torch", params=_params, macs=_macs, top1=_top1, paper=PAPER, layer_groups=LAYER_GROUPS,
        weight_files=(WeightFile("ghostnet_100.in1k.safetensors", 224),) if _alpha == 1.0 else (),
        notes=f"{_trainable:,} trainable parameters (timm's)" + ("" if _alpha == 1.0 else "; timm has no checkpoint"),
    )
