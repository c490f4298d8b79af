"""The public builders, built with tf_keras (what TFMOT accepts).

Same code, same layer names, weights and outputs as the Keras 3 builders in
``keras_lightnets``; only the Keras namespace handed down differs. Importing this
module also registers the tf_keras twins of the custom layers (``HardSwish``, ...)
for tf_keras model loading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras_lightnets as _public
from keras_lightnets import _backend
from keras_lightnets.layers import LAYER_NAMES, custom_objects, get_layer_class
from keras_lightnets.models import registry

FLAVOUR = "tf_keras"


def _with_tf_keras(builder: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any):
        with _backend.use_flavour(FLAVOUR):
            return builder(*args, **kwargs)

    return build


def create_model(name: str, **kwargs: Any):
    """``keras_lightnets.create_model`` returning a tf_keras model."""
    return registry.create_model(name, flavour=FLAVOUR, **kwargs)


list_models = registry.list_models
model_config = registry.model_config
count_macs = _public.count_macs
_BUILDERS = [n for n in _public.__all__ if n[0].isupper()]
globals().update({n: _with_tf_keras(getattr(_public, n)) for n in _BUILDERS})
globals().update({n: get_layer_class(n, FLAVOUR) for n in LAYER_NAMES})


def legacy_custom_objects() -> dict[str, type]:
    """``custom_objects`` for ``tf_keras.models.load_model`` of a keras_lightnets model."""
    return custom_objects(FLAVOUR)


__all__ = [*_BUILDERS, *LAYER_NAMES, "count_macs", "create_model", "legacy_custom_objects",
           "list_models", "model_config"]
