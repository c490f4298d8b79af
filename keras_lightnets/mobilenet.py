"""MobileNet, laid out as keras.applications' family modules.

The same public names as ``keras.applications.mobilenet``: ``from keras_lightnets.mobilenet import
preprocess_input`` works where ``from keras.applications.mobilenet import preprocess_input`` did.
``preprocess_input`` scales ``[0, 255]`` pixels to ``[-1, 1]``, as keras.applications' does.
``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into ``(wordnet_id, class_name,
score)`` tuples. The code lives in ``keras_lightnets.models.mobilenet_v1``; importing this module
does not import TensorFlow.
"""

from keras_lightnets.models.mobilenet_v1 import (
    MobileNet,
    decode_predictions,
    preprocess_input,
)

__all__ = ["MobileNet", "decode_predictions", "preprocess_input"]
