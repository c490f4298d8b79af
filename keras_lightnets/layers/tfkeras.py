"""The package's layers for tf_keras (what TFMOT accepts): ``tf_keras.layers.Layer`` with the
bodies of ``layers.mixins``, computing with TensorFlow ops.

Importing this module registers them with tf_keras serialization under
``"keras_lightnets>HardSwish"`` etc. (``layers.register("tf_keras")``); they are also
``keras_lightnets.legacy.HardSwish`` etc.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from keras_lightnets.layers import mixins

OPS = mixins.Ops(
    relu6=tf.nn.relu6, reshape=tf.reshape, transpose=tf.transpose, shape=tf.shape, split=tf.split,
    constant=lambda value: tf.constant(value, tf.float32), linear=tf_keras.activations.linear,
    image_data_format=tf_keras.backend.image_data_format,
)
_register = tf_keras.saving.register_keras_serializable(package=mixins.PACKAGE)


@_register
class HardSigmoid(mixins.HardSigmoidMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class HardSwish(mixins.HardSwishMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class Rescale(mixins.RescaleMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class ChannelShuffle(mixins.ChannelShuffleMixin, tf_keras.layers.Layer):
    ops = OPS


@_register
class ChannelSplit(mixins.ChannelSplitMixin, tf_keras.layers.Layer):
    ops = OPS
