"""Family modules: importing this package registers every variant."""

from keras_lightnets.models import (  # noqa: F401
    efficientnet_lite,
    ghostnet,
    mnasnet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    mobilenet_v4,
    nasnet,
    shufflenet_v1,
    shufflenet_v2,
    squeezenet,
)
