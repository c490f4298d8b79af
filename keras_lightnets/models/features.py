"""Feature maps recorded while a model is built (for ``features_only=True``).

Builders call ``mark(tensor, stride)`` after every block; while ``recording()``
is active the last tensor marked at each stride is kept, so the recorder ends
with the deepest feature map at each output stride (2, 4, 8, 16, 32: the input
size divided by the map's size). Outside ``recording()`` ``mark`` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

_active: contextvars.ContextVar[FeatureRecorder | None] = contextvars.ContextVar(
    "keras_lightnets_feature_recorder", default=None
)


@dataclass
class FeatureRecorder:
    """``stride -> tensor`` of the deepest feature map seen at each stride."""

    by_stride: dict[int, object] = field(default_factory=dict)

    def mark(self, tensor, stride: int) -> None:
        self.by_stride[int(stride)] = tensor


@contextlib.contextmanager
def recording() -> Iterator[FeatureRecorder]:
    """Record the feature maps of the model built inside the block."""
    recorder = FeatureRecorder()
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


def mark(tensor, stride: int):
    """Note ``tensor`` as a feature map at ``stride``; returns ``tensor`` unchanged."""
    recorder = _active.get()
    if recorder is not None:
        recorder.mark(tensor, stride)
    return tensor
