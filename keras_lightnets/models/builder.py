"""Builder plumbing every family shares: channel rounding, TF-style padding, the
keras.applications argument checks, the input, in-model preprocessing, the model and its weights.

Shapes are in the active ``image_data_format()`` order (see ``keras_lightnets.layout``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence

from keras_lightnets import _backend, imagenet
from keras_lightnets.errors import InputError
from keras_lightnets.layers import get_layer_class
from keras_lightnets.layout import _shape_words, channel_axis, channels, hwc, image_data_format, image_shape
from keras_lightnets.validation import check_bool, check_choice
from keras_lightnets.weights import apply_weights

WEIGHT_FILE_SUFFIXES = (".h5", ".hdf5", ".keras", ".safetensors", ".pth", ".pt")
POOLING_CHOICES = (None, "avg", "max")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more than 10%.

    The rule of the TensorFlow MobileNet reference code (called ``_depth`` /
    ``_make_divisible`` in keras.applications).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def correct_pad(size: Sequence[int | None], kernel_size: int | tuple[int, int]):
    """``ZeroPadding2D`` padding that makes a stride-2 ``valid`` conv match TF ``same``.

    ``size`` is the input's ``(height, width)`` (``None`` when unknown);
    returns ``((top, bottom), (left, right))`` in pixels.
    """
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    # An unknown side is treated as even (keras.applications does the same for both).
    adjust = tuple(1 if side is None else 1 - side % 2 for side in size[:2])
    half = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((half[0] - adjust[0], half[0]), (half[1] - adjust[1], half[1]))


def check_weights(weights, allowed_strings: Sequence[str] = ("imagenet",)) -> None:
    """``weights`` must be ``None``, one of ``allowed_strings`` or an existing file path.

    A string that looks like a file name (known suffix or a path separator) but
    does not exist raises ``FileNotFoundError``; any other value ``ValueError``.
    """
    if weights is None or weights in allowed_strings:
        return
    allowed = ", ".join(["None", *(repr(s) for s in allowed_strings), "or the path to a weights file"])
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(f"`weights` must be {allowed}; received weights={weights!r}")
    if os.path.isfile(weights):
        return
    if weights.lower().endswith(WEIGHT_FILE_SUFFIXES) or os.sep in weights or "/" in weights:
        raise FileNotFoundError(f"`weights` file not found: {weights!r} (allowed: {allowed})")
    raise ValueError(f"`weights` must be {allowed}; received weights={weights!r}")


def check_common(
    *, weights, include_top: bool, classes, pooling, classifier_activation,
    pretrained_classes: int = 1000,
) -> None:
    """The argument checks every builder shares (keras.applications semantics)."""
    image_data_format()
    check_weights(weights)
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received include_top={include_top!r}")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"`classes` must be a positive int; received classes={classes!r}")
    if weights == "imagenet" and include_top and classes != pretrained_classes:
        raise ValueError(
            f"With weights='imagenet' and include_top=True, `classes` must be {pretrained_classes}; "
            f"received classes={classes}. Use include_top=False and add your own classifier."
        )
    check_choice("pooling", pooling, POOLING_CHOICES)
    if include_top:
        check_classifier_activation(classifier_activation, pretrained=weights is not None)


def check_classifier_activation(classifier_activation, *, pretrained: bool) -> None:
    """A Keras activation (name or callable); with pretrained weights only ``None`` or
    ``"softmax"``, which keep the top's meaning."""
    keras = _backend.keras_module()
    try:
        fn = keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"`classifier_activation` must be None, 'softmax' or a Keras activation; "
            f"received classifier_activation={classifier_activation!r}"
        ) from err
    if pretrained and fn not in (keras.activations.get("softmax"), keras.activations.get(None)):
        raise ValueError(
            "With pretrained weights and include_top=True, `classifier_activation` must be "
            f"None or 'softmax'; received classifier_activation={classifier_activation!r}"
        )


def _check_shape_tuple(input_shape) -> tuple:
    if isinstance(input_shape, list):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, tuple) or len(input_shape) != 3 or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in input_shape
    ):
        raise ValueError(
            f"`input_shape` must be a tuple of three positive ints or None, {_shape_words()}; "
            f"received input_shape={input_shape!r}"
        )
    return input_shape


def obtain_input_shape(
    input_shape, *, default_size: int, min_size: int, require_flatten: bool, weights,
) -> tuple:
    """The model's input shape, validated like keras.applications.

    ``input_shape`` and the result are in the active ``image_data_format()`` order:
    ``(height, width, channels)``, or ``(channels, height, width)`` for channels-first.
    ``require_flatten`` (include_top) needs a static size; ImageNet weights need 3
    channels (and exactly ``default_size`` when the top is included).
    """
    if input_shape is not None:
        given = _check_shape_tuple(input_shape)
        input_shape = hwc(given)
        if input_shape[-1] is None:
            raise ValueError(f"`input_shape` must give the number of channels; received {given}")
    default_shape = (default_size, default_size, 3)
    if weights is not None and weights == "imagenet":
        if input_shape is not None and input_shape[-1] != 3:
            raise ValueError(
                f"With weights='imagenet' the input must have 3 channels; received input_shape={given}"
            )
        if require_flatten:
            if input_shape is not None and input_shape != default_shape:
                raise ValueError(
                    f"With include_top=True and weights='imagenet', `input_shape` must be "
                    f"{image_shape(*default_shape)}; received input_shape={given}"
                )
            return image_shape(*default_shape)
    elif input_shape is not None and input_shape[-1] not in (1, 3):
        warnings.warn(
            f"This model usually expects 1 or 3 input channels; input_shape has {input_shape[-1]}.",
            stacklevel=3,
        )
    if input_shape is None:
        input_shape = default_shape if require_flatten else (None, None, 3)
    for dim in input_shape[:2]:
        if dim is not None and dim < min_size:
            raise ValueError(
                f"`input_shape` must be at least {min_size}x{min_size} pixels; "
                f"received input_shape={image_shape(*input_shape)}"
            )
    if require_flatten and None in input_shape:
        raise ValueError(
            f"With include_top=True, `input_shape` must be static; received input_shape={image_shape(*input_shape)}"
        )
    return image_shape(*input_shape)


def shape_from_tensor(input_shape, input_tensor):
    """Reconcile ``input_shape`` with ``input_tensor``: infer it, or check they agree."""
    if input_tensor is None:
        return input_shape
    if not _backend.is_keras_tensor(input_tensor):
        raise ValueError(
            "`input_tensor` must be a Keras tensor of the active flavour (the output of "
            f"keras.Input or a layer); received {type(input_tensor).__name__}"
        )
    tensor_shape = tuple(input_tensor.shape[1:])
    if len(tensor_shape) != 3:
        raise ValueError(
            f"`input_tensor` must be 4-D (batch, {_shape_words()[1:]}; received shape {input_tensor.shape}"
        )
    if input_shape is None:
        return tensor_shape
    input_shape = _check_shape_tuple(input_shape)
    if any(a is not None and b is not None and a != b for a, b in zip(input_shape, tensor_shape, strict=True)):
        raise ValueError(
            f"`input_shape`={input_shape} disagrees with `input_tensor` of shape "
            f"{tuple(input_tensor.shape)}; pass one of them, or make them match"
        )
    return input_shape


def model_input(input_shape: tuple, input_tensor):
    """``(image_input, model_inputs)``: the tensor to build on and the model's inputs."""
    keras = _backend.keras_module()
    if input_tensor is None:
        image = keras.layers.Input(shape=input_shape, name="input")
        return image, image
    return input_tensor, _backend.source_inputs(input_tensor)


def check_alpha(alpha, *, weights, pretrained: Sequence[float], argument: str = "alpha") -> None:
    """``alpha`` must be a positive number, and one of ``pretrained`` with ImageNet weights."""
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"`{argument}` must be a positive number; received {argument}={alpha!r}")
    if weights == "imagenet" and alpha not in pretrained:
        raise ValueError(
            f"ImageNet weights exist only for {argument} in "
            f"{', '.join(str(a) for a in pretrained)}; received {argument}={alpha!r}"
        )


def prepare_input(
    *, input_shape, input_tensor, weights, include_top: bool, classes, pooling,
    classifier_activation, default_size: int = 224, pretrained_sizes: Sequence[int] = (),
    min_size: int = 32, require_flatten: bool | None = None,
):
    """Validate the common builder arguments and create the input.

    Returns ``(image, inputs, input_shape)``: the tensor to build on, the model's
    inputs (the source ``Input`` of ``input_tensor`` when one is given) and the
    checked input shape (``(height, width, channels)``, or ``(channels, height, width)``
    when ``image_data_format()`` is ``"channels_first"``). A square input whose side is one of
    ``pretrained_sizes`` becomes the default size (weights exist for it).
    ``require_flatten`` (default: ``include_top``) demands a static input size.
    """
    check_common(
        weights=weights, include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    input_shape = shape_from_tensor(input_shape, input_tensor)
    if input_shape is not None and len(input_shape) == 3:
        rows, cols = hwc(input_shape)[:2]
        if rows == cols and rows in pretrained_sizes:
            default_size = rows
    input_shape = obtain_input_shape(
        input_shape, default_size=default_size, min_size=min_size,
        require_flatten=include_top if require_flatten is None else require_flatten,
        weights=weights,
    )
    image, inputs = model_input(input_shape, input_tensor)
    return image, inputs, input_shape


def pretrained_size(input_shape, weights, sizes: Sequence[int], default: int = 224) -> int:
    """The input size whose ImageNet weights to load (warns when none fits exactly)."""
    rows, cols = hwc(input_shape)[:2]
    if rows == cols and rows in sizes:
        return rows
    if weights == "imagenet":
        warnings.warn(
            f"input_shape={input_shape} is undefined, non-square or not one of {list(sizes)}; "
            f"loading the weights trained at {default}x{default}.",
            stacklevel=3,
        )
    return default


PREPROCESSING_LAYER = "rescaling"  # keras.applications' name for MobileNetV3's in-model rescaling


def in_model_preprocessing(image, include_preprocessing, mode: str):
    """``image`` preprocessed inside the model when ``include_preprocessing`` is True.

    Adds a ``layers.Rescale`` named ``"rescaling"`` doing ``imagenet.preprocess_input(x,
    mode=mode)`` (``"tf"``: ``[0, 255]`` -> ``[-1, 1]``; ``"torch"``: ImageNet mean/std),
    so the model takes raw ``[0, 255]`` pixels. ``"bgr255"`` (RGB -> BGR, values kept) is a
    permutation, which no ``Rescale`` does: a ``ChannelSplit`` into single channels
    (``"rescaling_split"``) and a ``Concatenate`` of them in reverse order, named
    ``"rescaling"`` as the other modes' layer (it marks in-model preprocessing); it needs 3
    input channels. ``ValueError`` unless ``include_preprocessing`` is a bool.
    """
    if not check_bool("include_preprocessing", include_preprocessing):
        return image
    if mode == "bgr255":
        return _reverse_channels(image)
    scale, offset = imagenet.rescale_arguments(mode)
    return get_layer_class("Rescale")(scale=scale, offset=offset, name=PREPROCESSING_LAYER)(image)


def _reverse_channels(image):
    """RGB -> BGR of a 3-channel image tensor, as standard layers (exact: values only move)."""
    if channels(image) != 3:
        raise InputError(
            "include_preprocessing=True turns RGB pixels into BGR, which needs 3 input channels; "
            f"received an input with {channels(image)} channels"
        )
    red, green, blue = get_layer_class("ChannelSplit")(groups=3, name=f"{PREPROCESSING_LAYER}_split")(image)
    layers = _backend.keras_module().layers
    return layers.Concatenate(axis=channel_axis(), name=PREPROCESSING_LAYER)([blue, green, red])


def finish_model(
    inputs, outputs, *, name: str, weights, imagenet_file: Callable[[], str] | None,
    torch_mapping: Callable[[object], list[tuple[str, str]]] | None = None,
):
    """Create the Functional model and load ``weights`` into it.

    ``imagenet_file()`` names the weights manifest's file for ``weights="imagenet"``
    (a family asks its registry record: ``registry.variant_of(builder, **kwargs).weight_file(...)``);
    ``None``: the model has no ImageNet weights.
    ``torch_mapping(model) -> [(keras_layer_name, torch_prefix)]`` is given by families
    with a torchvision counterpart: it lets ``weights`` be a torchvision checkpoint
    (``.safetensors``/``.pth``/``.pt``) and ``"imagenet"`` a torchvision file.
    """
    keras = _backend.keras_module()
    model = keras.Model(inputs, outputs, name=name)
    apply_weights(model, weights, imagenet_file=imagenet_file, torch_mapping=torch_mapping)
    return model
