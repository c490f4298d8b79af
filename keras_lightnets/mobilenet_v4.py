"""MobileNetV4 Conv-S/M/L, laid out as keras.applications' family modules.

keras.applications has no such family; the layout is the same (builders, ``preprocess_input``,
``decode_predictions``). ``preprocess_input`` normalises ``[0, 255]`` pixels with ImageNet mean/std
(timm's preprocessing for these models); the builders' ``include_preprocessing=True`` does it inside
the model instead. ``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into
``(wordnet_id, class_name, score)`` tuples. The code lives in ``keras_lightnets.models.mobilenet_v4``;
importing this module does not import TensorFlow.
"""

from keras_lightnets.models.mobilenet_v4 import (
    MobileNetV4ConvLarge,
    MobileNetV4ConvMedium,
    MobileNetV4ConvSmall,
    decode_predictions,
    preprocess_input,
)

__all__ = [
    "MobileNetV4ConvLarge", "MobileNetV4ConvMedium", "MobileNetV4ConvSmall", "decode_predictions",
    "preprocess_input",
]
