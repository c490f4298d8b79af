"""Pretrained weights: the manifest and download (``download``), file loading (``loading``),
porting of torchvision checkpoints (``torchvision``; ``port_tool`` converts one into a Keras
file) and the writers of the manifest's entries (``manifest_tools``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from keras_lightnets.errors import InputError
from keras_lightnets.weights.download import fetch, manifest, manifest_entry
from keras_lightnets.weights.loading import assign_by_name, load_weights, read_weight_file
from keras_lightnets.weights.torchvision import TORCH_SUFFIXES, port_checkpoint, port_imagenet

PORTED_FORMATS = ("torchvision-pth", "timm-safetensors")  # PyTorch state_dicts, converted on first use

__all__ = [
    "apply_weights", "assign_by_name", "fetch", "load_weights", "manifest", "manifest_entry",
    "port_checkpoint", "read_weight_file",
]


def apply_weights(
    model, weights, *, imagenet_file: Callable[[], str] | None = None,
    torch_mapping: Callable[[object], list[tuple[str, str]]] | None = None,
) -> None:
    """Load the builder's ``weights`` argument into ``model``.

    ``None``: nothing; ``"imagenet"``: the manifest file named by ``imagenet_file()``,
    fetched (mirror, cache or download) -- a ``"torchvision-pth"`` or ``"timm-safetensors"``
    entry is ported with ``torch_mapping`` and its conversion cached; otherwise a path to a weights
    file: a torchvision checkpoint (``.safetensors``/``.pth``/``.pt``, ported with
    ``torch_mapping``, see ``weights.torchvision``: every declared shape checked
    against the model before a tensor is read) or a Keras weights file.
    """
    if weights is None:
        return
    if weights == "imagenet":
        if imagenet_file is None:
            raise InputError(f"model {model.name!r} has no ImageNet weights; use weights=None or a file path")
        file_name = imagenet_file()
        if manifest_entry(file_name).get("format") in PORTED_FORMATS:
            port_imagenet(model, file_name, torch_mapping)
            return
        weights = fetch(file_name)
    if os.fspath(weights).lower().endswith(TORCH_SUFFIXES):
        port_checkpoint(model, weights, torch_mapping)
        return
    load_weights(model, weights)
