"""The package's layer classes of one Keras flavour, by name.

Keras 3 and tf_keras have separate ``Layer`` bases and serialization registries, so
each layer has one class per flavour (``keras3.py``, ``tfkeras.py``); importing a
flavour's module defines and registers its classes (and imports that Keras).
"""

from __future__ import annotations

from types import ModuleType

from keras_lightnets import _backend
from keras_lightnets.layers.mixins import LAYER_NAMES


def _module(flavour: str) -> ModuleType:
    if _backend.check_flavour(flavour) == "keras":
        from keras_lightnets.layers import keras3

        return keras3
    from keras_lightnets.layers import tfkeras

    return tfkeras


def get_layer_class(name: str, flavour: str | None = None) -> type:
    """The custom layer class ``name`` for ``flavour`` (default: the active flavour)."""
    if name not in LAYER_NAMES:
        raise ValueError(f"unknown layer {name!r}; allowed values: {', '.join(LAYER_NAMES)}")
    return getattr(_module(flavour or _backend.current_flavour()), name)


def custom_objects(flavour: str | None = None) -> dict[str, type]:
    """``{class name: class}`` for every custom layer of ``flavour``, for ``custom_objects=``."""
    module = _module(flavour or _backend.current_flavour())
    return {name: getattr(module, name) for name in LAYER_NAMES}


def register(flavour: str = "keras") -> None:
    """Register the package's layers with ``flavour``'s serialization, so that
    ``keras.saving.load_model`` (or tf_keras') finds them. For Keras 3, ``import
    keras_lightnets`` does this (now, or as soon as ``keras`` is imported); for tf_keras,
    ``import keras_lightnets.legacy`` does; building any model does too."""
    _module(flavour)
