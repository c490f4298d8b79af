"""Pretrained weights: the manifest and download (``download``) and file loading (``loading``)."""

from __future__ import annotations

from collections.abc import Callable

from keras_lightnets.weights.download import fetch, manifest, manifest_entry
from keras_lightnets.weights.loading import assign_by_name, load_weights, read_weight_file

__all__ = [
    "apply_weights", "assign_by_name", "fetch", "load_weights", "manifest", "manifest_entry",
    "read_weight_file",
]


def apply_weights(model, weights, *, imagenet_file: Callable[[], str] | None = None) -> None:
    """Load the builder's ``weights`` argument into ``model``.

    ``None``: nothing; ``"imagenet"``: the manifest file named by ``imagenet_file()``,
    fetched (mirror, cache or download); otherwise a path to a weights file.
    """
    if weights is None:
        return
    if weights == "imagenet":
        if imagenet_file is None:
            raise ValueError(f"model {model.name!r} has no ImageNet weights; use weights=None or a file path")
        weights = fetch(imagenet_file())
    load_weights(model, weights)
