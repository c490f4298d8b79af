"""ImageNet input preprocessing and prediction decoding (keras.applications semantics).

Inputs are arrays or tensors of RGB pixels in ``[0, 255]``, channels-last
(``(..., height, width, 3)``) or, with ``data_format="channels_first"`` (or that
as Keras' ``image_data_format()`` when ``data_format`` is None), ``(..., 3, height, width)``. The
ImageNet class index ships with the package (``data/imagenet_class_index.json``),
so ``decode_predictions`` works offline.
"""

from __future__ import annotations

import functools
import importlib.resources
import json

import numpy as np

from keras_lightnets.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("tf", "torch", "none", "bgr255")  # of ``preprocess_input``
# The one vocabulary of a variant's preprocessing (``ModelConfig.preprocessing``): what its
# ``[0, 255]`` pixels need before the model, as a ``preprocess_input`` mode and in words.
PREPROCESSING = {
    "tf": ("tf", "scale pixels from [0, 255] to [-1, 1] (preprocess_input, mode 'tf')"),
    "in_model": ("none", "none: the model rescales [0, 255] pixels itself (include_preprocessing=True)"),
    "torch": ("torch", "pixels / 255, then minus ImageNet mean / ImageNet std, per channel (mode 'torch')"),
    "bgr255": ("bgr255", "RGB -> BGR channel order, pixels stay in [0, 255], no mean or std (mode 'bgr255', "
                         "megvii's ShuffleNet pipeline)"),
}
PREPROCESS_MODES = {name: mode for name, (mode, _) in PREPROCESSING.items()}  # -> preprocess_input's mode


def _as_float(x):
    if isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False) if not np.issubdtype(x.dtype, np.floating) else x
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    return tf.cast(x, tf.float32) if not x.dtype.is_floating else x


DATA_FORMATS = ("channels_last", "channels_first")


def _check_data_format(data_format) -> None:
    if data_format is not None and data_format not in DATA_FORMATS:
        raise InputError(f"`data_format` must be one of {DATA_FORMATS} or None; received data_format={data_format!r}")


def _channels_first(data_format) -> bool:
    if data_format is None:
        from keras_lightnets.layout import image_data_format

        data_format = image_data_format()
    return data_format == "channels_first"


def _channel_shape(data_format) -> tuple[int, ...]:
    """Shape of per-channel statistics that broadcasts against images in ``data_format``."""
    if data_format is None:
        from keras_lightnets.layout import image_data_format

        data_format = image_data_format()
    return (3, 1, 1) if data_format == "channels_first" else (3,)


def preprocess_input(x, data_format=None, mode: str = "tf"):
    """Scale RGB pixels in ``[0, 255]``: ``mode="tf"`` to ``[-1, 1]``; ``"torch"`` to
    ``(x / 255 - mean) / std`` with ImageNet mean/std; ``"bgr255"`` reverses the channel
    order (RGB -> BGR) and keeps the ``[0, 255]`` values; ``"none"`` returns ``x``.

    NumPy float input is modified in place (like keras.applications); integer
    input is converted to float32 first.
    """
    _check_data_format(data_format)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received mode={mode!r}")
    if mode == "none":
        return x
    x = _as_float(x)
    if mode == "bgr255":
        axis = -3 if _channels_first(data_format) else -1
        if isinstance(x, np.ndarray):
            x[...] = np.flip(x, axis).copy()
            return x
        import tensorflow as tf

        return tf.reverse(x, axis=[axis])
    if mode == "tf":
        if isinstance(x, np.ndarray):
            x /= 127.5
            x -= 1.0
            return x
        return x / 127.5 - 1.0
    shape = _channel_shape(data_format)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(shape)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(shape)
    if isinstance(x, np.ndarray):
        x /= 255.0
        x -= mean
        x /= std
        return x
    return (x / 255.0 - mean) / std


def preprocess_tf(x, data_format=None):
    """Scale pixels from ``[0, 255]`` to ``[-1, 1]`` (MobileNet V1/V2, NASNet)."""
    return preprocess_input(x, data_format, mode="tf")


def preprocess_torch(x, data_format=None):
    """``(x / 255 - mean) / std`` with ImageNet statistics (torchvision-trained models)."""
    return preprocess_input(x, data_format, mode="torch")


def preprocess_bgr255(x, data_format=None):
    """RGB -> BGR channel order, values kept in ``[0, 255]`` (megvii's ShuffleNet V1)."""
    return preprocess_input(x, data_format, mode="bgr255")


def rescale_arguments(mode: str) -> tuple[float | list[float], float | list[float]]:
    """``(scale, offset)`` of the ``layers.Rescale`` that does ``preprocess_input(x, mode=mode)``
    inside a model (per channel for ``"torch"``)."""
    if mode == "tf":
        return 1.0 / 127.5, -1.0
    if mode == "torch":
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float64)
        std = np.asarray(IMAGENET_STD, dtype=np.float64)
        return (1.0 / (255.0 * std)).tolist(), (-mean / std).tolist()
    if mode == "none":
        return 1.0, 0.0
    if mode == "bgr255":
        raise ValueError("mode 'bgr255' reorders the channels, which no Rescale does; "
                         "models.builder.in_model_preprocessing builds it from ChannelSplit + Concatenate")
    raise ValueError(f"`mode` must be one of {MODES}; received mode={mode!r}")


def preprocess_none(x, data_format=None):
    """Return ``x`` unchanged: the model rescales its ``[0, 255]`` input itself."""
    _check_data_format(data_format)
    return x


@functools.cache
def class_index() -> dict[int, tuple[str, str]]:
    """``{class id: (WordNet id, name)}`` for the 1000 ImageNet-1k classes."""
    path = importlib.resources.files("keras_lightnets") / "data" / "imagenet_class_index.json"
    with path.open(encoding="utf8") as f:
        raw = json.load(f)
    return {int(k): (v[0], v[1]) for k, v in raw.items()}


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Decode ``(samples, 1000)`` ImageNet scores into, per sample, the ``top`` best
    ``(wordnet_id, class_name, score)`` tuples, best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`preds` must be a batch of ImageNet predictions of shape (samples, 1000); "
            f"received preds of shape {preds.shape}"
        )
    if not isinstance(top, int | np.integer) or isinstance(top, bool) or not 1 <= top <= 1000:
        raise ValueError(f"`top` must be an int in 1..1000; received top={top!r}")
    index = class_index()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*index[int(i)], float(row[i])) for i in best])
    return results
