"""The registered reference detectors: one record per preset, its facts, and ``create_detector``.

A preset is an exact Keras twin of a published PyTorch detector (``torchvision_twins``,
``pytorch_ssd``): the same architecture, anchors and box coding, so the reference's
checkpoint ports with no loss (``weights=PATH``) and gives the reference's detections. Its
record (``DetectorConfig``) holds what the package knows about it, as ``models.registry``'s
``ModelConfig`` does for classifiers: the builder, input size and normalisation, parameter
count and MACs (re-derived by the tests), anchors, the reference's published accuracy with
where it comes from, and where its checkpoint is published.

NumPy only: the builders are named as ``"module:function"`` and imported when a detector is
built, so ``import keras_lightnets.detection`` loads no Keras. ``keras_lightnets.list_models(
task="detection")`` and ``keras_lightnets.model_config(name)`` read these records too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from keras_lightnets.detection.anchor_boxes import PRESET_ANCHORS
from keras_lightnets.errors import InputError
from keras_lightnets.validation import check_bool, check_choice

OUTPUTS = ("raw", "detections")
KERAS_WEIGHT_SUFFIXES = (".weights.h5", ".h5")  # a Keras weights file, e.g. written by tools/port_weights.py


@dataclass(frozen=True)
class Published:
    """An accuracy the reference's authors published for their checkpoint.

    ``metric``: e.g. ``"COCO val2017 box mAP@[.5:.95]"``; ``value`` in percent; ``source``: where it is stated.
    """

    metric: str
    value: float
    source: str


@dataclass(frozen=True)
class DetectorConfig:
    """Everything the package knows about one reference detector preset.

    ``builder``: ``"module:function"`` returning the raw model (``(classes, boxes)`` outputs,
    see ``detection.builders``); ``torch_mapping``: ``"module:function"`` mapping its Keras
    layers to the reference's ``state_dict`` prefixes. ``num_classes`` counts the background
    column of softmax heads (COCO 91, VOC 21). ``params``: trainable parameters, as PyTorch counts
    them (BatchNorm statistics are buffers there, not parameters), so they compare with the
    reference's published count; ``macs`` (multiply-accumulates, ``keras_lightnets.macs``) of the
    raw model at ``input_size``; ``anchors``: its row count.
    ``normalisation``: ``(mean, std)`` per RGB channel on ``[0, 255]`` pixels of the input
    the model takes with ``include_preprocessing=False``. ``checkpoint``: ``(url, license)`` of the
    reference's published weights, or ``None``. ``reference``: the folder of its ground-truth
    vectors under the package's reference data, or ``""``.
    """

    name: str
    builder: str
    torch_mapping: str
    kind: str
    backbone: str
    source: str
    input_size: int
    num_classes: int
    normalisation: tuple[tuple[float, float, float], tuple[float, float, float]]
    params: int
    macs: int
    anchors: int
    anchor_format: str
    published: Published | None
    checkpoint: tuple[str, str] | None
    reference: str = ""
    notes: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, 3)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view (for JSON and tables)."""
        published = self.published
        return {
            "name": self.name, "task": "detection", "kind": self.kind, "backbone": self.backbone,
            "source": self.source, "input_size": self.input_size, "num_classes": self.num_classes,
            "normalisation": {"mean": list(self.normalisation[0]), "std": list(self.normalisation[1])},
            "params": self.params, "macs": self.macs, "anchors": self.anchors, "anchor_format": self.anchor_format,
            "published": None if published is None else {
                "metric": published.metric, "value": published.value, "source": published.source},
            "checkpoint": (
                None if self.checkpoint is None else {"url": self.checkpoint[0], "license": self.checkpoint[1]}
            ),
            "notes": self.notes,
        }


def _load(spec: str) -> Callable[..., Any]:
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)


TORCHVISION = "keras_lightnets.detection.torchvision_twins"
PYTORCH_SSD = "keras_lightnets.detection.pytorch_ssd"
_TORCHVISION_DOCS = "https://docs.pytorch.org/vision/stable/models/ssdlite.html"
_PYTORCH_SSD = "https://github.com/qfgaohao/pytorch-ssd"
_TF = ((127.5,) * 3, (127.5,) * 3)  # [-1, 1]
_IMAGENET = ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))
_SSD = ((127.0,) * 3, (128.0,) * 3)  # pytorch-ssd's image_mean 127, image_std 128

_PRESETS: dict[str, DetectorConfig] = {
    config.name: config for config in (
        DetectorConfig(
            name="ssdlite320_mobilenet_v3_large", builder=f"{TORCHVISION}:ssdlite320_mobilenet_v3_large",
            torch_mapping=f"{TORCHVISION}:torch_mapping_ssdlite", kind="ssdlite",
            backbone="torchvision MobileNetV3-Large, reduced tail", source="torchvision 0.29",
            input_size=320, num_classes=91, normalisation=_TF, params=3_440_060, macs=583_171_904, anchors=3234,
            anchor_format="xyxy_pixels",
            published=Published("COCO val2017 box mAP@[.5:.95]", 21.3, _TORCHVISION_DOCS),
            checkpoint=("https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
                        "BSD-3-Clause"),
            reference="torchvision_detection/ssdlite320_mobilenet_v3_large",
        ),
        DetectorConfig(
            name="retinanet_mobilenet_v3_large_fpn", builder=f"{TORCHVISION}:retinanet_mobilenet_v3_large_fpn",
            torch_mapping=f"{TORCHVISION}:torch_mapping_retinanet", kind="retinanet",
            backbone="torchvision MobileNetV3-Large + FPN P3-P7", source="torchvision 0.29 blocks",
            input_size=320, num_classes=91, normalisation=_IMAGENET, params=12_891_015, macs=12_444_786_816,
            anchors=19206, anchor_format="xyxy_pixels", published=None, checkpoint=None,
            reference="torchvision_detection/retinanet_mobilenet_v3_large_fpn",
            notes="built from torchvision's own RetinaNet, FPN and MobileNetV3 blocks; torchvision publishes "
                  "no checkpoint or accuracy for this combination",
        ),
        DetectorConfig(
            name="mb2_ssd_lite", builder=f"{PYTORCH_SSD}:mb2_ssd_lite",
            torch_mapping=f"{PYTORCH_SSD}:torch_mapping_mb2_ssd_lite", kind="ssdlite",
            backbone="pytorch-ssd MobileNetV2", source="qfgaohao/pytorch-ssd 7a839cb",
            input_size=300, num_classes=21, normalisation=_SSD, params=3_388_228, macs=660_828_976, anchors=3000,
            anchor_format="cxcywh_relative",
            published=Published("VOC2007 test mAP@.5 (11-point)", 68.6, _PYTORCH_SSD),
            checkpoint=("https://storage.googleapis.com/models-hao/mb2-ssd-lite-mp-0_686.pth", "MIT"),
            reference="pytorch_ssd/mb2_ssd_lite",
        ),
        DetectorConfig(
            name="mb1_ssd", builder=f"{PYTORCH_SSD}:mb1_ssd", torch_mapping=f"{PYTORCH_SSD}:torch_mapping_mb1_ssd",
            kind="ssd", backbone="pytorch-ssd MobileNetV1", source="qfgaohao/pytorch-ssd 7a839cb",
            input_size=300, num_classes=21, normalisation=_SSD, params=9_468_996, macs=1_526_986_688, anchors=3000,
            anchor_format="cxcywh_relative",
            published=Published("VOC2007 test mAP@.5 (11-point)", 67.5, _PYTORCH_SSD),
            checkpoint=("https://storage.googleapis.com/models-hao/mobilenet-v1-ssd-mp-0_675.pth", "MIT"),
            notes="no reference vectors: built from the same pytorch-ssd code paths as mb2_ssd_lite",
        ),
    )
}


def list_detectors(pattern: str = "*") -> list[str]:
    """Sorted preset names matching the shell-style ``pattern``."""
    if not isinstance(pattern, str):
        raise InputError(f"`pattern` must be a shell-style pattern string such as 'mb*'; received {pattern!r}")
    return sorted(name for name in _PRESETS if fnmatch.fnmatchcase(name, pattern))


def detector_config(name: str) -> DetectorConfig:
    """The record of the preset ``name``; ``InputError`` listing the presets otherwise."""
    if not isinstance(name, str) or name not in _PRESETS:
        raise InputError(f"unknown detector preset {name!r}; presets: {', '.join(list_detectors())}")
    return _PRESETS[name]


def is_detector(name: Any) -> bool:
    """Whether ``name`` is a detector preset's name."""
    return isinstance(name, str) and name in _PRESETS


def anchors(name: str) -> np.ndarray:
    """The preset's anchors (torchvision) or priors (pytorch-ssd), float32 ``(N, 4)``, in the
    reference's own convention and order: x1 y1 x2 y2 in input pixels for torchvision, cx cy w h
    as fractions of the image for pytorch-ssd (``DetectorConfig.anchor_format``)."""
    config = detector_config(name)
    return PRESET_ANCHORS[config.name].anchors()


def builder(name: str) -> Callable[..., Any]:
    """The preset's builder: ``(num_classes=..., *, weights=None, include_preprocessing=False, flavour=None)``
    -> the raw model (``num_classes`` counts the background column of softmax heads)."""
    return _load(detector_config(name).builder)


def torch_mapping(name: str) -> Callable[[Any], list[tuple[str, str]]]:
    """The preset's ``torch_mapping(model) -> [(keras layer, state_dict prefix)]``."""
    return _load(detector_config(name).torch_mapping)


def create_detector(
    name: str, *, weights: str | os.PathLike | None = None, output: str = "raw", include_preprocessing: bool = False,
    flavour: str | None = None, **postprocessing: Any,
):
    """Build the preset ``name`` (``list_detectors()``).

    ``weights``: ``None`` (random initialisation), the path of the reference's checkpoint
    (``.pth``/``.pt``/``.safetensors`` with the reference's tensor names, read without torch and
    without unpickling code, every tensor's name and shape checked; ``DetectorConfig.checkpoint``
    says where it is published), or a Keras weights file (``.weights.h5``, e.g. what
    ``tools/port_weights.py SRC --arch NAME`` wrote; loaded by layer name, shapes checked).
    ``output="raw"``: the training model, outputs ``[classes (B, N, C)
    logits, boxes (B, N, 4) deltas]`` in the reference's anchor order; ``"detections"``: the
    inference model (``detection.inference.inference_model`` with ``postprocessing`` keyword
    arguments such as ``score_threshold``), outputs boxes (x1 y1 x2 y2 input pixels), scores,
    classes (0-based foreground: the reference's label minus one for softmax heads) and count.
    ``include_preprocessing=False``: the model takes the reference's normalised input
    (``DetectorConfig.normalisation``); ``True``: ``[0, 255]`` RGB pixels. ``flavour``: ``"keras"`` or
    ``"tf_keras"`` (default: the active one). ``InputError`` names a bad argument.
    """
    config = detector_config(name)
    check_choice("output", output, OUTPUTS)
    check_bool("include_preprocessing", include_preprocessing)
    if postprocessing and output != "detections":
        raise InputError(
            f"post-processing arguments ({', '.join(sorted(postprocessing))}) need output='detections'; "
            f"received output={output!r}"
        )
    if weights is not None and not isinstance(weights, str | os.PathLike):
        raise InputError(f"`weights` must be None or the path of the reference's checkpoint; received {weights!r}")
    keras_file = weights is not None and os.fspath(weights).lower().endswith(KERAS_WEIGHT_SUFFIXES)
    model = _load(config.builder)(
        weights=None if keras_file else weights, include_preprocessing=include_preprocessing, flavour=flavour
    )
    if keras_file:
        from keras_lightnets.weights.loading import load_weights

        load_weights(model, weights)
    if output == "raw":
        return model
    from keras_lightnets import _backend
    from keras_lightnets.detection.inference import inference_model

    with _backend.use_flavour(flavour) if flavour is not None else contextlib.nullcontext():
        return inference_model(model, **postprocessing)


PRESETS = MappingProxyType(_PRESETS)
