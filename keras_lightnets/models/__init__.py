"""Family modules: importing this package registers every variant."""

from keras_lightnets.models import mobilenet_v1, mobilenet_v2, mobilenet_v3  # noqa: F401
