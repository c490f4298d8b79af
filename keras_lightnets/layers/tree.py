"""Walking a model's layers through nested models and TFMOT's wrappers (recognised by class
name, without importing TFMOT)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from keras_lightnets.layers.mixins import LayerMixin

# TFMOT's layers, by class name: the wrappers that hold one of the model's layers, and the
# layers a quantization-aware (QAT) model contains.
WRAPPER_CLASSES = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeAnnotate")
QAT_LAYER_CLASSES = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")


def unwrap(layer):
    """The layer inside TFMOT wrappers (pruning, quantization), or ``layer`` itself."""
    while type(layer).__name__ in WRAPPER_CLASSES:
        layer = layer.layer
    return layer


def nested_layers(model) -> Iterator:
    """Every layer of ``model``, depth first: nested models' layers and the layer inside each
    TFMOT wrapper (``QuantizeWrapper``, ``PruneLowMagnitude``) included."""
    for layer in getattr(model, "layers", []):
        yield layer
        inner = getattr(layer, "layer", None)
        if inner is not None:
            yield inner
        yield from nested_layers(layer)


@contextlib.contextmanager
def int8_graph(model) -> Iterator[None]:
    """While active, the package's layers in ``model`` (nested models and TFMOT wrappers
    included) trace in their int8 form (see ``HardSwish``): wrap an int8 conversion in it."""
    layers = [layer for layer in nested_layers(model) if isinstance(layer, LayerMixin)]
    before = [layer.int8_graph for layer in layers]
    try:
        for layer in layers:
            layer.int8_graph = True
        yield
    finally:
        for layer, value in zip(layers, before, strict=True):
            layer.int8_graph = value
