"""MobileNetV3 Small and Large, with the minimalistic variants (Howard et al., 2019).

Layer names, padding and weight shapes are those of keras.applications'
``MobileNetV3Small`` / ``MobileNetV3Large``, so its ImageNet ``.h5`` files load as
they are. Unlike keras.applications, hard-sigmoid/hard-swish and the input
rescaling are layers (``keras_lightnets.layers``), not tensor arithmetic, so the
models quantize with TFMOT and load under ``safe_mode``.
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.layout import channels
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, activation, conv_bn, global_pool, inverted_residual
from keras_lightnets.models.builder import (
    check_alpha,
    finish_model,
    in_model_preprocessing,
    make_divisible,
    prepare_input,
    pretrained_size,
)
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_bool, check_rate

PAPER = "https://arxiv.org/abs/1905.02244"
PRETRAINED_ALPHAS = (0.75, 1.0)
PRETRAINED_ALPHAS_MINIMALISTIC = (1.0,)

# One row per bottleneck: (expansion, filters at alpha=1, kernel, stride, squeeze-excite,
# activation). kernel "k" is 5 (3 when minimalistic); activation "act" is hard-swish
# (relu when minimalistic); squeeze-excite is dropped when minimalistic.
SMALL = (
    (1, 16, 3, 2, True, "relu"),
    (72 / 16, 24, 3, 2, False, "relu"),
    (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, "k", 2, True, "act"),
    (6, 40, "k", 1, True, "act"),
    (6, 40, "k", 1, True, "act"),
    (3, 48, "k", 1, True, "act"),
    (3, 48, "k", 1, True, "act"),
    (6, 96, "k", 2, True, "act"),
    (6, 96, "k", 1, True, "act"),
    (6, 96, "k", 1, True, "act"),
)
LARGE = (
    (1, 16, 3, 1, False, "relu"),
    (4, 24, 3, 2, False, "relu"),
    (3, 24, 3, 1, False, "relu"),
    (3, 40, "k", 2, True, "relu"),
    (3, 40, "k", 1, True, "relu"),
    (3, 40, "k", 1, True, "relu"),
    (6, 80, 3, 2, False, "act"),
    (2.5, 80, 3, 1, False, "act"),
    (2.3, 80, 3, 1, False, "act"),
    (2.3, 80, 3, 1, False, "act"),
    (6, 112, 3, 1, True, "act"),
    (6, 112, 3, 1, True, "act"),
    (6, 160, "k", 2, True, "act"),
    (6, 160, "k", 1, True, "act"),
    (6, 160, "k", 1, True, "act"),
)
LAST_POINT_CHANNELS = {"small": 1024, "large": 1280}
SE_RATIO = 0.25
_BN = BatchNorm(epsilon=1e-3, momentum=0.999)
# Blocks for unfreezing: "expanded_conv" (block 0), "expanded_conv_1", ..., each with its BatchNorms and SE.
LAYER_GROUPS = ((r"(expanded_conv(?:_\d+)?)(?:_|$)", r"\1"),)


def _mobilenet_v3(
    builder, model_type, input_shape, alpha, minimalistic, include_top, weights, input_tensor,
    classes, pooling, dropout_rate, classifier_activation, include_preprocessing, name,
):
    pretrained = PRETRAINED_ALPHAS_MINIMALISTIC if minimalistic else PRETRAINED_ALPHAS
    check_alpha(alpha, weights=weights, pretrained=pretrained)
    check_bool("minimalistic", minimalistic)
    check_rate("dropout_rate", dropout_rate)
    image, inputs, input_shape = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, require_flatten=False,
    )
    pretrained_size(input_shape, weights, (224,))
    layers = _backend.keras_module().layers
    kernel, act, se_ratio = (3, "relu", None) if minimalistic else (5, "hard_swish", SE_RATIO)

    x = in_model_preprocessing(image, include_preprocessing, "tf")
    x = conv_bn(x, 16, 3, stride=2, pad_mode="same", name="conv", bn=_BN, act=act, act_name="conv_act")
    features.mark(x)
    for block_id, (expansion, filters, k, block_stride, se, block_act) in enumerate(
        SMALL if model_type == "small" else LARGE
    ):
        in_channels = channels(x)
        expanded = make_divisible(in_channels * expansion) if block_id else in_channels
        x = inverted_residual(
            x, expanded=expanded, filters=make_divisible(filters * alpha),
            kernel_size=kernel if k == "k" else k, stride=block_stride,
            prefix=f"expanded_conv_{block_id}_" if block_id else "expanded_conv_",
            bn=_BN, act=act if block_act == "act" else block_act,
            se_filters=make_divisible(expanded * se_ratio) if se and se_ratio else None,
        )
        features.mark(x)
    x = conv_bn(x, make_divisible(channels(x) * 6), 1, name="conv_1", bn=_BN, act=act, act_name="conv_1_act")
    features.mark(x)
    if include_top:
        last_point = LAST_POINT_CHANNELS[model_type]
        if alpha > 1.0:
            last_point = make_divisible(last_point * alpha)
        x = layers.GlobalAveragePooling2D(keepdims=True, name="global_average_pooling2d")(x)
        x = layers.Conv2D(last_point, 1, padding="same", use_bias=True, name="conv_2")(x)
        x = activation(x, act, "conv_2_act")
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Conv2D(classes, 1, padding="same", name="logits")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    return finish_model(
        inputs, x, name=name, weights=weights,
        imagenet_file=lambda: variant_of(builder, alpha=alpha, minimalistic=minimalistic).weight_file(
            224, include_top),
    )


def MobileNetV3Small(
    input_shape=None,
    alpha=1.0,
    minimalistic=False,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    classes=1000,
    pooling=None,
    dropout_rate=0.2,
    classifier_activation="softmax",
    include_preprocessing=True,
    name="MobileNetV3Small",
):
    return _mobilenet_v3(
        MobileNetV3Small, "small", input_shape, alpha, minimalistic, include_top, weights, input_tensor, classes,
        pooling, dropout_rate, classifier_activation, include_preprocessing, name,
    )


def MobileNetV3Large(
    input_shape=None,
    alpha=1.0,
    minimalistic=False,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    classes=1000,
    pooling=None,
    dropout_rate=0.2,
    classifier_activation="softmax",
    include_preprocessing=True,
    name="MobileNetV3Large",
):
    return _mobilenet_v3(
        MobileNetV3Large, "large", input_shape, alpha, minimalistic, include_top, weights, input_tensor, classes,
        pooling, dropout_rate, classifier_activation, include_preprocessing, name,
    )


_DOCSTRING = """Instantiates the {name} architecture.

    Reference: [Searching for MobileNetV3](https://arxiv.org/abs/1905.02244).

    Same signature, defaults and layer names as ``keras.applications.{name}``.
    With ``include_preprocessing=True`` (default) inputs are ``(batch, height, width, 3)``
    float pixels in ``[0, 255]`` (a ``Rescale`` layer maps them to ``[-1, 1]``);
    otherwise already scaled to ``[-1, 1]`` (``keras_lightnets.imagenet.preprocess_tf``).
    ``keras_lightnets.mobilenet_v3.preprocess_input`` is a pass-through, as keras.applications'.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(None, None, 3)`` (``(224, 224, 3)`` with the top).
        alpha: width multiplier; ImageNet weights exist for 0.75 and 1.0
            (1.0 only when minimalistic).
        minimalistic: no squeeze-excite, no hard-swish, 3x3 kernels only.
        include_top: whether to include the classifier.
        weights: ``None``, ``"imagenet"`` (224x224 weights) or a weights file.
        input_tensor: optional Keras tensor to build the model on.
        classes: number of classes of the top (1000 with ImageNet weights).
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        dropout_rate: dropout before the last (logits) layer.
        classifier_activation: activation of the top (``None`` for logits).
        include_preprocessing: default True as keras.applications: the model rescales
            ``[0, 255]`` input itself (a ``Rescale`` layer named ``rescaling``).
        name: model name.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
MobileNetV3Small.__doc__ = _DOCSTRING.format(name="MobileNetV3Small")
MobileNetV3Large.__doc__ = _DOCSTRING.format(name="MobileNetV3Large")

preprocess_input = imagenet.preprocess_none
decode_predictions = imagenet.decode_predictions


def _weight_files(model_type: str, alpha: float, minimalistic: bool) -> list[WeightFile]:
    """keras.applications' ImageNet files of a variant (224x224), with and without the top."""
    key = f"{model_type}{'_minimalistic' if minimalistic else ''}_224_{alpha}_float"
    return [WeightFile(f"weights_mobilenet_v3_{key}{'' if top else '_no_top_v2'}.h5", 224, top)
            for top in (True, False)]


# Top-1 at 224x224: the paper's Table 3 (1.0 and 0.75) and the TF-Slim model zoo (minimalistic).
_MINIMAL = {"alpha": 1.0, "minimalistic": True}
for _name, _builder, _kwargs, _params, _macs, _top1 in (
    ("mobilenet_v3_small_075", MobileNetV3Small, {"alpha": 0.75}, 2_051_552, 43_399_344, 65.4),
    ("mobilenet_v3_small_100", MobileNetV3Small, {"alpha": 1.0}, 2_554_968, 56_510_400, 67.4),
    ("mobilenet_v3_small_minimal_100", MobileNetV3Small, _MINIMAL, 2_056_848, 52_288_448, 61.9),
    ("mobilenet_v3_large_075", MobileNetV3Large, {"alpha": 0.75}, 4_012_616, 154_560_624, 73.3),
    ("mobilenet_v3_large_100", MobileNetV3Large, {"alpha": 1.0}, 5_507_432, 216_589_760, 75.2),
    ("mobilenet_v3_large_minimal_100", MobileNetV3Large, _MINIMAL, 3_948_688, 209_136_704, 72.3),
):
    _model_type = _builder.__name__.removeprefix("MobileNetV3").lower()
    register_model(
        _name, _builder, _kwargs, family="mobilenet_v3", input_size=224, preprocessing="in_model",
        params=_params, macs=_macs, top1=_top1, paper=PAPER,
        weight_files=_weight_files(_model_type, _kwargs["alpha"], _kwargs.get("minimalistic", False)),
        twin=(_builder.__name__, _kwargs), layer_groups=LAYER_GROUPS,
        # Small and Large are two block tables of one code path; minimalistic changes the layers.
        architecture=f"MobileNetV3(minimalistic={_kwargs.get('minimalistic', False)})",
    )
