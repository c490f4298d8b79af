"""The package's layers for Keras 3: ``keras.layers.Layer`` with the bodies of ``layers.mixins``.

``call`` uses only ``keras.ops``, so the layers run on every Keras 3 backend (TensorFlow,
JAX, PyTorch; ``NonMaxSuppression`` relies on ``top_k`` keeping equal values in index
order, which TensorFlow and JAX guarantee and its tests check on both). Importing this
module registers them with Keras 3 serialization under ``"keras_lightnets>HardSwish"``
etc. (``layers.register("keras")``).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_lightnets.layers import mixins

OPS = mixins.Ops(
    relu6=ops.relu6, reshape=ops.reshape, transpose=ops.transpose, shape=ops.shape, split=ops.split,
    constant=lambda value: ops.convert_to_tensor(value, "float32"), linear=keras.activations.linear,
    image_data_format=keras.backend.image_data_format,
    exp=ops.exp, minimum=ops.minimum, maximum=ops.maximum, softmax=ops.softmax, sigmoid=ops.sigmoid,
    concatenate=ops.concatenate, stack=ops.stack, cast=ops.cast, where=ops.where, zeros_like=ops.zeros_like,
    top_k=lambda x, k: ops.top_k(x, k, sorted=True),
    take_last=lambda x, indices: ops.take_along_axis(x, indices, axis=-1),
    while_loop=ops.while_loop, arange=lambda n: ops.arange(n, dtype="int32"), sum=ops.sum, max=ops.max,
    pad=lambda x, widths, value: ops.pad(x, widths, constant_values=value),
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


@_register
class DecodeBoxes(mixins.DecodeBoxesMixin, keras.layers.Layer):
    ops = OPS


@_register
class ClassScores(mixins.ClassScoresMixin, keras.layers.Layer):
    ops = OPS


@_register
class NonMaxSuppression(mixins.NonMaxSuppressionMixin, keras.layers.Layer):
    ops = OPS
