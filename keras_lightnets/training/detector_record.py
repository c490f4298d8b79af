"""A trained detector's record (how to rebuild it) and ``load_detector``, which rebuilds it with its weights.

A saved ``.keras`` file holds a detector's layers and weights but not the plain attributes the
package reads from a detector (``anchors``, ``detector_info``: see ``detection.builders``). A
``DetectorSpec`` says how the detector was built: the builder (``"ssd"``, ``"ssdlite"``,
``"retinanet"``: ``detection.SSD`` / ``SSDLite`` / ``RetinaNet``) or the preset
(``presets.list_detectors()``, built with ``include_preprocessing=True``), the backbone, the
class count, the input size and the builder's options, plus what a user of the model needs: the
class names and how pixels are scaled before the model (``preprocessing``). Its
``as_record()`` is the JSON document ``RECORD_NAME`` (``detector.json``) that ``lightnets detect
train`` writes beside ``best.keras`` (``training.detection.fit_detector(run_files=...)``), and
``load_detector(run folder or .keras file)`` rebuilds the detector from it and loads the file's
weights into it.

Loading is safe: the record is read up to ``MAX_RECORD_BYTES`` and checked field by field
before anything is built; the model file is read with ``model_files.load_model_file`` (its config
walked for code, then Keras' ``safe_mode=True``, never compiled) and must match the rebuilt
detector (input, outputs and every weight's shape) before its weights are copied. A missing,
oversized, garbled or inconsistent record, or a model that does not fit it, is a one-line
``InputError`` naming the file. Keras 3 only (the records say ``"flavour": "keras"``).

NumPy and JSON only at import; Keras is imported by ``build`` and ``load_detector``. (It lives
with training, not in ``detection``, because it reads run folders and user model files:
``model_files`` and ``training`` are a floor above ``detection``, see ARCHITECTURE.md.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_lightnets.errors import InputError, one_line
from keras_lightnets.validation import is_int

RECORD_NAME = "detector.json"
RECORD_FORMAT = "keras_lightnets.detector"
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes plus the class names
MODEL_NAME = "best.keras"  # the model a run folder is loaded from (training.run_folder.BEST)
CHECKPOINTS = "checkpoints"  # a checkpoint's record is in the run folder above it
BUILDERS = ("ssd", "ssdlite", "retinanet")
SOFTMAX_KINDS = ("ssd", "ssdlite")  # their num_classes counts the background column 0
BUILDER_OPTIONS = {  # the keyword arguments a record may give each builder, and their kinds
    "ssd": {"anchors_per_location": int, "width": float},
    "ssdlite": {"anchors_per_location": int, "width": float},
    "retinanet": {"fpn_channels": int, "num_convs": int, "anchor_size": int, "prior_probability": float},
}
FLAVOURS = ("keras",)


def _preset_kind(kind: str) -> str | None:
    """The builder family (``"ssd"``, ``"ssdlite"``, ``"retinanet"``) of preset ``kind``, None if it is none."""
    from keras_lightnets.detection.presets import PRESETS

    config = PRESETS.get(kind)
    return None if config is None else config.kind


def detector_family(kind: str) -> str:
    """``"ssd"``, ``"ssdlite"`` or ``"retinanet"``: the builder ``kind`` itself or a preset's family;
    ``InputError`` listing ``detector_kinds()`` for anything else."""
    family = kind if kind in BUILDERS else _preset_kind(kind) if isinstance(kind, str) else None
    if family is None:
        raise InputError(f"detector kind must be one of {', '.join(detector_kinds())}; received {kind!r}")
    return family


def num_classes_for(kind: str, foreground: int) -> int:
    """The builder's ``num_classes`` for ``foreground`` object classes: one more (the background
    column) for SSD / SSDLite."""
    return foreground + (1 if detector_family(kind) in SOFTMAX_KINDS else 0)


def detector_kinds() -> list[str]:
    """Every ``DetectorSpec.kind``: the builders, then the presets."""
    from keras_lightnets.detection.presets import list_detectors

    return [*BUILDERS, *list_detectors()]


@dataclass(frozen=True)
class DetectorSpec:
    """How a detector is (re)built, and what its users need to know.

    * ``kind``: ``"ssd"``, ``"ssdlite"``, ``"retinanet"`` or a preset name (``detector_kinds()``);
    * ``backbone``: the registry backbone of a builder (``keras_lightnets.list_models()``); None
      for a preset (it has its own);
    * ``num_classes``: the builder's ``num_classes``: the foreground classes, plus the
      background column for SSD / SSDLite (softmax heads);
    * ``input_size``: ``(height, width)`` in pixels (a preset's own size);
    * ``options``: the builder's keyword arguments (``BUILDER_OPTIONS``; none for presets);
    * ``class_names``: one name per foreground class, in class-id order;
    * ``preprocessing``: how ``[0, 255]`` RGB pixels are scaled before the model
      (``data.detection_pipeline.PREPROCESSING_CHOICES``; ``"in_model"``: the model takes them
      as they are); None until the detector is built (``build`` fills it in).

    ``InputError`` names a bad field.
    """

    kind: str
    backbone: str | None
    num_classes: int
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    options: dict = field(default_factory=dict)
    preprocessing: str | None = None

    def __post_init__(self) -> None:
        kinds = detector_kinds()
        if self.kind not in kinds:
            raise InputError(f"detector kind must be one of {', '.join(kinds)}; received {self.kind!r}")
        preset = _preset_kind(self.kind)
        if preset is None:
            from keras_lightnets.models.registry import list_models

            if not isinstance(self.backbone, str) or self.backbone not in list_models():
                raise InputError(f"backbone must be a registered model name (keras_lightnets.list_models()); "
                                 f"received {self.backbone!r}")
        elif self.backbone is not None:
            raise InputError(f"preset {self.kind!r} has its own backbone; received backbone={self.backbone!r}")
        if not is_int(self.num_classes) or self.num_classes < 1:
            raise InputError(f"num_classes must be a positive int; received {self.num_classes!r}")
        size = self.input_size
        if (not isinstance(size, tuple) or len(size) != 2 or not all(is_int(s) and s >= 1 for s in size)):
            raise InputError(f"input_size must be (height, width), positive ints; received {size!r}")
        names = self.class_names
        if (not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise InputError(f"class_names must be a tuple of distinct non-empty strings; received {names!r}")
        if len(names) != self.foreground_classes:
            raise InputError(f"class_names must name the {self.foreground_classes} foreground classes of "
                             f"num_classes={self.num_classes} ({self.kind}); received {len(names)} names")
        self._check_options()
        if self.preprocessing is not None:
            from keras_lightnets.data.detection_pipeline import PREPROCESSING_CHOICES

            if self.preprocessing not in PREPROCESSING_CHOICES:
                raise InputError(f"preprocessing must be one of {', '.join(PREPROCESSING_CHOICES)} or None; "
                                 f"received {self.preprocessing!r}")

    def _check_options(self) -> None:
        if not isinstance(self.options, dict):
            raise InputError(f"options must be a dict; received {type(self.options).__name__}")
        allowed = BUILDER_OPTIONS.get(self.kind, {})
        for key, value in self.options.items():
            if key not in allowed:
                names = ", ".join(allowed) or "none"
                raise InputError(f"option {key!r} does not apply to {self.kind!r} (its options: {names})")
            number = is_int(value) if allowed[key] is int else (
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))
            if not number:
                raise InputError(f"option {key!r} must be {'an int' if allowed[key] is int else 'a number'}; "
                                 f"received {value!r}")

    @property
    def family(self) -> str:
        """``"ssd"``, ``"ssdlite"`` or ``"retinanet"`` (a preset's builder family)."""
        return detector_family(self.kind)

    @property
    def foreground_classes(self) -> int:
        """The object classes (``num_classes`` less the background column of softmax heads)."""
        return self.num_classes - 1 if self.family in SOFTMAX_KINDS else self.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.input_size, 3)

    def build(self, *, backbone_weights: str | None = None):
        """The detector (Keras 3, random heads), with ``anchors``, ``detector_info`` and ``detector_spec``
        (this spec with ``preprocessing`` filled in) as plain attributes.

        ``backbone_weights``: a builder's backbone weights (None or ``"imagenet"``; presets: None).
        ``InputError`` when the builder refuses the spec (e.g. a size a preset is not made for).
        """
        from keras_lightnets.detection import builders
        from keras_lightnets.training.detection import input_preprocessing

        if _preset_kind(self.kind) is not None:
            from keras_lightnets.detection.presets import builder, detector_config

            config = detector_config(self.kind)
            if self.input_size != (config.input_size, config.input_size):
                raise InputError(f"preset {self.kind!r} takes {config.input_size}x{config.input_size} images; "
                                 f"received input_size={self.input_size}")
            if backbone_weights is not None:
                raise InputError(f"preset {self.kind!r} is built from scratch here; received "
                                 f"backbone_weights={backbone_weights!r}")
            detector = builder(self.kind)(self.num_classes, weights=None, include_preprocessing=True,
                                               flavour="keras")
        else:
            build = {"ssd": builders.SSD, "ssdlite": builders.SSDLite, "retinanet": builders.RetinaNet}[self.kind]
            detector = build(self.backbone, self.num_classes, self.input_shape, flavour="keras",
                             backbone_weights=backbone_weights, **self.options)
        spec = dataclasses.replace(self, preprocessing=input_preprocessing(detector))
        object.__setattr__(detector, "detector_spec", spec)
        return detector

    def as_record(self, **extra: Any) -> dict[str, Any]:
        """The JSON document ``RECORD_NAME`` (``extra``: more entries, e.g. what the training data
        held; ``from_record`` ignores them). ``InputError`` while ``preprocessing`` is None."""
        if self.preprocessing is None:
            raise InputError("the spec's preprocessing is not known yet: record the spec of a built detector "
                             "(detector.detector_spec)")
        own = {"format": RECORD_FORMAT, "version": RECORD_VERSION, "flavour": "keras", "kind": self.kind,
               "backbone": self.backbone, "num_classes": int(self.num_classes),
               "input_size": [int(s) for s in self.input_size], "options": dict(self.options),
               "class_names": list(self.class_names), "preprocessing": self.preprocessing}
        clash = sorted(set(extra) & set(own))
        if clash:
            raise InputError(f"extra record entries must not replace the spec's own: {clash}")
        return {**own, **extra}

    @classmethod
    def from_record(cls, record: Any, where: str = "the record") -> DetectorSpec:
        """The spec of a parsed record (``as_record``'s output); ``InputError`` naming ``where`` and the
        first missing or bad entry."""
        if not isinstance(record, dict):
            raise InputError(f"{where} is not a JSON object")
        if record.get("format") != RECORD_FORMAT or record.get("version") != RECORD_VERSION:
            raise InputError(f"{where} is not a detector record (format {RECORD_FORMAT!r} version "
                             f"{RECORD_VERSION}); it says format {record.get('format')!r:.60} version "
                             f"{record.get('version')!r:.20}")
        if record.get("flavour") not in FLAVOURS:
            raise InputError(f"{where}: flavour {record.get('flavour')!r:.40} is not supported (only Keras 3, "
                             "'keras')")
        missing = [k for k in ("kind", "backbone", "num_classes", "input_size", "options", "class_names",
                               "preprocessing") if k not in record]
        if missing:
            raise InputError(f"{where} has no {', '.join(repr(k) for k in missing)}")
        size, names = record["input_size"], record["class_names"]
        try:
            return cls(kind=record["kind"], backbone=record["backbone"], num_classes=record["num_classes"],
                       input_size=tuple(size) if isinstance(size, list) else size,
                       class_names=tuple(names) if isinstance(names, list) else names,
                       options=record["options"], preprocessing=record["preprocessing"])
        except InputError as err:
            raise InputError(f"{where}: {one_line(err)}") from None


# --------------------------------------------------------------------------- files


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(model file, record file)`` of ``path``: a run folder (its ``best.keras`` and
    ``detector.json``) or a ``.keras`` file (the ``detector.json`` in its folder, or for a file in
    ``checkpoints/`` the run folder's). ``InputError`` naming what is missing. No Keras."""
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise InputError(f"the detector must be a run folder or a .keras file; received {path!r}")
    given = Path(os.fspath(path))
    if given.is_dir():
        model, folder = given / MODEL_NAME, given
        if not model.is_file():
            raise InputError(f"run folder {str(given)!r} has no {MODEL_NAME} (is it a finished `lightnets detect "
                             "train` run?); give its folder or a .keras file")
    elif given.suffix == ".keras" and given.is_file():
        model, folder = given, given.parent
        if folder.name == CHECKPOINTS and not (folder / RECORD_NAME).is_file():
            folder = folder.parent
    elif given.suffix == ".keras":
        raise InputError(f"model file {str(given)!r} does not exist")
    else:
        raise InputError(f"the detector must be a run folder or a .keras file; {str(given)!r} is neither")
    record = folder / RECORD_NAME
    if not record.is_file():
        raise InputError(f"{str(folder)!r} has no {RECORD_NAME} (the record `lightnets detect train` writes "
                         f"beside the model): cannot rebuild the detector's anchors of {str(model)!r}")
    return model, record


def read_record(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(record file, parsed document)`` of a record file, or of the ``detector.json`` of a run
    folder or a ``.keras`` file's folder (``model_paths``): read up to ``MAX_RECORD_BYTES``, the
    whole JSON object with its extra entries (e.g. ``"training"``: what ``lightnets detect train``
    trained on), not checked beyond being one. ``InputError`` naming the file when it is missing,
    too large or not UTF-8 JSON."""
    given = Path(os.fspath(path)) if isinstance(path, str | os.PathLike) else None
    record = given if given is not None and given.suffix == ".json" else model_paths(path)[1]
    from keras_lightnets.data.detection_sources import read_bounded

    data = read_bounded(str(record), MAX_RECORD_BYTES, "detector record")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(f"detector record {str(record)!r} is not valid JSON: {one_line(err)[:200]}") from None
    return record, parsed


def read_detector_record(path: str | os.PathLike) -> DetectorSpec:
    """The ``DetectorSpec`` of a record file, or of the ``detector.json`` of a run folder or a
    ``.keras`` file's folder (``model_paths``): read up to ``MAX_RECORD_BYTES`` and checked.
    ``InputError`` naming the file when it is missing, too large, not UTF-8 JSON or malformed."""
    record, parsed = read_record(path)
    return DetectorSpec.from_record(parsed, f"detector record {str(record)!r}")


def _shapes(tensors) -> list[tuple]:
    return [tuple(t.shape) for t in tensors]


def _difference(saved, rebuilt) -> str | None:
    """How the loaded model ``saved`` differs from the ``rebuilt`` detector (None: not at all)."""
    for what in ("inputs", "outputs"):
        found, expected = _shapes(getattr(saved, what)), _shapes(getattr(rebuilt, what))
        if found != expected:
            return f"its {what} have the shapes {found}, the record's detector {expected}"
    found, expected = _shapes(saved.weights), _shapes(rebuilt.weights)
    if len(found) != len(expected):
        return f"it has {len(found)} weights, the record's detector {len(expected)}"
    for index, (a, b) in enumerate(zip(found, expected, strict=True)):
        if a != b:
            return f"its weight {index} has the shape {a}, the record's detector's {b}"
    return None


def load_detector(path: str | os.PathLike):
    """The detector saved in ``path`` (a run folder or a ``.keras`` file, ``model_paths``), rebuilt
    from its ``detector.json`` with the file's weights.

    Returns a Keras 3 model as ``DetectorSpec.build`` gives (outputs ``[classes, boxes]``, the
    attributes ``anchors``, ``detector_info`` and ``detector_spec``), ready for
    ``detection.inference_model``. The file is loaded with ``model_files.load_model_file``
    (config walked for stored code, ``safe_mode=True``, not compiled) and must match the rebuilt
    detector in input shape, output shapes and every weight's shape, in order. ``InputError``
    (one line naming the file) for a missing or malformed record or model file, or a model that is
    not the one the record describes; ``UnsafeModelError`` for a file that would run stored code.
    """
    from keras_lightnets import errors
    from keras_lightnets.model_files import load_model_file

    model_path, record_path = model_paths(path)
    spec = read_detector_record(record_path)
    try:
        detector = spec.build()
    except InputError as err:
        raise InputError(f"detector record {str(record_path)!r}: {one_line(err)}") from None
    try:
        saved = load_model_file("keras", model_path)
    except errors.InputError:
        raise
    except Exception as err:  # a damaged archive, missing weights, a layer Keras cannot rebuild
        raise InputError(f"cannot load {str(model_path)!r} as a Keras model ({type(err).__name__}: "
                         f"{one_line(err)[:200]})") from None
    problem = _difference(saved, detector)
    if problem:
        raise InputError(f"model {str(model_path)!r} is not the detector its record {str(record_path)!r} describes: "
                         f"{problem}")
    detector.set_weights(saved.get_weights())
    return detector


__all__ = [
    "BUILDERS", "BUILDER_OPTIONS", "MAX_RECORD_BYTES", "RECORD_NAME", "DetectorSpec", "detector_family",
    "detector_kinds", "load_detector", "model_paths", "num_classes_for", "read_detector_record", "read_record",
]
