"""The package's layers for Keras 3: ``keras.layers.Layer`` with the bodies of ``layers.mixins``.

``call`` uses only ``keras.ops``, so the layers run on every Keras 3 backend (TensorFlow,
JAX, PyTorch). Importing this module registers them with Keras 3 serialization under
``"keras_lightnets>HardSwish"`` etc. (``layers.register("keras")``).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lightnets.layers import mixins

OPS = mixins.Ops(
    relu6=ops.relu6, reshape=ops.reshape, transpose=ops.transpose, shape=ops.shape, split=ops.split,
    constant=lambda value: ops.convert_to_tensor(value, "float32"), linear=keras.activations.linear,
    image_data_format=keras.backend.image_data_format,
)
_register = keras.saving.register_keras_serializable(package=mixins.PACKAGE)


@_register
class HardSigmoid(mixins.HardSigmoidMixin, keras.layers.Layer):
    ops = OPS


@_register
class HardSwish(mixins.HardSwishMixin, keras.layers.Layer):
    ops = OPS


@_register
class Rescale(mixins.RescaleMixin, keras.layers.Layer):
    ops = OPS


@_register
class ChannelShuffle(mixins.ChannelShuffleMixin, keras.layers.Layer):
    ops = OPS


@_register
class ChannelSplit(mixins.ChannelSplitMixin, keras.layers.Layer):
    ops = OPS
