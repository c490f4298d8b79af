"""Detectors (``keras_lightnets.detection``) through translation, pruning and QAT.

A detector is a Functional model with outputs ``[classes (B, N, C), boxes (B, N, 4)]`` and two
plain attributes, ``anchors`` and ``detector_info`` (``DETECTOR_ATTRIBUTES``), that Keras neither
tracks nor copies when it clones a model. Every function of ``compression`` that returns a new
model (``to_tf_keras``, ``prune``, ``strip``, ``quantize_aware``) copies them over
(``keep_detector``), so what it returns still trains with ``training.detection.fit_detector``,
gets its post-processing from ``detection.inference_model`` and exports like the detector.

QAT of a detector keeps every layer name (TFMOT's wrappers take their layer's name instead of
``quant_<name>``, ``qat_layer_prefix``): the outputs stay named ``classes`` and ``boxes`` (the
loss dict of ``compile``), and the names ``fit_detector`` reads (its head layers, the backbone's
blocks) still mean the same layers.

An inference model (``detection.inference_model``: ``DecodeBoxes``, ``ClassScores``,
``NonMaxSuppression`` after the heads) is refused (``check_training_model``): its float
post-processing is not trained, and the inference model is rebuilt from the compressed detector.

Imports neither Keras nor TFMOT.
"""

from __future__ import annotations

from typing import Any

from keras_lightnets.errors import InputError
from keras_lightnets.layers.tree import nested_layers

DETECTOR_ATTRIBUTES = ("anchors", "detector_info")
# The package's post-processing layers: what makes a detector an inference model.
POSTPROCESSING_LAYERS = ("ClassScores", "DecodeBoxes", "NonMaxSuppression")
# TFMOT's default prefix of a QAT wrapper's name (``quant_conv`` around ``conv``); none for a detector.
TFMOT_PREFIX = "quant_"


def is_detector(model: Any) -> bool:
    """Whether ``model`` carries a detector's ``anchors`` and ``detector_info``."""
    return all(getattr(model, name, None) is not None for name in DETECTOR_ATTRIBUTES)


def keep_detector(source: Any, result: Any) -> Any:
    """``result`` with ``source``'s ``anchors`` and ``detector_info`` when ``source`` is a detector
    (plain attributes, set as ``detection.builders.finish_detector`` sets them); returns ``result``."""
    if result is not source and is_detector(source):
        for name in DETECTOR_ATTRIBUTES:
            object.__setattr__(result, name, getattr(source, name))
    return result


def qat_layer_prefix(model: Any) -> str:
    """The name prefix of ``model``'s QAT wrappers: ``""`` for a detector (its layer names are kept),
    TFMOT's ``"quant_"`` otherwise."""
    return "" if is_detector(model) else TFMOT_PREFIX


def _postprocessing_layers(model: Any) -> list[str]:
    found = []
    for layer in nested_layers(model):
        kind = type(layer).__name__
        if kind in POSTPROCESSING_LAYERS and type(layer).__module__.startswith("keras_lightnets."):
            found.append(f"{layer.name!r} ({kind})")
    return list(dict.fromkeys(found))


def check_training_model(model: Any, function: str) -> None:
    """``InputError`` when ``model`` is a detector's inference model (it holds the package's
    post-processing layers, ``POSTPROCESSING_LAYERS``): ``function`` compresses training models."""
    found = _postprocessing_layers(model)
    if found:
        raise InputError(
            f"`model` {getattr(model, 'name', '')!r} is a detector's inference model (post-processing layers "
            f"{', '.join(found)}), which {function} does not compress: pass the training model (outputs "
            "[classes, boxes], e.g. detection.SSDLite(...) or create_detector(name, output='raw')), then rebuild "
            "the inference model from the compressed one with detection.inference_model(compressed)"
        )
