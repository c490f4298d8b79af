"""GhostNet, laid out as keras.applications' family modules.

keras.applications has no such family; the layout is the same (builder, ``preprocess_input``,
``decode_predictions``). ``preprocess_input`` normalises ``[0, 255]`` pixels with ImageNet mean/std
(timm's preprocessing for GhostNet); the builder's ``include_preprocessing=True`` does it inside the
model instead. ``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into ``(wordnet_id,
class_name, score)`` tuples. The code lives in ``keras_lightnets.models.ghostnet``; importing this
module does not import TensorFlow.
"""

from keras_lightnets.models.ghostnet import (
    GhostNet,
    decode_predictions,
    preprocess_input,
)

__all__ = ["GhostNet", "decode_predictions", "preprocess_input"]
