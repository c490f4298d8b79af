"""keras_lightnets: lightweight image classifiers for Keras 3 and tf_keras.

>>> from keras_lightnets import MobileNetV3Small, create_model, list_models
>>> base = MobileNetV3Small(include_top=False, weights=None, input_shape=(224, 224, 3))

Builders return Keras 3 models; ``keras_lightnets.legacy`` has the same names
returning tf_keras models (for TFMOT). As in keras.applications, each family has a
module with its builders, ``preprocess_input`` and ``decode_predictions``
(``keras_lightnets.mobilenet``, ``.mobilenet_v2``, ``.mobilenet_v3``, ``.mobilenet_v4``,
``.nasnet``, ``.squeezenet``, ``.shufflenet_v1``, ``.shufflenet_v2``, ``.mnasnet``, ``.ghostnet``,
``.efficientnet_lite``).

Subpackages are attributes loaded on first use (``kl.compression``, ``kl.export``,
``kl.legacy``, ...), so ``import keras_lightnets`` imports neither TensorFlow nor
Keras; heavy optional parts (TFMOT, LiteRT, torch porting, datasets) load only when used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from keras_lightnets._version import __version__ as __version__
from keras_lightnets.macs import count_macs
from keras_lightnets.models.efficientnet_lite import (
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
)
from keras_lightnets.models.ghostnet import GhostNet
from keras_lightnets.models.mnasnet import MnasNetA1, MnasNetB1
from keras_lightnets.models.mobilenet_v1 import MobileNet
from keras_lightnets.models.mobilenet_v2 import MobileNetV2
from keras_lightnets.models.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from keras_lightnets.models.mobilenet_v4 import MobileNetV4ConvLarge, MobileNetV4ConvMedium, MobileNetV4ConvSmall
from keras_lightnets.models.nasnet import NASNetMobile
from keras_lightnets.models.registry import create_model, list_models, model_config
from keras_lightnets.models.shufflenet_v1 import ShuffleNetV1
from keras_lightnets.models.shufflenet_v2 import ShuffleNetV2
from keras_lightnets.models.squeezenet import SqueezeNet

# Submodules reachable as attributes of the package, imported on first access.
FAMILY_MODULES = (
    "efficientnet_lite", "ghostnet", "mnasnet", "mobilenet", "mobilenet_v2", "mobilenet_v3", "mobilenet_v4",
    "nasnet", "shufflenet_v1", "shufflenet_v2", "squeezenet",
)
LAZY_MODULES = (
    "cli", "compression", "data", "detection", "errors", "export", "files", "imagenet", "layers", "layout", "legacy",
    "macs", "model_files", "models", "pipelines", "training", "validation", "weights", *FAMILY_MODULES,
)


def __getattr__(name: str) -> ModuleType:
    if name in LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_MODULES})


__all__ = [
    "EfficientNetLite0", "EfficientNetLite1", "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4",
    "GhostNet", "MnasNetA1", "MnasNetB1", "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small",
    "MobileNetV4ConvLarge", "MobileNetV4ConvMedium", "MobileNetV4ConvSmall", "NASNetMobile", "ShuffleNetV1",
    "ShuffleNetV2", "SqueezeNet",
    "count_macs", "create_model", "list_models", "model_config",
]
