"""Object detection on the registry backbones: SSD, SSDLite and RetinaNet, and exact twins of
torchvision's and pytorch-ssd's detectors.

NumPy only: importing this package imports neither TensorFlow nor Keras.

* ``anchors(name)``: a preset's anchors or priors in its reference's convention.
* ``anchor_boxes``: the anchor boxes of torchvision's SSD/SSDLite (``ssd_default_boxes``) and
  RetinaNet (``retinanet_anchors``), the priors of qfgaohao/pytorch-ssd (``ssd_priors``), and
  the settings of the reference models (``PRESET_ANCHORS``, ``preset_anchors``).
* ``box_coding``: regression deltas to boxes and back, torchvision's ``BoxCoder``
  (``encode_torchvision``, ``decode_torchvision``) and pytorch-ssd's variances
  (``encode_ssd``, ``decode_ssd``), plus ``xyxy_to_cxcywh`` / ``cxcywh_to_xyxy``.
* ``presets``: the registered reference detectors (exact twins of torchvision's and
  pytorch-ssd's), their facts (``DetectorConfig``: parameters, MACs, anchors, published
  accuracy, checkpoint URL), ``list_detectors``, ``detector_config`` and ``create_detector``
  (which imports Keras only when it builds).
* ``SSD``, ``SSDLite``, ``RetinaNet`` (``builders``, over ``heads``): detector models on the registry
  backbones, and ``inference_model`` (``inference``: box decoding and per-class NMS as layers,
  the TF Object Detection API's outputs). They need Keras, so they load on first access (a
  module ``__getattr__``) and stay out of ``__all__`` (a star import loads no Keras).
* Imported by name: ``matching`` (IoU matching, target encoding for ``tf.data``) and ``losses``
  (MultiBox, focal), which import TensorFlow; ``metrics`` (COCO mAP through pycocotools, VOC07
  11-point mAP; NumPy).
"""

from __future__ import annotations

from keras_lightnets.detection.anchor_boxes import (
    PRESET_ANCHORS,
    AnchorPreset,
    preset_anchors,
    retinanet_anchors,
    ssd_default_boxes,
    ssd_priors,
)
from keras_lightnets.detection.box_coding import (
    BBOX_XFORM_CLIP,
    RETINANET_WEIGHTS,
    SSD_WEIGHTS,
    cxcywh_to_xyxy,
    decode_ssd,
    decode_torchvision,
    encode_ssd,
    encode_torchvision,
    xyxy_to_cxcywh,
)
from keras_lightnets.detection.presets import (
    DetectorConfig,
    Published,
    anchors,
    create_detector,
    detector_config,
    list_detectors,
)

__all__ = [
    "BBOX_XFORM_CLIP",
    "PRESET_ANCHORS",
    "RETINANET_WEIGHTS",
    "SSD_WEIGHTS",
    "AnchorPreset",
    "DetectorConfig",
    "Published",
    "anchors",
    "create_detector",
    "cxcywh_to_xyxy",
    "decode_ssd",
    "decode_torchvision",
    "detector_config",
    "encode_ssd",
    "encode_torchvision",
    "list_detectors",
    "preset_anchors",
    "retinanet_anchors",
    "ssd_default_boxes",
    "ssd_priors",
    "xyxy_to_cxcywh",
]

# Keras-backed names, imported on first access.
_LAZY = {"SSD": "builders", "SSDLite": "builders", "RetinaNet": "builders", "inference_model": "inference"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"keras_lightnets.detection.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
