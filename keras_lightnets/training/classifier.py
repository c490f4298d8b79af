"""The classifier ``fine_tune`` trains: a registry base, its preprocessing and a new head, one flat model."""

from __future__ import annotations

import warnings

from keras_lightnets.errors import InputError, one_line
from keras_lightnets.models.registry import create_model, model_config
from keras_lightnets.weights import download

HEAD_LAYERS = ("head_dropout", "predictions")


def _imagenet_if_cached(model_name: str, kwargs: dict):
    """The base with ImageNet weights when they are in the mirror or the Keras cache (None when not:
    nothing is downloaded); the attempt's warnings (e.g. "loading the weights trained at 224x224")
    are raised again only when it loads."""
    with warnings.catch_warnings(record=True) as attempt:
        warnings.simplefilter("always")
        try:
            with download.offline():
                base = create_model(model_name, weights="imagenet", **kwargs)
        except download.NotCachedError:
            return None
    for caught in attempt:
        warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
    return base


def _build_base(model_name: str, weights, input_tensor):
    """``(base, weights used)`` built on ``input_tensor``; ``weights="auto"``: ImageNet when
    available offline, else None."""
    kwargs = {"include_top": False, "pooling": "avg", "input_tensor": input_tensor}
    if weights == "auto":
        base = _imagenet_if_cached(model_name, kwargs) if "imagenet" in model_config(model_name).weights else None
        if base is None:
            return create_model(model_name, weights=None, **kwargs), None
        return base, "imagenet"
    if weights is None or weights == "imagenet":
        return create_model(model_name, weights=weights, **kwargs), weights
    try:
        return create_model(model_name, weights=weights, **kwargs), weights
    except InputError:
        raise
    except ValueError as err:  # the loaders' complaints about the user's weights file
        raise InputError(one_line(err)) from err


def build_classifier(model_name: str, num_classes: int, *, image_size: int, weights="imagenet",
                     dropout: float = 0.2):
    """``(model, weights used)``: [``Rescale`` preprocessing] + the registry base (no top,
    average pooling) + Dropout + Dense(``num_classes``, softmax, float32) as one flat
    Functional model.

    Input float32 ``(batch, image_size, image_size, 3)`` pixels in ``[0, 255]``: the
    model does the registry's preprocessing itself (a ``Rescale`` layer named
    ``"preprocessing"``, or MobileNetV3's own), so a saved model and its ``.tflite``
    take raw pixels. Output ``(batch, num_classes)`` probabilities. Head layers are
    named ``HEAD_LAYERS``. ``weights``: "imagenet", "auto", a weights file or None.
    """
    import keras

    from keras_lightnets import imagenet
    from keras_lightnets.layers import get_layer_class

    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    mode = imagenet.PREPROCESS_MODES[model_config(model_name).preprocessing]
    if mode != "none":
        scale, offset = imagenet.rescale_arguments(mode)
        x = get_layer_class("Rescale")(scale, offset, name="preprocessing")(x)
    base, used = _build_base(model_name, weights, x)
    x = keras.layers.Dropout(dropout, name=HEAD_LAYERS[0])(base.output)
    outputs_ = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_LAYERS[1])(x)
    return keras.Model(inputs, outputs_, name=f"{model_name}_classifier"), used

