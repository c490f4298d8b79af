"""The public builders, built with tf_keras (what TFMOT accepts).

Same code, same layer names, weights and outputs as the Keras 3 builders in
``keras_lightnets``; only the Keras namespace handed down differs. Importing this
module also registers the tf_keras twins of the custom layers (``HardSwish``, ...)
for tf_keras model loading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras_lightnets as _public
from keras_lightnets import _backend
from keras_lightnets.layers import custom_objects
from keras_lightnets.layers.tfkeras import (
    ChannelShuffle,
    ChannelSplit,
    ClassScores,
    DecodeBoxes,
    HardSigmoid,
    HardSwish,
    NonMaxSuppression,
    Rescale,
)
from keras_lightnets.models import registry

FLAVOUR = "tf_keras"


def _with_tf_keras(builder: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any):
        with _backend.use_flavour(FLAVOUR):
            return builder(*args, **kwargs)

    return build


def create_model(name: str, **kwargs: Any):
    """``keras_lightnets.create_model`` returning a tf_keras model."""
    return registry.create_model(name, flavour=FLAVOUR, **kwargs)


def legacy_custom_objects() -> dict[str, type]:
    """``custom_objects`` for ``tf_keras.models.load_model`` of a keras_lightnets model."""
    return custom_objects(FLAVOUR)


list_models = registry.list_models
model_config = registry.model_config
count_macs = _public.count_macs

EfficientNetLite0 = _with_tf_keras(_public.EfficientNetLite0)
EfficientNetLite1 = _with_tf_keras(_public.EfficientNetLite1)
EfficientNetLite2 = _with_tf_keras(_public.EfficientNetLite2)
EfficientNetLite3 = _with_tf_keras(_public.EfficientNetLite3)
EfficientNetLite4 = _with_tf_keras(_public.EfficientNetLite4)
GhostNet = _with_tf_keras(_public.GhostNet)
MnasNetA1 = _with_tf_keras(_public.MnasNetA1)
MnasNetB1 = _with_tf_keras(_public.MnasNetB1)
MobileNet = _with_tf_keras(_public.MobileNet)
MobileNetV2 = _with_tf_keras(_public.MobileNetV2)
MobileNetV3Large = _with_tf_keras(_public.MobileNetV3Large)
MobileNetV3Small = _with_tf_keras(_public.MobileNetV3Small)
MobileNetV4ConvLarge = _with_tf_keras(_public.MobileNetV4ConvLarge)
MobileNetV4ConvMedium = _with_tf_keras(_public.MobileNetV4ConvMedium)
MobileNetV4ConvSmall = _with_tf_keras(_public.MobileNetV4ConvSmall)
NASNetMobile = _with_tf_keras(_public.NASNetMobile)
ShuffleNetV1 = _with_tf_keras(_public.ShuffleNetV1)
ShuffleNetV2 = _with_tf_keras(_public.ShuffleNetV2)
SqueezeNet = _with_tf_keras(_public.SqueezeNet)

__all__ = [
    "ChannelShuffle", "ChannelSplit", "ClassScores", "DecodeBoxes", "EfficientNetLite0", "EfficientNetLite1",
    "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4", "GhostNet", "HardSigmoid", "HardSwish",
    "MnasNetA1", "MnasNetB1", "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small",
    "MobileNetV4ConvLarge", "MobileNetV4ConvMedium", "MobileNetV4ConvSmall", "NASNetMobile",
    "NonMaxSuppression", "Rescale", "ShuffleNetV1", "ShuffleNetV2", "SqueezeNet", "count_macs",
    "create_model", "legacy_custom_objects", "list_models", "model_config",
]
