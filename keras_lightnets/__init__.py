"""keras_lightnets: lightweight image classifiers for Keras 3 and tf_keras.

>>> from keras_lightnets import MobileNetV3Small, create_model, list_models
>>> base = MobileNetV3Small(include_top=False, weights=None, input_shape=(224, 224, 3))

Builders return Keras 3 models; ``keras_lightnets.legacy`` has the same names
returning tf_keras models (for TFMOT). Heavy optional parts (compression, export,
torch porting, datasets) are imported only when used.
"""

from __future__ import annotations

from keras_lightnets.macs import count_macs
from keras_lightnets.models.mnasnet import MnasNetA1, MnasNetB1
from keras_lightnets.models.mobilenet_v1 import MobileNet
from keras_lightnets.models.mobilenet_v2 import MobileNetV2
from keras_lightnets.models.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from keras_lightnets.models.nasnet import NASNetMobile
from keras_lightnets.models.shufflenet_v2 import ShuffleNetV2
from keras_lightnets.models.squeezenet import SqueezeNet
from keras_lightnets.registry import create_model, list_models, model_config

__version__ = "0.1.0"

__all__ = [
    "MnasNetA1", "MnasNetB1", "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small", "NASNetMobile",
    "ShuffleNetV2", "SqueezeNet",
    "count_macs", "create_model", "list_models", "model_config",
]
