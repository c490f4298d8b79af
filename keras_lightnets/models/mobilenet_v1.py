"""MobileNet (V1): depthwise-separable convolutions (Howard et al., 2017).

Layer names, padding and weight shapes are those of ``keras.applications.MobileNet``,
so its ImageNet ``.h5`` files load as they are.
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, activation, conv_bn, global_pool
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    prepare_input,
    pretrained_size,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_choice, check_positive_int, check_rate

PAPER = "https://arxiv.org/abs/1704.04861"
PRETRAINED_ALPHAS = (0.25, 0.5, 0.75, 1.0)
PRETRAINED_SIZES = (128, 160, 192, 224)
# Blocks for unfreezing: conv_dw_5 and conv_pw_5 (with their BatchNorms) are block "conv_block_5".
LAYER_GROUPS = ((r"conv_(?:dw|pw)_(\d+)(?:_|$)", r"conv_block_\1"),)

# (pointwise filters at alpha=1, depthwise stride) of the 13 separable blocks.
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
_BN = BatchNorm(epsilon=1e-3, momentum=0.99)


def _separable_block(x, filters: int, stride: int, depth_multiplier: int, block_id: int):
    layers = _backend.keras_module().layers
    if stride == 2:
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
    x = layers.DepthwiseConv2D(
        3, strides=stride, padding="same" if stride == 1 else "valid",
        depth_multiplier=depth_multiplier, use_bias=False, name=f"conv_dw_{block_id}",
    )(x)
    x = _BN(x, f"conv_dw_{block_id}_bn")
    x = activation(x, "relu6", f"conv_dw_{block_id}_relu")
    return conv_bn(x, filters, 1, name=f"conv_pw_{block_id}", bn=_BN, act="relu6",
                   act_name=f"conv_pw_{block_id}_relu")


def MobileNet(
    input_shape=None,
    alpha=1.0,
    depth_multiplier=1,
    dropout=1e-3,
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
    """Instantiates the MobileNet (V1) architecture.

    Reference: [MobileNets: Efficient Convolutional Neural Networks for Mobile
    Vision Applications](https://arxiv.org/abs/1704.04861).

    Same signature, defaults and layer names as ``keras.applications.MobileNet``.
    Inputs are ``(batch, height, width, 3)`` float pixels scaled to ``[-1, 1]``
    (``keras_lightnets.mobilenet.preprocess_input``), or raw ``[0, 255]`` pixels with
    ``include_preprocessing=True``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        alpha: width multiplier; ImageNet weights exist for 0.25, 0.5, 0.75, 1.0.
        depth_multiplier: depthwise channel multiplier (1 for ImageNet weights).
        dropout: dropout rate before the classifier.
        include_top: whether to include the 1x1-conv classifier.
        weights: ``None``, ``"imagenet"`` (128/160/192/224 inputs) or a weights file.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name (default ``mobilenet_{alpha:.2f}_{rows}``).
        include_preprocessing: keyword only, default False as keras.applications (which has
            no such argument and expects ``preprocess_input``); True puts that scaling in
            the model (a ``Rescale`` layer named ``rescaling``), which then takes raw
            ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_alpha(alpha, weights=weights, pretrained=PRETRAINED_ALPHAS)
    check_positive_int("depth_multiplier", depth_multiplier)
    if weights == "imagenet":
        check_choice("depth_multiplier", depth_multiplier, (1,))
    check_rate("dropout", dropout)
    image, inputs, input_shape = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, pretrained_sizes=PRETRAINED_SIZES,
    )
    rows = pretrained_size(input_shape, weights, PRETRAINED_SIZES)
    layers = _backend.keras_module().layers
    image = in_model_preprocessing(image, include_preprocessing, "tf")

    x = conv_bn(image, int(32 * alpha), 3, stride=2, pad_mode="same", name="conv1", bn=_BN,
                act="relu6", act_name="conv1_relu")
    features.mark(x)
    for block_id, (filters, block_stride) in enumerate(BLOCKS, start=1):
        x = _separable_block(x, int(filters * alpha), block_stride, depth_multiplier, block_id)
        features.mark(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="global_average_pooling2d")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(classes, 1, padding="same", name="conv_preds")(x)
        x = layers.Reshape((classes,), name="reshape_2")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    return finish_model(
        inputs, x, name=name or f"mobilenet_{alpha:0.2f}_{rows}", weights=weights,
        imagenet_file=lambda: variant_of(MobileNet, alpha=alpha).weight_file(rows, include_top),
    )


preprocess_input = imagenet.preprocess_tf
decode_predictions = imagenet.decode_predictions


def _weight_files(alpha: float) -> list[WeightFile]:
    """keras.applications' ImageNet files of width ``alpha``: each pretrained size, with and without the top."""
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    return [WeightFile(f"mobilenet_{alpha_text}_{rows}_tf{'' if top else '_no_top'}.h5", rows, top)
            for top in (True, False) for rows in PRETRAINED_SIZES]


# Top-1: the paper's Table 6/7 at 224x224.
for _alpha, _params, _macs, _top1 in (
    (0.25, 475_544, 41_030_272, 50.6),
    (0.5, 1_342_536, 149_497_088, 63.7),
    (0.75, 2_601_976, 325_400_448, 68.4),
    (1.0, 4_253_864, 568_740_352, 70.6),
):
    register_model(
        f"mobilenet_v1_{round(_alpha * 100):03d}", MobileNet, {"alpha": _alpha}, family="mobilenet_v1",
        input_size=224, preprocessing="tf", params=_params, macs=_macs, top1=_top1, paper=PAPER,
        weight_files=_weight_files(_alpha), twin=("MobileNet", {"alpha": _alpha}), layer_groups=LAYER_GROUPS,
        module="keras_lightnets.mobilenet",
    )
