"""EfficientNet-Lite0 .. Lite4, laid out as keras.applications' family modules.

keras.applications has no such family; the layout is the same (builders, ``preprocess_input``,
``decode_predictions``). ``preprocess_input`` scales ``[0, 255]`` pixels to ``[-1, 1]`` (timm's
mean = std = 0.5, as keras.applications' MobileNet does it); the builders'
``include_preprocessing=True`` does it inside the model instead. ``decode_predictions`` turns
``(samples, 1000)`` ImageNet scores into ``(wordnet_id, class_name, score)`` tuples. The code
lives in ``keras_lightnets.models.efficientnet_lite``; importing this module does not import
TensorFlow.
"""

from keras_lightnets.models.efficientnet_lite import (
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
    decode_predictions,
    preprocess_input,
)

__all__ = [
    "EfficientNetLite0", "EfficientNetLite1", "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4",
    "decode_predictions", "preprocess_input",
]
