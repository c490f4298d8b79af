"""MobileNetV3Large and MobileNetV3Small, laid out as keras.applications' family modules.

The same public names as ``keras.applications.mobilenet_v3``: ``from keras_lightnets.mobilenet_v3
import preprocess_input`` works where ``from keras.applications.mobilenet_v3 import
preprocess_input`` did. ``preprocess_input`` is a pass-through, as keras.applications': the models
rescale ``[0, 255]`` pixels themselves (``include_preprocessing=True``, the default).
``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into ``(wordnet_id, class_name,
score)`` tuples. The code lives in ``keras_lightnets.models.mobilenet_v3``; importing this module
does not import TensorFlow.
"""

from keras_lightnets.models.mobilenet_v3 import (
    MobileNetV3Large,
    MobileNetV3Small,
    decode_predictions,
    preprocess_input,
)

__all__ = ["MobileNetV3Large", "MobileNetV3Small", "decode_predictions", "preprocess_input"]
