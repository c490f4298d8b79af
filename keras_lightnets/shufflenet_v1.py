"""ShuffleNetV1, laid out as keras.applications' family modules.

keras.applications has no such family; the layout is the same (builders, ``preprocess_input``,
``decode_predictions``). ``preprocess_input`` turns RGB ``[0, 255]`` pixels into the BGR
``[0, 255]`` pixels megvii's ShuffleNet V1 takes (no mean or std); the builder's
``include_preprocessing=True`` does it inside the model instead. ``decode_predictions`` turns
``(samples, 1000)`` ImageNet scores into ``(wordnet_id, class_name, score)`` tuples. The code
lives in ``keras_lightnets.models.shufflenet_v1``; importing this module does not import TensorFlow.
"""

from keras_lightnets.models.shufflenet_v1 import (
    ShuffleNetV1,
    decode_predictions,
    preprocess_input,
)

__all__ = ["ShuffleNetV1", "decode_predictions", "preprocess_input"]
