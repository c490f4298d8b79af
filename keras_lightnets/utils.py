"""Small shared helpers: channel rounding, TF-style padding and argument validation.

One copy of each, used by every family module. Images follow the active flavour's
``image_data_format()`` at build time, as in keras.applications: ``(height, width,
channels)`` for ``"channels_last"`` (the default), ``(channels, height, width)`` for
``"channels_first"``; sizes are in pixels. ``channel_axis``, ``channels`` and
``spatial_size`` are the only places that know where the channels are.
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


DATA_FORMATS = ("channels_last", "channels_first")


def image_data_format() -> str:
    """The active flavour's ``image_data_format()``: the layout every model is built in.

    ``"channels_last"`` (NHWC, the default) or ``"channels_first"`` (NCHW), set with
    ``keras.config.set_image_data_format`` (or tf_keras' ``backend.set_image_data_format``
    for ``keras_lightnets.legacy``), as keras.applications reads it.
    """
    data_format = _backend.keras_module().backend.image_data_format()
    check_choice("image_data_format", data_format, DATA_FORMATS)
    return data_format


def channel_axis(data_format: str | None = None) -> int:
    """Axis of the channels in an image batch: ``1`` for channels-first, ``-1`` for channels-last."""
    return 1 if (data_format or image_data_format()) == "channels_first" else -1


def channels(tensor, data_format: str | None = None) -> int | None:
    """Number of channels of an image batch tensor (``None`` when unknown)."""
    return tensor.shape[channel_axis(data_format)]


def spatial_size(tensor, data_format: str | None = None) -> tuple[int | None, int | None]:
    """``(height, width)`` of an image batch tensor in ``data_format`` (default: the active one)."""
    shape = tuple(tensor.shape)
    return shape[2:4] if (data_format or image_data_format()) == "channels_first" else shape[1:3]


def image_shape(rows: int | None, cols: int | None, depth: int | None = 3, data_format: str | None = None) -> tuple:
    """An ``input_shape`` in ``data_format``: ``(rows, cols, depth)`` or ``(depth, rows, cols)``."""
    if (data_format or image_data_format()) == "channels_first":
        return (depth, rows, cols)
    return (rows, cols, depth)


def hwc(input_shape: Sequence, data_format: str | None = None) -> tuple:
    """``(height, width, channels)`` of an ``input_shape`` given in ``data_format``."""
    input_shape = tuple(input_shape)
    if (data_format or image_data_format()) == "channels_first":
        return (*input_shape[1:], input_shape[0])
    return input_shape


def _shape_words(data_format: str | None = None) -> str:
    if (data_format or image_data_format()) == "channels_first":
        return "(channels, height, width) (image_data_format is 'channels_first')"
    return "(height, width, channels)"


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


# ---------------------------------------------------------------------------------------------
# Channels-first models -> channels-last twins (TFLite, TFMOT and XNNPACK are NHWC only).

_AXIS_LAYERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "Concatenate",
                "Softmax", "Normalization", "UnitNormalization")
# Layers whose meaning depends on the memory order with no `data_format` to say so.
_ORDER_LAYERS = ("Permute", "Dense", "EinsumDense", "Dot", "Lambda", "TFOpLambda", "SlicingOpLambda")


def is_channels_first(model) -> bool:
    """True when any layer of ``model`` (nested models included) is set to ``channels_first``."""
    return any(getattr(layer, "data_format", None) == "channels_first" for layer in _walk_layers(model))


def _walk_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _walk_layers(layer)


def _to_last(shape):
    """A channels-first shape ``(batch, C, *spatial)`` as ``(batch, *spatial, C)``; others unchanged."""
    if isinstance(shape, dict):
        return {k: _to_last(v) for k, v in shape.items()}
    if isinstance(shape, list | tuple) and shape and all(isinstance(d, list | tuple | dict) for d in shape):
        return type(shape)(_to_last(s) for s in shape)
    if isinstance(shape, list | tuple) and len(shape) >= 3 and all(d is None or isinstance(d, int) for d in shape):
        return type(shape)([shape[0], *shape[2:], shape[1]])
    return shape


def _axis_to_last(axis: int, rank: int) -> int:
    """Axis ``axis`` of a channels-first tensor of ``rank``, as the same axis channels-last."""
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        return 0
    return -1 if axis == 1 else axis - 1


def _input_shape(layer) -> tuple | None:
    """The shape of ``layer``'s (first) input, or ``None`` when it has none."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(tensor, list | tuple):
        tensor = tensor[0] if tensor else None
    shape = getattr(tensor, "shape", None)
    return None if shape is None else tuple(shape)


def _twin_layer_config(entry: dict, layer, model_name: str) -> None:
    """Rewrite one serialized layer (in place) for channels-last; ``InputError`` when it cannot be."""
    from keras_lightnets.errors import InputError

    kind, config = entry.get("class_name"), entry.get("config", {})
    shape = _input_shape(layer) if layer is not None else None
    rank = None if shape is None else len(shape)
    if config.get("data_format") == "channels_first":
        config["data_format"] = "channels_last"
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            config[key] = _to_last(config[key])
    if kind in _AXIS_LAYERS and rank and rank >= 3 and config.get("axis") is not None:
        axis = config["axis"]
        config["axis"] = ([_axis_to_last(a, rank) for a in axis] if isinstance(axis, list | tuple)
                          else _axis_to_last(axis, rank))
    spatial = shape[2:] if rank and rank >= 3 else ()
    name = config.get("name", kind)
    if rank and rank >= 3 and kind in _ORDER_LAYERS:
        raise InputError(f"model {model_name!r}: layer {name!r} ({kind}) on a channels-first tensor depends on "
                         "the memory order; cannot build the channels-last twin (TFLite is channels-last only)")
    if kind == "Reshape" and rank:
        # Only reshapes between (batch, C) and (batch, C, 1, 1) keep their meaning in both layouts.
        target = tuple(config.get("target_shape", ()))
        if any(d != 1 for d in spatial) or (rank >= 3 and len(target) != 1) or any(d != 1 for d in target[1:]):
            raise InputError(f"model {model_name!r}: layer {name!r} (Reshape) changes the element order of a "
                             "channels-first tensor; cannot build the channels-last twin")
        config["target_shape"] = _to_last((None, *target))[1:]
    if isinstance(entry.get("build_config"), dict) and "input_shape" in entry["build_config"]:
        entry["build_config"]["input_shape"] = _to_last(entry["build_config"]["input_shape"])
    for node in entry.get("inbound_nodes") or []:
        _twin_tensors(node)
    if kind in ("Functional", "Sequential", "Model") or "layers" in config:
        _twin_model_config(config, layer, name)


def _twin_tensors(value) -> None:
    """The shapes of serialized Keras 3 tensors inside inbound nodes, in place."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__" and isinstance(value.get("config"), dict):
            value["config"]["shape"] = _to_last(value["config"].get("shape"))
        for item in value.values():
            _twin_tensors(item)
    elif isinstance(value, list):
        for item in value:
            _twin_tensors(item)


def _twin_model_config(config: dict, model, model_name: str) -> None:
    by_name = {layer.name: layer for layer in getattr(model, "layers", [])}
    for entry in config.get("layers", []):
        name = entry.get("config", {}).get("name", entry.get("name"))
        _twin_layer_config(entry, by_name.get(name), model_name)
    if config.get("build_input_shape") is not None:
        config["build_input_shape"] = _to_last(config["build_input_shape"])


def channels_last_twin(model, *, check: bool = True, atol: float = 1e-4):
    """A channels-last copy of a channels-first Keras model, with the same weights.

    TFLite (and TFMOT, XNNPACK) run NHWC only: export a channels-first model through
    its twin. Every ``data_format`` becomes ``"channels_last"``, channel ``axis``
    arguments (BatchNormalization, Concatenate, ...) move to the last axis, 4-D input
    shapes become ``(height, width, channels)``; kernels are the same in both layouts
    (Keras' ``Flatten`` keeps the channels-last order, so a ``Dense`` after it keeps its
    weights too). Nested models are rewritten too. With ``check`` the twin's outputs
    on a seeded random batch must equal the model's on the transposed batch (``atol``
    relative to the largest output). A channels-last model is returned as is.
    ``InputError`` names a layer whose meaning depends on the memory order (``Permute``,
    ``Dense`` on an image tensor, ``Lambda``, a ``Reshape`` that reorders elements).
    """
    from keras_lightnets.errors import InputError
    from keras_lightnets.layers import custom_objects

    if not is_channels_first(model):
        return model
    flavour = _backend.flavour_of(model)
    keras = _backend.keras_module(flavour)
    config = keras.layers.serialize(model)
    _twin_model_config(config["config"], model, model.name)
    with keras.utils.custom_object_scope(custom_objects(flavour)):
        twin = keras.layers.deserialize(config)
    originals, copies = list(_walk_layers(model)), list(_walk_layers(twin))
    if [layer.name for layer in originals] != [layer.name for layer in copies]:
        raise InputError(f"model {model.name!r}: its channels-last twin has other layers; cannot export it")
    for original, copy in zip(originals, copies, strict=True):
        if original.weights and not hasattr(original, "layers"):
            copy.set_weights(original.get_weights())
    if check:
        _check_twin(model, twin, atol)
    return twin


def _check_twin(model, twin, atol: float) -> None:
    import numpy as np

    from keras_lightnets.errors import InputError

    rng = np.random.default_rng(0)
    batches = []
    for tensor in model.inputs:
        shape = [2, *(32 if d is None else d for d in tensor.shape[1:])]
        batches.append(rng.uniform(0.0, 255.0, shape).astype(np.float32))
    last = [np.moveaxis(b, 1, -1) if b.ndim >= 3 else b for b in batches]
    expected = model(batches if len(batches) > 1 else batches[0], training=False)
    found = twin(last if len(last) > 1 else last[0], training=False)
    expected = expected if isinstance(expected, list | tuple) else [expected]
    found = found if isinstance(found, list | tuple) else [found]
    for want, got in zip(expected, found, strict=True):
        want, got = np.asarray(want), np.asarray(got)
        if want.ndim >= 3:
            want = np.moveaxis(want, 1, -1)
        scale = max(float(np.max(np.abs(want))), 1e-12)
        if want.shape != got.shape or float(np.max(np.abs(want - got))) > atol * scale:
            raise InputError(f"model {model.name!r}: its channels-last twin computes other outputs; a layer "
                             "depends on the memory order (export it from a channels-last build instead)")
