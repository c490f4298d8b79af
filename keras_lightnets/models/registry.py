"""The model registry: one name per variant, its builder and its facts.

A family module registers each variant with ``register_model``; everything else
(``list_models``, ``create_model``, the CLI, the tests) reads the registry, so a
variant is covered everywhere the moment it is registered. Facts that can be
derived from the built model (parameter count, MACs) are stated here once and
re-derived by the tests.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from keras_lightnets import _backend
from keras_lightnets.errors import InputError
from keras_lightnets.models import features

PREPROCESSING = {
    "tf": "scale pixels from [0, 255] to [-1, 1] (preprocess_input, mode 'tf')",
    "in_model": "none: the model rescales [0, 255] pixels itself (include_preprocessing=True)",
    "torch": "pixels / 255, then minus ImageNet mean / ImageNet std, per channel (mode 'torch')",
}
FEATURE_STRIDES = (2, 4, 8, 16, 32)
# The public family module of each family (keras.applications' layout): ``keras_lightnets.<module>``.
FAMILY_MODULES = {"mobilenet_v1": "mobilenet"}
# What ``weight_sources`` reports of each manifest entry.
SOURCE_FIELDS = ("url", "source", "license", "format", "include_top", "input_size", "verified", "sha256", "size")


@dataclass(frozen=True)
class ModelConfig:
    """Everything the package knows about one registered variant.

    ``params`` and ``macs`` are for the default input size with the ImageNet
    classifier (1000 classes); ``macs`` counts multiply-accumulates of
    convolutions and dense layers (see ``keras_lightnets.macs``).
    """

    name: str
    family: str
    builder: Callable[..., Any]
    kwargs: MappingProxyType
    input_size: int
    preprocessing: str
    params: int
    macs: int
    top1: float | None
    weights: tuple[str, ...]
    paper: str
    notes: str = ""
    extra: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, 3)

    @property
    def module(self) -> str:
        """The public family module, e.g. ``"keras_lightnets.mobilenet_v3"``."""
        return f"keras_lightnets.{FAMILY_MODULES.get(self.family, self.family)}"

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON and tables)."""
        return {
            "name": self.name, "family": self.family, "builder": self.builder.__name__,
            "kwargs": dict(self.kwargs), "input_size": self.input_size,
            "preprocessing": self.preprocessing, "params": self.params, "macs": self.macs,
            "top1": self.top1, "weights": list(self.weights), "paper": self.paper,
            "module": self.module, "notes": self.notes,
        }


_REGISTRY: dict[str, ModelConfig] = {}


def register_model(
    name: str, builder: Callable[..., Any], kwargs: dict[str, Any] | None = None, *,
    family: str, input_size: int, preprocessing: str, params: int, macs: int,
    top1: float | None, weights: Sequence[str] = (), paper: str, notes: str = "",
) -> ModelConfig:
    """Register a variant: ``builder(**kwargs)`` builds it."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"`preprocessing` must be one of {sorted(PREPROCESSING)}; received {preprocessing!r}")
    config = ModelConfig(
        name=name, family=family, builder=builder, kwargs=MappingProxyType(dict(kwargs or {})),
        input_size=input_size, preprocessing=preprocessing, params=params, macs=macs,
        top1=top1, weights=tuple(weights), paper=paper, notes=notes,
    )
    _REGISTRY[name] = config
    return config


def _ensure_families_loaded() -> None:
    from keras_lightnets import models  # noqa: F401  (registers every family)


def _type_error(argument: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"`{argument}` must be {expected}; received {argument}={value!r} ({type(value).__name__})")


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Sorted registered names matching the shell-style ``pattern``.

    With ``pretrained=True`` only variants with ImageNet weights are listed.
    ``TypeError`` when ``pattern`` is not a string or ``pretrained`` not a bool.
    """
    if not isinstance(pattern, str):
        raise _type_error("pattern", "a shell-style pattern string such as 'mobilenet_v3*'", pattern)
    if not isinstance(pretrained, bool):
        raise _type_error("pretrained", "True or False", pretrained)
    _ensure_families_loaded()
    return sorted(
        name for name, config in _REGISTRY.items()
        if fnmatch.fnmatchcase(name, pattern) and (not pretrained or "imagenet" in config.weights)
    )


def model_config(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a registered variant.

    ``TypeError`` when ``name`` is not a string; ``errors.InputError`` (a
    ``ValueError``) when no model of that name is registered.
    """
    if not isinstance(name, str):
        raise _type_error("name", "a registered model name (a string; see list_models())", name)
    _ensure_families_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = fnmatch.filter(_REGISTRY, f"*{name.split('_')[0]}*") if name.split("_")[0] else []
        hint = f" Similar: {', '.join(sorted(close)[:8])}." if close else ""
        raise InputError(
            f"unknown model {name!r}; see keras_lightnets.list_models() for the "
            f"{len(_REGISTRY)} registered names.{hint}"
        ) from None


def weight_sources(name: str) -> list[dict[str, Any]]:
    """Where the pretrained weights of variant ``name`` come from, one dict per file.

    Read from the weights manifest (``keras_lightnets.weights.download.manifest``):
    ``{"file", "url", "source", "license", "format", "include_top", "input_size",
    "verified", "sha256", "size"}`` for every entry listing ``name`` in its ``models``,
    sorted by file name; empty for a variant without weights. ``errors.InputError`` for
    an unknown name or a bad manifest.
    """
    model_config(name)
    from keras_lightnets.weights import download

    return [
        {"file": file, **{key: entry.get(key) for key in SOURCE_FIELDS}}
        for file, entry in sorted(download.manifest().items()) if name in (entry.get("models") or ())
    ]


def create_model(
    name: str, *, features_only: bool = False, out_indices: Sequence[int] | None = None,
    flavour: str | None = None, **kwargs: Any,
):
    """Build the registered variant ``name``; ``kwargs`` override its builder kwargs.

    ``features_only=True`` returns a multi-output model of the feature maps at
    output strides ``(2, 4, 8, 16, 32)`` (each about ``(batch, H/stride, W/stride, C)``;
    SqueezeNet stops at 16);
    ``out_indices`` picks some of them by position (e.g. ``(2, 3, 4)`` for strides
    8, 16, 32). The model gets a ``feature_info`` list of
    ``{"stride", "channels", "layer"}`` dicts. ``flavour`` ("keras" or
    "tf_keras") overrides the active Keras flavour. ``TypeError`` names an argument
    of the wrong type; ``errors.InputError`` an unknown name or flavour.
    """
    config = model_config(name)
    if not isinstance(features_only, bool):
        raise _type_error("features_only", "True or False", features_only)
    if flavour is not None and flavour not in _backend.FLAVOURS:
        raise InputError(f"`flavour` must be None or one of {_backend.FLAVOURS}; received flavour={flavour!r}")
    if out_indices is not None and (isinstance(out_indices, str | bytes) or not hasattr(out_indices, "__iter__")):
        raise _type_error("out_indices", "None or a sequence of ints", out_indices)
    arguments = {**config.kwargs, **kwargs}
    if flavour is not None:
        with _backend.use_flavour(flavour):
            return create_model(name, features_only=features_only, out_indices=out_indices, **kwargs)
    if out_indices is not None and not features_only:
        raise ValueError("`out_indices` is only used with features_only=True")
    if not features_only:
        return config.builder(**arguments)
    if arguments.get("include_top"):
        raise ValueError("features_only=True builds the model without its top; do not pass include_top=True")
    arguments["include_top"] = False
    arguments["pooling"] = None
    with features.recording() as recorder:
        base = config.builder(**arguments)
    return _feature_model(base, recorder.by_stride, out_indices, name)


def _feature_model(base, by_stride: dict[int, Any], out_indices, name: str):
    from keras_lightnets.layout import channels

    strides = [s for s in FEATURE_STRIDES if s in by_stride]
    if out_indices is None:
        out_indices = tuple(range(len(strides)))
    out_indices = tuple(out_indices)
    bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < len(strides)]
    if bad or not out_indices:
        raise ValueError(
            f"`out_indices` must be a non-empty sequence of ints in 0..{len(strides) - 1} "
            f"(strides {strides}); received out_indices={out_indices!r}"
        )
    keras = _backend.keras_module()
    outputs = [by_stride[strides[i]] for i in out_indices]
    model = keras.Model(base.inputs, outputs, name=f"{base.name}_features")
    model.feature_info = [
        {"stride": strides[i], "channels": int(channels(t)), "layer": _layer_name(t)}
        for i, t in zip(out_indices, outputs, strict=True)
    ]
    return model


def _layer_name(tensor) -> str:
    history = tensor._keras_history
    layer = getattr(history, "operation", None) or history.layer
    return layer.name
