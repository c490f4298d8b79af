"""MnasNetA1 and MnasNetB1, laid out as keras.applications' family modules.

keras.applications has no such family; the layout is the same (builders, ``preprocess_input``,
``decode_predictions``). ``preprocess_input`` normalises ``[0, 255]`` pixels with ImageNet mean/std
(torchvision's preprocessing); the builders' ``include_preprocessing=True`` does it inside the model
instead. ``decode_predictions`` turns ``(samples, 1000)`` ImageNet scores into ``(wordnet_id,
class_name, score)`` tuples. The code lives in ``keras_lightnets.models.mnasnet``; importing this
module does not import TensorFlow.
"""

from keras_lightnets.models.mnasnet import (
    MnasNetA1,
    MnasNetB1,
    decode_predictions,
    preprocess_input,
)

__all__ = ["MnasNetA1", "MnasNetB1", "decode_predictions", "preprocess_input"]
