"""The steps every family builder shares: argument checks, input, model, weights."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

from keras_lightnets import _backend, imagenet, utils
from keras_lightnets.layers import get_layer_class
from keras_lightnets.weights import apply_weights


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
    utils.check_common(
        weights=weights, include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    input_shape = utils.shape_from_tensor(input_shape, input_tensor)
    if input_shape is not None and len(input_shape) == 3:
        rows, cols = utils.hwc(input_shape)[:2]
        if rows == cols and rows in pretrained_sizes:
            default_size = rows
    input_shape = utils.obtain_input_shape(
        input_shape, default_size=default_size, min_size=min_size,
        require_flatten=include_top if require_flatten is None else require_flatten,
        weights=weights,
    )
    image, inputs = utils.model_input(input_shape, input_tensor)
    return image, inputs, input_shape


def pretrained_size(input_shape, weights, sizes: Sequence[int], default: int = 224) -> int:
    """The input size whose ImageNet weights to load (warns when none fits exactly)."""
    rows, cols = utils.hwc(input_shape)[:2]
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
    so the model takes raw ``[0, 255]`` pixels. ``ValueError`` unless it is a bool.
    """
    if not utils.check_bool("include_preprocessing", include_preprocessing):
        return image
    scale, offset = imagenet.rescale_arguments(mode)
    return get_layer_class("Rescale")(scale=scale, offset=offset, name=PREPROCESSING_LAYER)(image)


def finish_model(
    inputs, outputs, *, name: str, weights, imagenet_file: Callable[[], str] | None,
    torch_mapping: Callable[[object], list[tuple[str, str]]] | None = None,
):
    """Create the Functional model and load ``weights`` into it.

    ``torch_mapping(model) -> [(keras_layer_name, torch_prefix)]`` is given by
    families with a torchvision counterpart: it lets ``weights`` be a torchvision
    checkpoint (``.safetensors``/``.pth``/``.pt``) and ``"imagenet"`` a torchvision file.
    """
    keras = _backend.keras_module()
    model = keras.Model(inputs, outputs, name=name)
    apply_weights(model, weights, imagenet_file=imagenet_file, torch_mapping=torch_mapping)
    return model
