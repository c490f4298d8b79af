"""Feature maps recorded while a model is built (for ``features_only=True``).

Builders call ``mark(tensor)`` after every block; while ``recording()`` is active the
last tensor marked at each output stride is kept, so the recorder ends with the deepest
feature map at each stride (2, 4, 8, 16, 32: the input size divided by the map's size).
The stride is read from the graph (``stride_of``: the product of the strides of the
layers between the input and the tensor), so no builder counts strides by hand and a
new family only marks its block outputs. Outside ``recording()`` ``mark`` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

_active: contextvars.ContextVar[FeatureRecorder | None] = contextvars.ContextVar(
    "keras_lightnets_feature_recorder", default=None
)


def _producer(tensor) -> tuple[object | None, list]:
    """``(layer, input tensors)`` of the layer call that made the symbolic ``tensor``
    (Keras 3 and tf_keras), or ``(None, [])`` for a model input or a non-Keras tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, []
    layer = getattr(history, "operation", None) or history.layer
    if type(layer).__name__ == "InputLayer":
        return None, []
    node = layer._inbound_nodes[history.node_index]
    inputs = getattr(node, "input_tensors", None)
    if inputs is None:  # tf_keras' Node
        inputs = node.keras_inputs
    return layer, list(inputs) if isinstance(inputs, list | tuple) else [inputs]


def stride_of(tensor) -> int:
    """The output stride of the symbolic image tensor ``tensor``: the product of the
    ``strides`` of the layers on the path from the model's input to it (the first input of
    each layer is followed: the inputs of a merge have the same size)."""
    stride = 1
    while True:
        layer, inputs = _producer(tensor)
        if layer is None or not inputs or inputs[0] is tensor:
            return stride
        strides = getattr(layer, "strides", 1)
        stride *= int(strides[0] if isinstance(strides, list | tuple) else strides)
        tensor = inputs[0]


@dataclass
class FeatureRecorder:
    """``stride -> tensor`` of the deepest feature map seen at each stride."""

    by_stride: dict[int, object] = field(default_factory=dict)

    def mark(self, tensor) -> None:
        self.by_stride[stride_of(tensor)] = tensor


@contextlib.contextmanager
def recording() -> Iterator[FeatureRecorder]:
    """Record the feature maps of the model built inside the block."""
    recorder = FeatureRecorder()
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


def mark(tensor):
    """Note ``tensor`` (a block's output) as a feature map; returns ``tensor`` unchanged."""
    recorder = _active.get()
    if recorder is not None:
        recorder.mark(tensor)
    return tensor
