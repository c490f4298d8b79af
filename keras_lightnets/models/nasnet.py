"""NASNet-A Mobile: cells found by neural architecture search (Zoph et al., 2018).

Layer names, padding and weight shapes are those of ``keras.applications.NASNetMobile``,
so its ImageNet ``.h5`` files load as they are. The layers keras.applications leaves
unnamed (ReLUs, the adjust block's pad/crop/concatenate, one add of the reduction
cell, the final ReLU) get deterministic names built from the cell's ``block_id``.

Structure: a 3x3 stride-2 ``valid`` stem conv, two reduction cells (``stem_1``,
``stem_2``), then three stages of ``num_blocks`` normal cells separated by
reduction cells, a final ReLU and the classifier. Every cell takes the outputs of
the two previous cells (``ip``, the last; ``p``, the one before); ``p`` is adjusted
to the size and width of ``ip`` first (the "adjust" block: a factorized stride-2
reduction when the spatial sizes differ, a 1x1 projection when only the channels do).
"""

from __future__ import annotations

from collections.abc import Callable

from keras_lightnets import _backend, imagenet
from keras_lightnets.layout import channel_axis, channels, image_shape
from keras_lightnets.models import features
from keras_lightnets.models.blocks import BatchNorm, activation, classifier_or_pooling, pad_for_stride
from keras_lightnets.models.builder import finish_model, in_model_preprocessing, prepare_input, pretrained_size
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_positive_int

PAPER = "https://arxiv.org/abs/1707.07012"

# NASNet-A Mobile (4 @ 1056): keras.applications' NASNetMobile arguments.
MOBILE = dict(penultimate_filters=1056, num_blocks=4, stem_block_filters=32, skip_reduction=False,
              filter_multiplier=2)
_BN = BatchNorm(epsilon=1e-3, momentum=0.9997)
_INIT = "he_normal"
# Blocks for unfreezing: each cell ("cell_3", "cell_reduce_4", "cell_stem_1": its adjust block, 1x1 conv,
# separable blocks and BatchNorms) and the stem conv with its BatchNorm ("stem").
LAYER_GROUPS = (
    (r"(?:normal|reduction|adjust|separable)\w*?_((?:stem_|reduce_)?\d+)$", r"cell_\1"),
    (r"(stem)(?:_|$)", r"\1"),
)


def _conv1x1(x, filters: int, name: str):
    layers = _backend.keras_module().layers
    return layers.Conv2D(
        filters, 1, padding="same", use_bias=False, kernel_initializer=_INIT, name=name
    )(x)


def _separable_block(x, filters: int, kernel_size: int, block_id: str, stride: int = 1):
    """Twice [ReLU -> separable conv -> BatchNorm]; only the first conv is strided."""
    layers = _backend.keras_module().layers
    x = activation(x, "relu", f"separable_conv_1_relu_{block_id}")
    x, padding = pad_for_stride(x, kernel_size, stride, "tf", f"separable_conv_1_pad_{block_id}")
    x = layers.SeparableConv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=False,
        name=f"separable_conv_1_{block_id}",
    )(x)
    x = _BN(x, f"separable_conv_1_bn_{block_id}")
    x = activation(x, "relu", f"separable_conv_2_relu_{block_id}")
    x = layers.SeparableConv2D(
        filters, kernel_size, padding="same", use_bias=False, name=f"separable_conv_2_{block_id}"
    )(x)
    return _BN(x, f"separable_conv_2_bn_{block_id}")


def _adjust(p, ip, filters: int, block_id: str):
    """Match ``p`` to ``ip``: halve its size (factorized reduction) or project its channels.

    ``p`` and ``ip`` are ``(tensor, stride)`` pairs. keras.applications compares their
    widths; those differ exactly when the strides do (for any input of 32 pixels or
    more). Returns the adjusted tensor.
    """
    if p is None:
        return ip[0]
    layers = _backend.keras_module().layers
    (p, p_stride), (_, ip_stride) = p, ip
    if p_stride != ip_stride:
        p = activation(p, "relu", f"adjust_relu_1_{block_id}")
        p1 = layers.AveragePooling2D(1, strides=2, padding="valid", name=f"adjust_avg_pool_1_{block_id}")(p)
        p1 = _conv1x1(p1, filters // 2, f"adjust_conv_1_{block_id}")
        # Second path: shift by one pixel (pad bottom/right, crop top/left), then subsample.
        p2 = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"adjust_pad_2_{block_id}")(p)
        p2 = layers.Cropping2D(((1, 0), (1, 0)), name=f"adjust_crop_2_{block_id}")(p2)
        p2 = layers.AveragePooling2D(1, strides=2, padding="valid", name=f"adjust_avg_pool_2_{block_id}")(p2)
        p2 = _conv1x1(p2, filters // 2, f"adjust_conv_2_{block_id}")
        p = layers.Concatenate(axis=channel_axis(), name=f"adjust_concat_{block_id}")([p1, p2])
        return _BN(p, f"adjust_bn_{block_id}")
    if channels(p) != filters:
        p = activation(p, "relu", f"adjust_relu_projection_{block_id}")
        p = _conv1x1(p, filters, f"adjust_conv_projection_{block_id}")
        return _BN(p, f"adjust_bn_{block_id}")
    return p


def _normal_cell(ip, p, filters: int, block_id: str):
    """NASNet-A normal cell (paper Fig. 4, left); same size, ``6 * filters`` channels out.

    ``ip`` and ``p`` are ``(tensor, stride)`` pairs (``p`` may be ``None``); returns the
    new ``(ip, p)`` pairs: the cell's output and its input ``ip``.
    """
    layers = _backend.keras_module().layers
    p_adj = _adjust(p, ip, filters, block_id)
    h = activation(ip[0], "relu", f"normal_relu_1_{block_id}")
    h = _conv1x1(h, filters, f"normal_conv_1_{block_id}")
    h = _BN(h, f"normal_bn_1_{block_id}")

    def avg_pool(x, name):
        return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)

    def add(tensors, name):
        return layers.Add(name=name)(tensors)

    x1 = add([_separable_block(h, filters, 5, f"normal_left1_{block_id}"),
              _separable_block(p_adj, filters, 3, f"normal_right1_{block_id}")], f"normal_add_1_{block_id}")
    x2 = add([_separable_block(p_adj, filters, 5, f"normal_left2_{block_id}"),
              _separable_block(p_adj, filters, 3, f"normal_right2_{block_id}")], f"normal_add_2_{block_id}")
    x3 = add([avg_pool(h, f"normal_left3_{block_id}"), p_adj], f"normal_add_3_{block_id}")
    x4 = add([avg_pool(p_adj, f"normal_left4_{block_id}"), avg_pool(p_adj, f"normal_right4_{block_id}")],
             f"normal_add_4_{block_id}")
    x5 = add([_separable_block(h, filters, 3, f"normal_left5_{block_id}"), h], f"normal_add_5_{block_id}")
    x = layers.Concatenate(axis=channel_axis(), name=f"normal_concat_{block_id}")([p_adj, x1, x2, x3, x4, x5])
    return (x, ip[1]), ip


def _reduction_cell(ip, p, filters: int, block_id: str):
    """NASNet-A reduction cell (paper Fig. 4, right); half the size, ``4 * filters`` channels.

    Same pairs in and out as ``_normal_cell``. Strided ops pad like TensorFlow ``same``
    (explicit ``ZeroPadding2D`` + ``valid``), as keras.applications does.
    """
    layers = _backend.keras_module().layers
    p_adj = _adjust(p, ip, filters, block_id)
    h = activation(ip[0], "relu", f"reduction_relu_1_{block_id}")
    h = _conv1x1(h, filters, f"reduction_conv_1_{block_id}")
    h = _BN(h, f"reduction_bn_1_{block_id}")
    h3, _ = pad_for_stride(h, 3, 2, "tf", f"reduction_pad_1_{block_id}")

    def pool(kind, x, name):
        cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
        return cls(3, strides=2, padding="valid", name=name)(x)

    def sep(x, kernel_size, side):
        return _separable_block(x, filters, kernel_size, f"reduction_{side}_{block_id}", stride=2)

    def add(tensors, name):
        return layers.Add(name=name)(tensors)

    x1 = add([sep(h, 5, "left1"), sep(p_adj, 7, "right1")], f"reduction_add_1_{block_id}")
    x2 = add([pool("max", h3, f"reduction_left2_{block_id}"), sep(p_adj, 7, "right2")],
             f"reduction_add_2_{block_id}")
    x3 = add([pool("avg", h3, f"reduction_left3_{block_id}"), sep(p_adj, 5, "right3")],
             f"reduction_add3_{block_id}")
    x4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"reduction_left4_{block_id}")(x1)
    x4 = add([x2, x4], f"reduction_add_4_{block_id}")  # unnamed in keras.applications
    # keras.applications names this separable block "left4" too (after the pool above).
    x5_1 = _separable_block(x1, filters, 3, f"reduction_left4_{block_id}")
    x5 = add([x5_1, pool("max", h3, f"reduction_right5_{block_id}")], f"reduction_add4_{block_id}")
    x = layers.Concatenate(axis=channel_axis(), name=f"reduction_concat_{block_id}")([x2, x3, x4, x5])
    return (x, ip[1] * 2), ip


def _nasnet(
    input_shape, *, penultimate_filters: int, num_blocks: int, stem_block_filters: int,
    skip_reduction: bool, filter_multiplier: int, include_top, weights, input_tensor, pooling,
    classes, default_size: int, classifier_activation, name: str,
    imagenet_file: Callable[[], str] | None, include_preprocessing: bool = False,
):
    """A NASNet-A ``num_blocks @ penultimate_filters`` (keras.applications' ``NASNet``)."""
    for argument, value in (("penultimate_filters", penultimate_filters), ("num_blocks", num_blocks),
                            ("stem_block_filters", stem_block_filters),
                            ("filter_multiplier", filter_multiplier)):
        check_positive_int(argument, value)
    if penultimate_filters % (24 * filter_multiplier**2):
        raise ValueError(
            "For NASNet-A models, `penultimate_filters` must be a multiple of "
            f"24 * filter_multiplier ** 2 = {24 * filter_multiplier**2}; "
            f"received penultimate_filters={penultimate_filters}"
        )
    image, inputs, input_shape = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation, default_size=default_size,
    )
    if None in input_shape:
        # keras.applications refuses this only with ImageNet weights, and otherwise builds a
        # model that fails when called: the padding before each strided op depends on
        # whether the feature map's size is odd.
        raise ValueError(
            "NASNet needs a static `input_shape` (no None entries): the padding before its "
            f"strided ops depends on the feature map sizes; received input_shape={input_shape}"
        )
    pretrained_size(input_shape, weights, (default_size,), default=default_size)
    layers = _backend.keras_module().layers
    filters = penultimate_filters // 24
    image = in_model_preprocessing(image, include_preprocessing, "tf")

    x = layers.Conv2D(
        stem_block_filters, 3, strides=2, padding="valid", use_bias=False,
        kernel_initializer=_INIT, name="stem_conv1",
    )(image)
    x = features.mark(_BN(x, "stem_bn1"))
    ip, p = (x, 2), None
    ip, p = _reduction_cell(ip, p, filters // filter_multiplier**2, "stem_1")
    features.mark(ip[0])
    ip, p = _reduction_cell(ip, p, filters // filter_multiplier, "stem_2")
    features.mark(ip[0])
    for stage in range(3):
        stage_filters = filters * filter_multiplier**stage
        if stage:
            ip, p_reduced = _reduction_cell(ip, p, stage_filters, f"reduce_{stage * num_blocks}")
            features.mark(ip[0])
            p = p if skip_reduction else p_reduced
        first = stage * num_blocks + (1 if stage else 0)
        for i in range(num_blocks):
            ip, p = _normal_cell(ip, p, stage_filters, f"{first + i}")
            features.mark(ip[0])

    x = features.mark(activation(ip[0], "relu", "final_relu"))
    x = classifier_or_pooling(
        x, include_top=include_top, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
    )
    return finish_model(inputs, x, name=name, weights=weights, imagenet_file=imagenet_file)


def NASNetMobile(
    input_shape=None,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="nasnet_mobile",
    *,
    include_preprocessing=False,
):
    """Instantiates the NASNet-A Mobile (4 @ 1056) architecture.

    Reference: [Learning Transferable Architectures for Scalable Image Recognition](
    https://arxiv.org/abs/1707.07012) (CVPR 2018).

    Same signature, defaults and layer names as ``keras.applications.NASNetMobile``.
    Inputs are ``(batch, height, width, 3)`` float pixels scaled to ``[-1, 1]``
    (``keras_lightnets.nasnet.preprocess_input``), or raw ``[0, 255]`` pixels with
    ``include_preprocessing=True``. The feature map before the
    top is ``(batch, ceil(height / 32), ceil(width / 32), 1056)`` (7x7 at 224x224).

    Args:
        input_shape: ``(height, width, channels)``; static, at least 32x32.
            Defaults to ``(224, 224, 3)``, with or without the top.
        include_top: whether to include the dense classifier.
        weights: ``None``, ``"imagenet"`` (trained at 224x224; exactly
            ``(224, 224, 3)`` with the top) or a weights file.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        name: model name.
        include_preprocessing: keyword only, default False as keras.applications (which has
            no such argument and expects ``preprocess_input``); True puts that scaling in
            the model (a ``Rescale`` layer named ``rescaling``), which then takes raw
            ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    if not include_top and input_shape is None and input_tensor is None:
        input_shape = image_shape(224, 224)
    return _nasnet(
        input_shape, **MOBILE, include_top=include_top, weights=weights, input_tensor=input_tensor,
        pooling=pooling, classes=classes, default_size=224,
        classifier_activation=classifier_activation, name=name,
        imagenet_file=lambda: variant_of(NASNetMobile).weight_file(224, include_top),
        include_preprocessing=include_preprocessing,
    )


preprocess_input = imagenet.preprocess_tf
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224: the paper's Table 2 (NASNet-A 4 @ 1056).
register_model(
    "nasnet_mobile", NASNetMobile, {}, family="nasnet", input_size=224, preprocessing="tf",
    params=5_326_716, macs=563_638_816, top1=74.0, paper=PAPER,
    weight_files=(WeightFile("nasnet_mobile.h5", 224, True), WeightFile("nasnet_mobile_no_top.h5", 224, False)),
    twin=("NASNetMobile", {}), layer_groups=LAYER_GROUPS,
)
