"""Object detection on the registry backbones; today: anchors/priors and box coding.

NumPy only: importing this package imports neither TensorFlow nor Keras.

* ``anchors``: the anchor boxes of torchvision's SSD/SSDLite (``ssd_default_boxes``) and
  RetinaNet (``retinanet_anchors``), the priors of qfgaohao/pytorch-ssd (``ssd_priors``), and
  the settings of three reference models (``PRESET_ANCHORS``, ``preset_anchors``).
* ``box_coding``: regression deltas to boxes and back, torchvision's ``BoxCoder``
  (``encode_torchvision``, ``decode_torchvision``) and pytorch-ssd's variances
  (``encode_ssd``, ``decode_ssd``), plus ``xyxy_to_cxcywh`` / ``cxcywh_to_xyxy``.
"""

from __future__ import annotations

from keras_lightnets.detection.anchors import (
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

__all__ = [
    "BBOX_XFORM_CLIP", "PRESET_ANCHORS", "RETINANET_WEIGHTS", "SSD_WEIGHTS", "AnchorPreset",
    "cxcywh_to_xyxy", "decode_ssd", "decode_torchvision", "encode_ssd", "encode_torchvision", "preset_anchors",
    "retinanet_anchors", "ssd_default_boxes", "ssd_priors", "xyxy_to_cxcywh",
]
