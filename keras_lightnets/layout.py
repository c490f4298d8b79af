"""Where the channels are: image layouts, and channels-first models' channels-last twins.

Images follow the active flavour's ``image_data_format()`` at build time, as in
keras.applications: ``(height, width, channels)`` for ``"channels_last"`` (the default),
``(channels, height, width)`` for ``"channels_first"``; sizes are in pixels.
``channel_axis``, ``channels`` and ``spatial_size`` are the only places that know where the
channels are. TFLite, TFMOT and XNNPACK are NHWC only: ``channels_last_twin`` rewrites a
channels-first model for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras_lightnets import _backend
from keras_lightnets.validation import check_choice

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
