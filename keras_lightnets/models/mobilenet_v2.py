"""MobileNetV2: inverted residuals and linear bottlenecks (Sandler et al., 2018).

Layer names, padding and weight shapes are those of ``keras.applications.MobileNetV2``,
so its ImageNet ``.h5`` files load as they are.
"""

from __future__ import annotations

from keras_lightnets import imagenet
from keras_lightnets.layout import channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import (
    BatchNorm,
    InvertedResidualNames,
    classifier_or_pooling,
    conv_bn,
    inverted_residual,
)
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
    pretrained_size,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of

PAPER = "https://arxiv.org/abs/1801.04381"
PRETRAINED_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
PRETRAINED_SIZES = (96, 128, 160, 192, 224)
# Blocks for unfreezing: "expanded_conv" (block 0) and "block_1" .. "block_16", each with its BatchNorms.
LAYER_GROUPS = ((r"(block_\d+)(?:_|$)", r"\1"), (r"(expanded_conv(?:_\d+)?)(?:_|$)", r"\1"))

# (expansion, output filters at alpha=1, stride) of blocks 0..16 (paper Table 2).
BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
_BN = BatchNorm(epsilon=1e-3, momentum=0.999)
_NAMES = InvertedResidualNames(bn="_BN", pad="pad", act="relu")


def MobileNetV2(
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
    """Instantiates the MobileNetV2 architecture.

    Reference: [MobileNetV2: Inverted Residuals and Linear Bottlenecks](
    https://arxiv.org/abs/1801.04381).

    Same signature, defaults and layer names as ``keras.applications.MobileNetV2``.
    Inputs are ``(batch, height, width, 3)`` float pixels scaled to ``[-1, 1]``
    (``keras_lightnets.mobilenet_v2.preprocess_input``), or raw ``[0, 255]`` pixels with
    ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: width multiplier; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0,
            1.3 and 1.4.
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (96/128/160/192/224 inputs) or a weights file.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``mobilenetv2_{alpha:.2f}_{rows}``).
        include_preprocessing: keyword only, default False as keras.applications (which has
            no such argument and expects ``preprocess_input``); True puts that scaling in
            the model (a ``Rescale`` layer named ``rescaling``), which then takes raw
            ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_alpha(alpha, weights=weights, pretrained=PRETRAINED_ALPHAS)
    image, inputs, input_shape = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, pretrained_sizes=PRETRAINED_SIZES,
    )
    rows = pretrained_size(input_shape, weights, PRETRAINED_SIZES)
    image = in_model_preprocessing(image, include_preprocessing, "tf")

    x = conv_bn(image, make_divisible(32 * alpha, 8), 3, stride=2, pad_mode="same", name="Conv1",
                bn=_BN, bn_name="bn_Conv1", act="relu6", act_name="Conv1_relu")
    features.mark(x)
    for block_id, (expansion, filters, block_stride) in enumerate(BLOCKS):
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        x = inverted_residual(
            x, expanded=expansion * channels(x), filters=make_divisible(int(filters * alpha), 8),
            kernel_size=3, stride=block_stride, prefix=prefix, bn=_BN, act="relu6", names=_NAMES,
        )
        features.mark(x)
    last_filters = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = conv_bn(x, last_filters, 1, name="Conv_1", bn=_BN, act="relu6", act_name="out_relu")
    features.mark(x)
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )
    return finish_model(
        inputs, x, name=name or f"mobilenetv2_{alpha:0.2f}_{rows}", weights=weights,
        imagenet_file=lambda: variant_of(MobileNetV2, alpha=alpha).weight_file(rows, include_top),
    )


preprocess_input = imagenet.preprocess_tf
decode_predictions = imagenet.decode_predictions


def _weight_files(alpha: float) -> list[WeightFile]:
    """keras.applications' ImageNet files of width ``alpha``: each pretrained size, with and without the top."""
    return [
        WeightFile(f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}"
                   f"{'' if top else '_no_top'}.h5", rows, top)
        for top in (True, False) for rows in PRETRAINED_SIZES
    ]


# Top-1 at 224x224: the TF-Slim MobileNetV2 model zoo (the checkpoints keras.applications converted).
for _alpha, _params, _macs, _top1 in (
    (0.35, 1_691_208, 59_285_808, 60.3),
    (0.5, 1_987_224, 97_131_840, 65.4),
    (0.75, 2_663_064, 209_069_792, 69.8),
    (1.0, 3_538_984, 300_774_272, 71.8),
    (1.3, 5_431_048, 509_374_560, 74.4),
    (1.4, 6_156_712, 582_195_824, 75.0),
):
    register_model(
        f"mobilenet_v2_{round(_alpha * 100):03d}", MobileNetV2, {"alpha": _alpha}, family="mobilenet_v2",
        input_size=224, preprocessing="tf", params=_params, macs=_macs, top1=_top1, paper=PAPER,
        weight_files=_weight_files(_alpha), twin=("MobileNetV2", {"alpha": _alpha}), layer_groups=LAYER_GROUPS,
    )
