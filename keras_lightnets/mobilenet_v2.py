"""MobileNetV2, laid out as keras.applications' family modules.

The same public names as ``keras.applications.mobilenet_v2``: ``from keras_lightnets.mobilenet_v2
import preprocess_input`` works where ``from keras.applications.mobilenet_v2 import
preprocess_input`` did. ``preprocess_input`` scales ``[0, 255]`` pixels to ``[-1, 1]``, as
keras.applications' does. ``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into
``(wordnet_id, class_name, score)`` tuples. The code lives in
``keras_lightnets.models.mobilenet_v2``; importing this module does not import TensorFlow.
"""

from keras_lightnets.models.mobilenet_v2 import (
    MobileNetV2,
    decode_predictions,
    preprocess_input,
)

__all__ = ["MobileNetV2", "decode_predictions", "preprocess_input"]
