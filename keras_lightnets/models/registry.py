"""The model registry: one record per variant, holding everything the package knows about it.

A family module registers each variant with ``register_model``: its builder and kwargs,
its default input size and preprocessing, its facts (parameters, MACs, top-1, paper), its
pretrained weight files (by their names in the weights manifest, per input size, with or
without the top), its ``keras.applications`` twin and how its layer names group into
blocks (for unfreezing), as torchvision's ``Weights`` and timm's ``default_cfgs`` do.
Everything else (``list_models``, ``create_model``, the builders' ``weights="imagenet"``,
the CLI, benchmarks, training, the manifest tools, the tests) reads these records, so a
variant is covered everywhere the moment it is registered. The weights manifest holds only
facts about each file's bytes (URL, hashes, size, license); ``weight_sources`` joins the two.
Facts that can be derived from the built model (parameter count, MACs) are stated here
once and re-derived by the tests.

This module imports no family module: importing it runs ``keras_lightnets/__init__.py``
first, which imports every family, so the registry is full whenever it is read.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from keras_lightnets import _backend
from keras_lightnets.errors import InputError
from keras_lightnets.imagenet import PREPROCESSING
from keras_lightnets.models import features

FEATURE_STRIDES = (2, 4, 8, 16, 32)
TASKS = ("classification", "detection")


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file of a variant, by its name in the weights manifest.

    ``input_size``: the square input side (pixels) it was trained at; ``include_top``:
    whether it holds the classifier.
    """

    name: str
    input_size: int
    include_top: bool = True


@dataclass(frozen=True)
class Twin:
    """The ``keras.applications`` builder of the same architecture: ``keras.applications.<builder>(**kwargs)``."""

    builder: str
    kwargs: MappingProxyType


@dataclass(frozen=True)
class ModelConfig:
    """Everything the package knows about one registered variant.

    ``params`` and ``macs`` are for the default input size with the ImageNet
    classifier (1000 classes); ``macs`` counts multiply-accumulates of
    convolutions and dense layers (see ``keras_lightnets.macs``). ``preprocessing``
    is a key of ``keras_lightnets.imagenet.PREPROCESSING``. ``layer_groups`` are
    ``(regex, block key template)`` pairs: a layer whose name the regex matches
    (``re.match``) belongs to the block ``match.expand(template)``; the first match wins.
    ``architecture`` names the code path: variants that differ only in scaling (width,
    depth, resolution or group count) share it, so behaviour that does not depend on the
    scale is tested once per architecture.
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
    paper: str
    module: str
    weight_files: tuple[WeightFile, ...] = ()
    twin: Twin | None = None
    layer_groups: tuple[tuple[str, str], ...] = ()
    notes: str = ""
    architecture: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, 3)

    @property
    def weights(self) -> tuple[str, ...]:
        """The builder's named weights: ``("imagenet",)`` when the variant has weight files, else ``()``."""
        return ("imagenet",) if self.weight_files else ()

    def weight_file(self, input_size: int | None = None, include_top: bool = True) -> str:
        """The manifest name of the ImageNet weights for ``input_size`` (default: the variant's).

        A file with the top serves a headless model when the variant has no headless file
        at that size (torchvision's checkpoints hold the whole network; the top's tensors
        are skipped). ``errors.InputError`` when the variant has no such file.
        """
        size = self.input_size if input_size is None else input_size
        at_size = [f for f in self.weight_files if f.input_size == size]
        found = [f for f in at_size if f.include_top == include_top] or [f for f in at_size if f.include_top]
        if found:
            return found[0].name
        sizes = sorted({f.input_size for f in self.weight_files})
        raise InputError(
            f"model {self.name!r} has no ImageNet weights for input size {size}"
            f"{'' if include_top else ' without the top'}; sizes with weights: {sizes or 'none'}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON and tables)."""
        return {
            "name": self.name, "family": self.family, "builder": self.builder.__name__,
            "kwargs": dict(self.kwargs), "input_size": self.input_size,
            "preprocessing": self.preprocessing, "params": self.params, "macs": self.macs,
            "top1": self.top1, "weights": list(self.weights), "paper": self.paper,
            "module": self.module, "architecture": self.architecture, "notes": self.notes,
        }


_REGISTRY: dict[str, ModelConfig] = {}


def register_model(
    name: str, builder: Callable[..., Any], kwargs: Mapping[str, Any] | None = None, *,
    family: str, input_size: int, preprocessing: str, params: int, macs: int, top1: float | None, paper: str,
    weight_files: Sequence[WeightFile] = (), twin: tuple[str, Mapping[str, Any]] | None = None,
    layer_groups: Sequence[tuple[str, str]] = (), module: str | None = None, notes: str = "",
    architecture: str | None = None,
) -> ModelConfig:
    """Register a variant: ``builder(**kwargs)`` builds it.

    ``weight_files``: its pretrained files (each must be in the weights manifest);
    ``twin``: ``(keras.applications builder name, kwargs)`` of the same architecture;
    ``layer_groups``: see ``ModelConfig``; ``module``: the public family module
    (default ``keras_lightnets.<family>``); ``notes``: shown by ``lightnets info``;
    ``architecture``: see ``ModelConfig`` (default: the builder's name and its keyword
    arguments other than ``alpha``, e.g. ``"MobileNetV3Small(minimalistic=True)"``).
    ``ValueError`` for a name already registered or a malformed fact.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"`preprocessing` must be one of {sorted(PREPROCESSING)}; received {preprocessing!r}")
    for pattern, _ in layer_groups:
        re.compile(pattern)
    if architecture is None:
        options = ", ".join(f"{k}={v!r}" for k, v in sorted((kwargs or {}).items()) if k != "alpha")
        architecture = f"{builder.__name__}({options})"
    config = ModelConfig(
        name=name, family=family, builder=builder, kwargs=MappingProxyType(dict(kwargs or {})),
        input_size=input_size, preprocessing=preprocessing, params=params, macs=macs, top1=top1, paper=paper,
        module=module or f"keras_lightnets.{family}", weight_files=tuple(weight_files),
        twin=None if twin is None else Twin(twin[0], MappingProxyType(dict(twin[1]))),
        layer_groups=tuple((pattern, template) for pattern, template in layer_groups), notes=notes,
        architecture=architecture,
    )
    _REGISTRY[name] = config
    return config


def _type_error(argument: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"`{argument}` must be {expected}; received {argument}={value!r} ({type(value).__name__})")


def list_models(pattern: str = "*", *, pretrained: bool = False, task: str = "classification") -> list[str]:
    """Sorted registered names matching the shell-style ``pattern``.

    ``task="classification"`` (default): the classifiers, this registry's records; with
    ``pretrained=True`` only those with ImageNet weights. ``task="detection"``: the reference
    detector presets (``keras_lightnets.detection.presets``); with ``pretrained=True`` only those
    whose reference publishes a checkpoint. ``TypeError`` when ``pattern`` is not a string or
    ``pretrained`` not a bool; ``errors.InputError`` for another ``task``.
    """
    if not isinstance(pattern, str):
        raise _type_error("pattern", "a shell-style pattern string such as 'mobilenet_v3*'", pattern)
    if not isinstance(pretrained, bool):
        raise _type_error("pretrained", "True or False", pretrained)
    if task not in TASKS:
        raise InputError(f"`task` must be one of {TASKS}; received task={task!r}")
    if task == "detection":
        from keras_lightnets.detection import presets

        return [name for name in presets.list_detectors(pattern)
                if not pretrained or presets.detector_config(name).checkpoint is not None]
    return sorted(
        name for name, config in _REGISTRY.items()
        if fnmatch.fnmatchcase(name, pattern) and (not pretrained or "imagenet" in config.weights)
    )


def model_config(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a registered variant, or the ``detection.presets.DetectorConfig``
    of a detector preset (``list_models(task="detection")``).

    ``TypeError`` when ``name`` is not a string; ``errors.InputError`` (a
    ``ValueError``) when no model of that name is registered.
    """
    if not isinstance(name, str):
        raise _type_error("name", "a registered model name (a string; see list_models())", name)
    try:
        return _REGISTRY[name]
    except KeyError:
        from keras_lightnets.detection import presets

        if presets.is_detector(name):
            return presets.detector_config(name)
        close = fnmatch.filter(_REGISTRY, f"*{name.split('_')[0]}*") if name.split("_")[0] else []
        hint = f" Similar: {', '.join(sorted(close)[:8])}." if close else ""
        raise InputError(
            f"unknown model {name!r}; see keras_lightnets.list_models() for the "
            f"{len(_REGISTRY)} registered names.{hint}"
        ) from None


def registered() -> list[ModelConfig]:
    """Every record, in registration order."""
    return list(_REGISTRY.values())


def variant_of(builder: Callable[..., Any], **arguments: Any) -> ModelConfig:
    """The registered variant that ``builder(**arguments)`` builds.

    A record of ``builder`` matches when each argument equals the record's kwarg of
    that name, or the builder's default where the record sets none. Builders call it to
    find their weight files. ``errors.InputError`` when no record matches.
    """
    defaults = {name: p.default for name, p in inspect.signature(builder).parameters.items()}
    for config in _REGISTRY.values():
        if config.builder is builder and all(
            config.kwargs.get(key, defaults.get(key)) == value for key, value in arguments.items()
        ):
            return config
    shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    raise InputError(f"no registered variant of {builder.__name__} has {shown}; see keras_lightnets.list_models()")


# What ``weight_sources`` reports of each file, in this order: the manifest's facts and the record's.
SOURCE_FIELDS = ("url", "source", "license", "format", "include_top", "input_size", "verified", "sha256", "size")


def weight_sources(name: str) -> list[dict[str, Any]]:
    """Where the pretrained weights of variant ``name`` come from, one dict per file.

    The record's weight files joined with their entries in the weights manifest in use
    (``keras_lightnets.weights.download.manifest``): ``{"file", "url", "source", "license",
    "format", "include_top", "input_size", "verified", "sha256", "size"}`` per file,
    sorted by file name; files that manifest does not list are left out, so a variant
    without weights has none. ``errors.InputError`` for an unknown name or a bad manifest.
    """
    config = model_config(name)
    from keras_lightnets.weights import download

    entries = download.manifest()
    sources = []
    for file in sorted(config.weight_files, key=lambda f: f.name):
        if file.name in entries:
            facts = {**entries[file.name], "include_top": file.include_top, "input_size": file.input_size}
            sources.append({"file": file.name, **{key: facts.get(key) for key in SOURCE_FIELDS}})
    return sources


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
    "tf_keras") overrides the active Keras flavour. A detector preset's name
    (``list_models(task="detection")``) builds it with ``detection.create_detector(name,
    flavour=flavour, **kwargs)``. ``TypeError`` names an argument of the wrong type;
    ``errors.InputError`` an unknown name or flavour.
    """
    config = model_config(name)
    if not isinstance(features_only, bool):
        raise _type_error("features_only", "True or False", features_only)
    if not isinstance(config, ModelConfig):  # a detector preset
        if features_only or out_indices is not None:
            raise InputError(f"{name!r} is a detector; features_only and out_indices are for classifiers")
        from keras_lightnets.detection.presets import create_detector

        return create_detector(name, flavour=flavour, **kwargs)
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
