"""SqueezeNet 1.0 and 1.1: fire modules (Iandola et al., 2016), as torchvision builds them.

The architecture, padding and pooling are those of torchvision's ``squeezenet1_0`` /
``squeezenet1_1``, so its checkpoints port exactly (``keras_lightnets.weights.torchvision``):
convolutions carry a bias and no BatchNorm; max pooling is 3x3, stride 2 in
PyTorch's ``ceil_mode`` (emulated by one row/column of zeros on the bottom/right
before a ``valid`` pool, exact because every pooled tensor is a ReLU output >= 0);
the classifier is dropout -> 1x1 conv to ``classes`` -> ReLU -> global average pool.
Inputs are ``(batch, height, width, 3)`` RGB normalised with ImageNet mean/std
(``preprocess_input``, mode "torch").
"""

from __future__ import annotations

from keras_lightnets import _backend, imagenet
from keras_lightnets.layout import channel_axis
from keras_lightnets.models import features
from keras_lightnets.models.blocks import global_pool
from keras_lightnets.models.builder import finish_model, in_model_preprocessing, prepare_input
from keras_lightnets.models.registry import WeightFile, register_model, variant_of
from keras_lightnets.validation import check_choice, check_rate

PAPER = "https://arxiv.org/abs/1602.07360"
VERSIONS = ("1.0", "1.1")
# Blocks for unfreezing: each fire module ("fire2" .. "fire9"); conv1 and conv10 are blocks of their own.
LAYER_GROUPS = ((r"(fire\d+)(?:_|$)", r"\1"),)

# torchvision's ``features`` Sequential, one row per module that is not a ReLU:
# ("conv", filters, kernel, stride) is a biased conv followed by a ReLU; ("pool",) a
# 3x3 / stride 2 ceil-mode max pool; ("fire", squeeze, expand) a fire module whose
# 1x1 and 3x3 expand convs each give ``expand`` channels (output 2 * expand).
ARCHITECTURES = {
    "1.0": (
        ("conv", 96, 7, 2), ("pool",),
        ("fire", 16, 64), ("fire", 16, 64), ("fire", 32, 128), ("pool",),
        ("fire", 32, 128), ("fire", 48, 192), ("fire", 48, 192), ("fire", 64, 256), ("pool",),
        ("fire", 64, 256),
    ),
    "1.1": (
        ("conv", 64, 3, 2), ("pool",),
        ("fire", 16, 64), ("fire", 16, 64), ("pool",),
        ("fire", 32, 128), ("fire", 32, 128), ("pool",),
        ("fire", 48, 192), ("fire", 48, 192), ("fire", 64, 256), ("fire", 64, 256),
    ),
}


def _layer_names(version: str) -> list[tuple[str, tuple, int]]:
    """``(Keras name, row, torch index in features)`` per row, named like the paper
    (``conv1``, ``fire2`` .. ``fire9``; a pool is named after the layer before it)."""
    names, torch_index, number = [], 0, 1
    for row in ARCHITECTURES[version]:
        if row[0] == "pool":
            names.append((f"pool{number - 1}", row, torch_index))
            torch_index += 1
        elif row[0] == "conv":
            names.append((f"conv{number}", row, torch_index))
            torch_index += 2  # conv + ReLU
            number += 1
        else:
            names.append((f"fire{number}", row, torch_index))
            torch_index += 1
            number += 1
    return names


def torch_mapping(model, version: str) -> list[tuple[str, str]]:
    """``[(Keras layer name, torchvision state_dict prefix)]`` of a SqueezeNet ``version``."""
    pairs = []
    for name, row, index in _layer_names(version):
        if row[0] == "conv":
            pairs.append((name, f"features.{index}"))
        elif row[0] == "fire":
            pairs += [(f"{name}_{part}", f"features.{index}.{part}") for part in ("squeeze", "expand1x1", "expand3x3")]
    return [*pairs, ("conv10", "classifier.1")]


def _ceil_max_pool(x, name: str):
    """3x3 / stride 2 max pool in PyTorch ``ceil_mode`` on a ReLU output (values >= 0).

    ``ceil((n - 3) / 2) + 1 == floor((n + 1 - 3) / 2) + 1`` for every ``n``, so one
    zero row/column on the bottom/right gives ceil mode's output size; the zeros
    never win a max because the input is >= 0, and a window never lies wholly in them.
    """
    layers = _backend.keras_module().layers
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _fire(x, squeeze: int, expand: int, name: str):
    """Fire module: 1x1 squeeze + ReLU, then concat(1x1 expand + ReLU, 3x3 expand + ReLU)."""
    layers = _backend.keras_module().layers
    x = layers.Conv2D(squeeze, 1, name=f"{name}_squeeze")(x)
    x = layers.ReLU(name=f"{name}_squeeze_relu")(x)
    left = layers.Conv2D(expand, 1, name=f"{name}_expand1x1")(x)
    left = layers.ReLU(name=f"{name}_expand1x1_relu")(left)
    right = layers.Conv2D(expand, 3, padding="same", name=f"{name}_expand3x3")(x)
    right = layers.ReLU(name=f"{name}_expand3x3_relu")(right)
    return layers.Concatenate(axis=channel_axis(), name=f"{name}_concat")([left, right])


def SqueezeNet(
    input_shape=None,
    version="1.1",
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    dropout_rate=0.5,
    name=None,
    *,
    include_preprocessing=False,
):
    """Instantiates SqueezeNet 1.0 or 1.1 (torchvision's ``squeezenet1_0`` / ``squeezenet1_1``).

    Reference: [SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
    <0.5MB model size](https://arxiv.org/abs/1602.07360).

    Inputs are ``(batch, height, width, 3)`` float RGB normalised with ImageNet
    mean/std (``keras_lightnets.squeezenet.preprocess_input``, mode "torch"), or raw
    ``[0, 255]`` pixels with ``include_preprocessing=True``.
    The output stride is 16 (no stride-32 stage). With the top, the output is
    ``(batch, classes)``: global average of ReLU(1x1 conv), then
    ``classifier_activation`` (torchvision's logits are the values before it).

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32. Defaults to
            ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        version: ``"1.0"`` or ``"1.1"`` (1.1: about 2.4x fewer MACs, same accuracy).
        include_top: whether to include the classifier (dropout, 1x1 conv, ReLU, pool).
        weights: ``None``, ``"imagenet"`` (torchvision's ImageNet checkpoint,
            downloaded and converted once), the path of a Keras weights file, or of a
            torchvision checkpoint (``.safetensors`` / ``.pth``) to port.
        input_tensor: optional Keras tensor to build the model on.
        pooling: ``None``, ``"avg"`` or ``"max"`` global pooling without the top.
        classes: number of classes of the top (1000 with ImageNet weights).
        classifier_activation: activation of the top (``None`` for logits).
        dropout_rate: dropout before the classifier conv, in ``[0, 1)``.
        name: model name (default ``squeezenet{version}``, e.g. ``squeezenet1_1``).
        include_preprocessing: keyword only, default False (inputs normalised as torchvision
            expects, by ``preprocess_input``); True puts that normalisation in the model (a
            ``Rescale`` layer named ``rescaling``), which then takes raw ``[0, 255]`` pixels.

    Returns:
        A Keras model (tf_keras inside ``keras_lightnets.legacy``).
    """
    check_choice("version", version, VERSIONS)
    check_rate("dropout_rate", dropout_rate)
    image, inputs, _ = prepare_input(
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    layers = _backend.keras_module().layers
    image = in_model_preprocessing(image, include_preprocessing, "torch")

    x = image
    for layer_name, row, _ in _layer_names(version):
        if row[0] == "conv":
            _, filters, kernel, conv_stride = row
            x = layers.Conv2D(filters, kernel, strides=conv_stride, padding="valid", name=layer_name)(x)
            x = layers.ReLU(name=f"{layer_name}_relu")(x)
        elif row[0] == "pool":
            x = _ceil_max_pool(x, layer_name)
        else:
            x = _fire(x, row[1], row[2], layer_name)
        features.mark(x)
    if include_top:
        x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Conv2D(classes, 1, name="conv10")(x)
        x = layers.ReLU(name="conv10_relu")(x)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    return finish_model(
        inputs, x, name=name or f"squeezenet{version.replace('.', '_')}", weights=weights,
        imagenet_file=lambda: variant_of(SqueezeNet, version=version).weight_file(include_top=include_top),
        torch_mapping=lambda model: torch_mapping(model, version),
    )


preprocess_input = imagenet.preprocess_torch
decode_predictions = imagenet.decode_predictions

# Top-1 at 224x224: torchvision's documented ImageNet-1K acc@1 of these checkpoints (the whole
# network in one file, also used without the top). No BatchNorm, so ``params`` equals torchvision's ``num_params``.
for _version, _file, _params, _macs, _top1 in (
    ("1.0", "squeezenet1_0-b66bff10.pth", 1_248_424, 818_924_576, 58.092),
    ("1.1", "squeezenet1_1-b8a52dc0.pth", 1_235_496, 349_151_936, 58.178),
):
    register_model(
        f"squeezenet{_version.replace('.', '_')}", SqueezeNet, {"version": _version}, family="squeezenet",
        input_size=224, preprocessing="torch", params=_params, macs=_macs, top1=_top1, paper=PAPER,
        weight_files=(WeightFile(_file, 224),), layer_groups=LAYER_GROUPS,
        architecture="SqueezeNet",  # 1.0 and 1.1: the same fire modules, other stem and pool positions
    )
