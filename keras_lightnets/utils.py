"""Small shared helpers: channel rounding, TF-style padding and argument validation.

One copy of each, used by every family module. Images are channels-last
``(height, width, channels)`` throughout; sizes are in pixels.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

from keras_lightnets import _backend

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


def spatial_size(tensor) -> tuple[int | None, int | None]:
    """``(height, width)`` of a channels-last Keras tensor."""
    return tuple(tensor.shape[1:3])


def check_channels_last() -> None:
    """Refuse ``channels_first``: every model here (and TFLite) is channels-last."""
    keras = _backend.keras_module()
    if keras.backend.image_data_format() != "channels_last":
        raise ValueError(
            "keras_lightnets models support only image_data_format='channels_last'; "
            f"received {keras.backend.image_data_format()!r}. Set it with "
            "keras.config.set_image_data_format('channels_last')."
        )


def check_choice(argument: str, value, allowed: Sequence) -> None:
    """Raise ``ValueError`` naming ``argument`` and ``allowed`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received {argument}={value!r}"
        )


def check_rate(argument: str, value) -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is a number in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{argument}` must be a number in [0, 1); received {argument}={value!r}")


def check_bool(argument: str, value) -> bool:
    """``value``; ``ValueError`` naming ``argument`` unless it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False; received {argument}={value!r}")
    return value


def check_positive_int(argument: str, value) -> int:
    """``value``; ``ValueError`` naming ``argument`` unless it is an int >= 1 (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{argument}` must be a positive int; received {argument}={value!r}")
    return value


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
    check_channels_last()
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
            "`input_shape` must be a tuple of three positive ints or None, "
            f"(height, width, channels); received input_shape={input_shape!r}"
        )
    return input_shape


def obtain_input_shape(
    input_shape, *, default_size: int, min_size: int, require_flatten: bool, weights,
) -> tuple:
    """The model's ``(height, width, channels)``, validated like keras.applications.

    ``require_flatten`` (include_top) needs a static size; ImageNet weights need 3
    channels (and exactly ``default_size`` when the top is included).
    """
    if input_shape is not None:
        input_shape = _check_shape_tuple(input_shape)
        if input_shape[-1] is None:
            raise ValueError(f"`input_shape` must give the number of channels; received {input_shape}")
    default_shape = (default_size, default_size, 3)
    if weights is not None and weights == "imagenet":
        if input_shape is not None and input_shape[-1] != 3:
            raise ValueError(
                f"With weights='imagenet' the input must have 3 channels; received input_shape={input_shape}"
            )
        if require_flatten:
            if input_shape is not None and input_shape != default_shape:
                raise ValueError(
                    f"With include_top=True and weights='imagenet', `input_shape` must be {default_shape}; "
                    f"received input_shape={input_shape}"
                )
            return default_shape
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
                f"`input_shape` must be at least {min_size}x{min_size} pixels; received input_shape={input_shape}"
            )
    if require_flatten and None in input_shape:
        raise ValueError(
            f"With include_top=True, `input_shape` must be static; received input_shape={input_shape}"
        )
    return input_shape


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
            f"`input_tensor` must be 4-D (batch, height, width, channels); received shape {input_tensor.shape}"
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
